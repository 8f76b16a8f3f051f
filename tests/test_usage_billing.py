"""Usage in real billing runs: seed 001's invoice (plan line + usage line) exact to the cent, the
shipped graduated pricing, events marked invoiced, and tiers checked property by property."""

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.billing.catalog import MeterSpec, PlanSpec
from portal.billing.plans import sync_catalog
from portal.billing.pricing import FeatureSpec, Tier
from portal.billing.subscriptions import usage_lines
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import UsageEvent
from portal.usage.meters import save_meter
from tests.billing_engine_support import catalog_spec, half_up, invoices_of, line_amounts, run_billing, subscribe, utc
from tests.usage_support import record

JAN, FEB = utc(2026, 1, 1), utc(2026, 2, 1)


def api_calls_plan(key="credibill_pro"):
    """Seed 001's example: a 1,500 plan with 500 API calls included, then 2 each."""
    base = catalog_spec("starter")
    sync_catalog(
        [
            PlanSpec(
                key=key,
                name="Professional Plan",
                price=1500,
                quotas=base.quotas,
                rate_limits=base.rate_limits,
                features=[
                    FeatureSpec(
                        key="api_calls",
                        name="API Calls",
                        unit_label="calls",
                        pricing="per_unit",
                        included_units=500,
                        unit_price=2,
                    )
                ],
            )
        ]
    )
    save_meter(MeterSpec(key="api_calls", name="API calls", event_name="api_call", aggregation="count"))
    commit()
    return key


def test_seed_001s_invoice_comes_out_of_a_billing_run(ctx):
    subscription = subscribe(api_calls_plan(), JAN)
    tenant_id = subscription.tenant_id
    event_ids = record(tenant_id, "api_call", at=utc(2026, 1, 15, 10), many=1000)
    record(tenant_id, "api_call", at=FEB + timedelta(hours=1))  # the next period: not billed yet

    run = run_billing(FEB)
    assert run.errors == []
    invoice = invoices_of(subscription)[-1]
    assert line_amounts(invoice) == [("plan", 1500), ("usage", 1000)]
    usage = invoice.lines[1]
    assert (usage.quantity, usage.unit_amount, usage.amount) == (500, 2, 1000)
    assert "500 calls" in usage.description and "500 included" in usage.description
    assert (invoice.subtotal, invoice.total) == (2500, 2500)
    assert (usage.period_start, usage.period_end) == (JAN, FEB)

    invoiced = {row.id: row.invoice_id for row in db.session.query(UsageEvent).filter_by(tenant_id=tenant_id)}
    assert all(invoiced[event_id] == invoice.id for event_id in event_ids)
    assert sum(value is None for value in invoiced.values()) == 1

    # A second run as of the same instant bills nothing again.
    assert run_billing(FEB).invoices_created == 0


def test_usage_within_the_included_units_adds_no_line(ctx):
    subscription = subscribe(api_calls_plan("credibill_small"), JAN)
    record(subscription.tenant_id, "api_call", at=utc(2026, 1, 20), many=500)
    run_billing(FEB)
    assert line_amounts(invoices_of(subscription)[-1]) == [("plan", 1500)]


def test_starters_compute_hours_are_billed_through_the_graduated_tiers(ctx):
    subscription = subscribe("starter", JAN)
    record(subscription.tenant_id, "compute_usage", Decimal("625.25"), at=utc(2026, 1, 10), many=2)
    record(subscription.tenant_id, "pipeline_run", at=utc(2026, 1, 10), many=3)  # included: no line
    run_billing(FEB)
    invoice = invoices_of(subscription)[-1]
    # 1,250.5 hours, 100 included: 1,000 at 12 cents, then 150.5 at 10 cents.
    assert line_amounts(invoice) == [("plan", 4900), ("usage", 12000), ("usage", 1505)]
    assert invoice.total == 4900 + 13505


def reference_graduated(billable: Fraction, tiers) -> int:
    total, lower = Fraction(0), Fraction(0)
    for up_to, price in tiers:
        upper = billable if up_to is None else min(billable, Fraction(up_to))
        if upper > lower:
            total += (upper - lower) * Fraction(price)
        if up_to is None or billable <= up_to:
            break
        lower = Fraction(up_to)
    return total


tier_bounds = st.lists(st.integers(1, 500), min_size=1, max_size=3, unique=True).map(sorted)
prices = st.lists(st.decimals(min_value=0, max_value=50, places=1), min_size=4, max_size=4)
quantities = st.lists(st.decimals(min_value=0, max_value=300, places=2), min_size=0, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bounds=tier_bounds,
    unit_prices=prices,
    events=quantities,
    included=st.integers(0, 50),
    model=st.sampled_from(["graduated", "volume"]),
)
def test_tiered_usage_lines_match_the_tiers_arithmetic(ctx, bounds, unit_prices, events, included, model):
    tiers = [(bound, unit_prices[i]) for i, bound in enumerate(bounds)] + [(None, unit_prices[len(bounds)])]
    feature = FeatureSpec(
        key="tiered_units",
        name="Tiered units",
        pricing=model,
        included_units=included,
        tiers=[Tier(up_to=up_to, unit_price=price) for up_to, price in tiers],
    )
    base = catalog_spec("starter")
    key = f"tiered_{model}"
    sync_catalog(
        [
            PlanSpec(
                key=key, name="Tiered", price=100, quotas=base.quotas, rate_limits=base.rate_limits, features=[feature]
            )
        ]
    )
    save_meter(MeterSpec(key="tiered_units", name="Tiered", event_name="tiered", aggregation="sum"))
    commit()
    subscription = subscribe(key, JAN)
    for quantity in events:
        record(subscription.tenant_id, "tiered", quantity, at=utc(2026, 1, 5))

    lines = usage_lines(subscription, JAN, FEB)
    billable = max(sum((Fraction(q) for q in events), Fraction(0)) - included, Fraction(0))
    if model == "graduated":
        # Each line is rounded on its own: the total is the sum of the rounded tier lines.
        expected_lines = []
        lower = Fraction(0)
        for up_to, price in tiers:
            if billable <= lower:
                break
            upper = billable if up_to is None else min(billable, Fraction(up_to))
            expected_lines.append(half_up((upper - lower) * Fraction(price)))
            lower = Fraction(up_to) if up_to is not None else lower
        assert [line.amount for line in lines] == expected_lines
        assert abs(sum(expected_lines) - reference_graduated(billable, tiers)) <= len(expected_lines)
    else:
        price = next(price for up_to, price in tiers if up_to is None or billable <= up_to)
        assert [line.amount for line in lines] == ([half_up(billable * Fraction(price))] if billable else [])
    assert all(line.type == "usage" for line in lines)
