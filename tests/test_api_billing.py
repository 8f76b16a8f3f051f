"""Billing over the API: seed 000's subscription endpoints, plans, invoices, payment status and
mark-paid; exact money, scopes, other tenants, suspended tenants and hostile input."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from portal.extensions import db
from portal.models import Invoice, Subscription, utcnow
from tests.api_support import (
    HOSTILE_JSON,
    assert_envelope,
    bearer,
    count,
    fetch,
    issue_key,
    operator_token,
    send_json,
    with_key,
)
from tests.conftest import unique

SEED_SUBSCRIPTION_FIELDS = {
    "subscription_id",
    "tenant_id",
    "plan_name",
    "monthly_pipeline_quota",
    "concurrent_pipeline_quota",
    "storage_quota_gb",
    "monthly_cost_usd",
    "billing_cycle_start",
    "billing_cycle_end",
    "auto_renew",
    "stripe_subscription_id",
    "created_at",
}
SEED_UPGRADE_FIELDS = {"subscription_id", "previous_plan", "new_plan", "effective_date", "prorated_charge", "message"}
SEED_CANCEL_FIELDS = {"subscription_id", "status", "cancelled_at", "billing_cycle_end", "message"}
INVOICE_FIELDS = {
    "invoice_id",
    "number",
    "status",
    "currency",
    "plan_name",
    "subtotal",
    "discount",
    "credits_applied",
    "total",
    "amount_paid",
    "amount_due",
    "total_major",
    "amount_due_major",
    "period_start",
    "period_end",
    "issued_at",
    "due_at",
    "paid_at",
    "overdue",
    "payment_failed",
    "line_items",
    # Seed 003's breakdown (issue 19): discount and tax beside subtotal, credits and total, the
    # buyer as issued, and where the PDF is.
    "tax",
    "tax_lines",
    "tax_note",
    "billing_name",
    "billing_email",
    "buyer",
    "pdf_url",
}
LINE_FIELDS = {
    "type",
    "description",
    "quantity",
    "unit_amount",
    "amount",
    "period_start",
    "period_end",
    "credits_applied",
    "tax_name",
    "tax_percentage",
    "tax_inclusive",
    "tax",
}


def tenant_on(app, plan: str = "starter", days_ago: float = 0):
    """A tenant that subscribed to ``plan`` ``days_ago`` days ago (starter: invoiced at once)."""
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.tenants.services import create_tenant

    with app.test_request_context():
        tenant_id = unique("t")
        tenant = create_tenant(
            SYSTEM,
            tenant_id,
            f"Company {tenant_id}",
            f"billing@{tenant_id}.example",
            plan,
            subscribed_at=utcnow() - timedelta(days=days_ago),
        )
        commit()
        return tenant


def billing_run(app, at: datetime) -> str:
    """What an operator types to bill as of ``at``: `flask billing run --at ...`."""
    result = app.test_cli_runner().invoke(args=["billing", "run", "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert result.exit_code == 0, result.output
    return result.output


def admin_key(app, tenant):
    return with_key(issue_key(app, tenant, scopes=["admin:*"])[1])


def subscription_row(app, tenant) -> Subscription:
    with app.app_context():
        db.session.expire_all()
        return db.session.query(Subscription).filter_by(tenant_id=tenant.tenant_id).one()


def invoices_of(app, tenant) -> list[Invoice]:
    with app.app_context():
        db.session.expire_all()
        return db.session.query(Invoice).filter_by(tenant_id=tenant.tenant_id).order_by(Invoice.number).all()


def exact(response) -> dict:
    """The body with its numbers read as Decimals, never through a float."""
    return json.loads(response.get_data(as_text=True), parse_float=Decimal)


def raw_number(response, field: str) -> Decimal:
    """A number exactly as the JSON text writes it, as a Decimal (never through a float)."""
    match = re.search(rf'"{field}":\s*(-?[0-9.]+)[,}}]', response.get_data(as_text=True))
    assert match, f"{field} is not a bare JSON number in {response.get_data(as_text=True)[:300]}"
    return Decimal(match.group(1))


def half_up(value: Fraction) -> int:
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def path(tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.tenant_id}{suffix}"


# --- reading the subscription ---------------------------------------------------------------


def test_subscription_has_seed_000_fields_with_exact_money(client, app):
    tenant = tenant_on(app, "starter")
    response = client.get(path(tenant, "/subscription"), headers=admin_key(app, tenant))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert SEED_SUBSCRIPTION_FIELDS <= set(data)
    sub = subscription_row(app, tenant)
    assert data["subscription_id"] == sub.id and data["tenant_id"] == tenant.tenant_id
    assert data["plan_name"] == "starter"
    assert (data["monthly_pipeline_quota"], data["concurrent_pipeline_quota"], data["storage_quota_gb"]) == (
        1000,
        5,
        50,
    )
    assert raw_number(response, "monthly_cost_usd") == Decimal("49.00")
    assert data["price"] == 4900 and data["currency"] == "USD" and data["interval"] == "month"
    assert data["billing_cycle_start"] == sub.current_period_start.date().isoformat()
    # The period ends at the same time of day a month later; its last day is the one before that instant.
    assert data["billing_cycle_end"] == (sub.current_period_end - timedelta(seconds=1)).date().isoformat()
    assert data["auto_renew"] is True and data["status"] == "active" and data["cancel_at_period_end"] is False
    assert data["scheduled_change"] is None and data["trial_end"] is None
    assert data["stripe_subscription_id"] is None


def test_billing_cycle_end_is_the_last_day_of_a_midnight_period(client, app):
    tenant = tenant_on(app, "starter")
    with app.app_context():
        sub = db.session.query(Subscription).filter_by(tenant_id=tenant.tenant_id).one()
        sub.current_period_start = datetime(2025, 11, 1, tzinfo=UTC)
        sub.current_period_end = datetime(2025, 12, 1, tzinfo=UTC)
        db.session.commit()
    data = client.get(path(tenant, "/subscription"), headers=admin_key(app, tenant)).get_json()
    # Seed 000's own example: November's cycle is 2025-11-01 to 2025-11-30.
    assert (data["billing_cycle_start"], data["billing_cycle_end"]) == ("2025-11-01", "2025-11-30")


def test_trialing_professional_shows_its_trial_end(client, app):
    tenant = tenant_on(app, "professional")
    response = client.get(path(tenant, "/subscription"), headers=admin_key(app, tenant))
    data = response.get_json()
    assert data["status"] == "trialing" and data["plan_name"] == "professional"
    assert raw_number(response, "monthly_cost_usd") == Decimal("499.00")
    assert (data["monthly_pipeline_quota"], data["storage_quota_gb"]) == (5000, 500)
    assert data["trial_end"] == data["current_period_end"]
    assert invoices_of(app, tenant) == []  # nothing is invoiced during a trial


def test_yearly_plan_shows_its_monthly_equivalent(client, app):
    from portal.billing.catalog import load_catalog
    from portal.billing.plans import sync_catalog

    with app.app_context():
        specs = load_catalog().plans
        annual = specs[1].model_copy(
            update={
                "key": "professional_annual",
                "name": "Professional (annual)",
                "interval": "year",
                "price": 500000,
                "trial_days": 0,
            }
        )
        sync_catalog([*specs, annual])
        db.session.commit()
    tenant = tenant_on(app, "professional_annual")
    response = client.get(path(tenant, "/subscription"), headers=admin_key(app, tenant))
    data = response.get_json()
    assert data["interval"] == "year" and data["price"] == 500000
    # $5,000.00 a year is $416.666… a month: rounded once, half-up, to the cent.
    assert raw_number(response, "monthly_cost_usd") == Decimal("416.67")


# --- upgrade / downgrade --------------------------------------------------------------------


def test_seed_000_upgrade_with_a_future_effective_date_is_scheduled_then_applied(client, app):
    # Seed 000's example: professional -> enterprise from a date ahead. This professional
    # tenant's trial is over: it has paid its first month.
    tenant = tenant_on(app, "professional", days_ago=20)
    billing_run(app, utcnow())
    assert subscription_row(app, tenant).status == "active"
    key = admin_key(app, tenant)
    effective = (utcnow() + timedelta(days=10)).date()
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=key,
        json={"new_plan": "enterprise", "effective_date": effective.isoformat(), "prorate": True},
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert SEED_UPGRADE_FIELDS <= set(data)
    assert (data["previous_plan"], data["new_plan"], data["effective_date"]) == (
        "professional",
        "enterprise",
        effective.isoformat(),
    )
    assert data["scheduled"] is True and data["invoice_id"] is None
    assert raw_number(response, "prorated_charge") == Decimal("0.00")
    assert f"scheduled for {effective.isoformat()}" in data["message"]

    current = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert current["plan_name"] == "professional"  # not yet
    assert current["scheduled_change"] == {
        "plan": "enterprise",
        "plan_name": "Enterprise",
        "effective_at": f"{effective.isoformat()}T00:00:00Z",
    }

    issued_before = len(invoices_of(app, tenant))
    billing_run(app, datetime.combine(effective, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1))
    after = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert after["plan_name"] == "enterprise" and after["scheduled_change"] is None
    assert after["monthly_pipeline_quota"] == 50000
    listed = client.get(path(tenant, "/invoices"), headers=key).get_json()["invoices"]
    assert len(listed) == issued_before + 1
    newest = listed[0]
    # From the effective date: the rest of professional credited, the rest of enterprise charged.
    assert [line["type"] for line in newest["line_items"]] == ["proration", "proration"]
    assert newest["issued_at"] == f"{effective.isoformat()}T00:00:00Z" and newest["total"] > 0


def test_a_dated_upgrade_during_a_trial_waits_for_its_date(client, app):
    tenant = tenant_on(app, "professional")
    effective = (utcnow() + timedelta(days=5)).date()
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=admin_key(app, tenant),
        json={"new_plan": "enterprise", "effective_date": effective.isoformat()},
    )
    data = response.get_json()
    assert response.status_code == 200, data
    assert data["scheduled"] is True and data["effective_date"] == effective.isoformat()
    assert subscription_row(app, tenant).plan_version.key == "professional"


def test_immediate_upgrade_charges_exactly_the_prorated_difference(client, app):
    tenant = tenant_on(app, "starter", days_ago=9.37)
    key = admin_key(app, tenant)
    before = subscription_row(app, tenant)
    start, end = before.current_period_start, before.current_period_end
    response = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "enterprise"})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["scheduled"] is False and data["direction"] == "upgrade"
    assert data["effective_date"] == utcnow().date().isoformat()
    assert data["message"].startswith("Subscription upgraded successfully")

    invoice = fetch(app, Invoice, data["invoice_id"])
    assert invoice.number == data["invoice_number"] and invoice.tenant_id == tenant.tenant_id
    # Unused seconds of $49 credited, remaining seconds of $1,999 charged, each rounded once.
    remaining = Fraction(int((end - invoice.issued_at).total_seconds()), int((end - start).total_seconds()))
    expected = half_up(199900 * remaining) - half_up(4900 * remaining)
    assert invoice.total == expected
    shown = client.get(path(tenant, f"/invoices/{invoice.id}"), headers=key).get_json()
    assert [(line["type"], line["amount"]) for line in shown["line_items"]] == [
        ("proration", -half_up(4900 * remaining)),
        ("proration", half_up(199900 * remaining)),
    ]
    assert shown["total"] == expected
    assert raw_number(response, "prorated_charge") == Decimal(expected) / 100

    after = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert after["plan_name"] == "enterprise" and raw_number(
        client.get(path(tenant, "/subscription"), headers=key), "monthly_cost_usd"
    ) == Decimal("1999.00")
    # The same period continues: only the plan changed.
    assert after["current_period_end"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_upgrade_without_proration_charges_nothing_now(client, app):
    tenant = tenant_on(app, "starter", days_ago=3)
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=admin_key(app, tenant),
        json={"new_plan": "professional", "prorate": False},
    )
    data = response.get_json()
    assert response.status_code == 200, data
    assert raw_number(response, "prorated_charge") == Decimal("0.00") and data["invoice_id"] is None
    assert subscription_row(app, tenant).plan_version.key == "professional"
    assert len(invoices_of(app, tenant)) == 1


def test_downgrade_is_scheduled_for_period_end_and_can_be_called_off(client, app):
    tenant = tenant_on(app, "enterprise", days_ago=4)
    key = admin_key(app, tenant)
    end = subscription_row(app, tenant).current_period_end
    response = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "starter"})
    data = response.get_json()
    assert response.status_code == 200, data
    assert data["direction"] == "downgrade" and data["scheduled"] is True
    assert data["effective_date"] == end.date().isoformat()
    assert "end of the current billing period" in data["message"]
    assert raw_number(response, "prorated_charge") == Decimal("0.00")
    current = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert current["plan_name"] == "enterprise"
    assert current["scheduled_change"]["plan"] == "starter"

    response = client.delete(path(tenant, "/subscription/scheduled-change"), headers=key)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scheduled_change"] is None and response.get_json()["plan_name"] == "enterprise"
    assert subscription_row(app, tenant).scheduled_plan_version_id is None
    again = client.delete(path(tenant, "/subscription/scheduled-change"), headers=key)
    assert "no scheduled plan change" in assert_envelope(again, 409, "CONFLICT")["detail"]


@pytest.mark.parametrize(
    "plan, says, status, code",
    [
        ("platinum", "Unknown plan 'platinum'", 404, "RESOURCE_NOT_FOUND"),
        ("starter", "already on the Starter plan", 409, "CONFLICT"),
    ],
)
def test_unknown_or_current_plan_is_refused_on_new_plan(client, app, plan, says, status, code):
    tenant = tenant_on(app, "starter")
    response = client.post(
        path(tenant, "/subscription/upgrade"), headers=admin_key(app, tenant), json={"new_plan": plan}
    )
    body = assert_envelope(response, status, code)
    assert says in body["detail"]
    assert body["errors"][0]["field"] == "new_plan"
    if plan == "platinum":
        assert "starter, starter_yearly, professional, professional_yearly, enterprise" in body["detail"]
    assert subscription_row(app, tenant).plan_version.key == "starter"
    assert len(invoices_of(app, tenant)) == 1


def test_effective_date_in_the_past_is_refused(client, app):
    tenant = tenant_on(app, "starter")
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=admin_key(app, tenant),
        json={"new_plan": "enterprise", "effective_date": "2020-01-01"},
    )
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "effective_date" and "past" in body["detail"]
    assert subscription_row(app, tenant).plan_version.key == "starter"


# --- cancel / resume ------------------------------------------------------------------------


def test_seed_000_cancel_at_period_end_then_resume(client, app):
    tenant = tenant_on(app, "starter", days_ago=2)
    key = admin_key(app, tenant)
    end = subscription_row(app, tenant).current_period_end
    response = client.post(
        path(tenant, "/subscription/cancel"),
        headers=key,
        json={
            "cancel_at_period_end": True,
            "cancellation_reason": "switching_to_competitor",
            "feedback": "Found a better pricing model elsewhere",
        },
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert SEED_CANCEL_FIELDS <= set(data)
    assert data["status"] == "cancelled"
    assert data["message"] == "Subscription will be cancelled at end of billing period"
    assert data["billing_cycle_end"] == (end - timedelta(seconds=1)).date().isoformat()
    assert data["ends_at"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert datetime.fromisoformat(data["cancelled_at"]) >= utcnow() - timedelta(minutes=1)
    sub = subscription_row(app, tenant)
    assert (sub.cancel_reason, sub.cancel_feedback) == (
        "switching_to_competitor",
        "Found a better pricing model elsewhere",
    )
    shown = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert shown["auto_renew"] is False and shown["cancel_at_period_end"] is True and shown["status"] == "active"

    twice = client.post(path(tenant, "/subscription/cancel"), headers=key, json={})
    assert_envelope(twice, 409, "CONFLICT")

    resumed = client.post(path(tenant, "/subscription/resume"), headers=key)
    assert resumed.status_code == 200, resumed.get_json()
    assert resumed.get_json()["auto_renew"] is True and resumed.get_json()["cancel_at_period_end"] is False
    nothing = client.post(path(tenant, "/subscription/resume"), headers=key)
    assert "nothing to resume" in assert_envelope(nothing, 409, "CONFLICT")["detail"]


def test_cancel_immediately_ends_it_and_then_nothing_can_change(client, app):
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    response = client.post(path(tenant, "/subscription/cancel"), headers=key, json={"cancel_at_period_end": False})
    data = response.get_json()
    assert response.status_code == 200, data
    assert data["message"] == "Subscription cancelled immediately" and data["cancel_at_period_end"] is False
    assert data["billing_cycle_end"] == utcnow().date().isoformat()
    shown = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert shown["status"] == "canceled" and shown["auto_renew"] is False
    for method, suffix, body in (
        ("post", "/subscription/upgrade", {"new_plan": "enterprise"}),
        ("post", "/subscription/cancel", {}),
        ("post", "/subscription/resume", None),
        ("delete", "/subscription/scheduled-change", None),
    ):
        response = getattr(client, method)(path(tenant, suffix), headers=key, json=body)
        assert_envelope(response, 409, "CONFLICT")
    assert subscription_row(app, tenant).plan_version.key == "starter"


# --- plans ----------------------------------------------------------------------------------


def test_plans_catalog_with_features_and_exact_prices(client, app, make_tenant):
    tenant = make_tenant()
    _, reader = issue_key(app, tenant, scopes=["usage:read"])  # any key of any tenant
    response = client.get("/api/v1/plans", headers=with_key(reader))
    assert response.status_code == 200, response.get_json()
    plans = response.get_json()["plans"]
    assert [plan["key"] for plan in plans] == [
        "starter",
        "starter_yearly",
        "professional",
        "professional_yearly",
        "enterprise",
        "enterprise_yearly",
    ]
    professional = plans[2]
    assert professional["price"] == 49900 and professional["currency"] == "USD"
    assert (professional["interval"], professional["interval_months"], professional["trial_days"]) == ("month", 1, 14)
    assert professional["quotas"] == {
        "monthly_pipeline_quota": 5000,
        "concurrent_pipeline_quota": 15,
        "storage_quota_gb": 500,
    }
    assert professional["rate_limits"] == {"per_minute": 300, "per_hour": 20000}
    assert exact(response)["plans"][2]["price_amount"] == Decimal("499.00")
    assert plans[3]["interval"] == "year" and plans[3]["price"] == 499000 and plans[3]["interval_months"] == 12
    features = {feature["key"]: feature for feature in professional["features"]}
    compute = features["compute_hours"]
    assert compute["pricing"] == "graduated" and compute["included_units"] == 500
    assert compute["tiers"] == [
        {"up_to": 2000, "unit_price": 10, "flat_fee": 0},
        {"up_to": 10000, "unit_price": 8, "flat_fee": 0},
        {"up_to": None, "unit_price": 6.5, "flat_fee": 0},
    ]
    assert features["api_requests"]["package_size"] == 10000 and features["api_requests"]["package_price"] == 50
    assert features["priority_support"]["pricing"] == "included"
    # A sub-cent price is written exactly: 4.5 cents per enterprise pipeline run.
    assert '"unit_price":4.5' in response.get_data(as_text=True)
    by_operator = client.get("/api/v1/plans", headers=bearer(operator_token(app)))
    assert by_operator.status_code == 200 and by_operator.get_json() == response.get_json()
    assert_envelope(client.get("/api/v1/plans"), 401, "UNAUTHORIZED")


# --- invoices -------------------------------------------------------------------------------


def test_invoices_list_newest_first_with_lines_filters_and_pages(client, app):
    tenant = tenant_on(app, "starter", days_ago=5)
    key = admin_key(app, tenant)
    upgrade = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "professional"})
    assert upgrade.status_code == 200, upgrade.get_json()
    response = client.get(path(tenant, "/invoices"), headers=key)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["pagination"]["total_items"] == 2
    first, second = data["invoices"]
    assert first["invoice_id"] == upgrade.get_json()["invoice_id"]  # newest first
    assert set(first) == INVOICE_FIELDS
    assert second["status"] == "open" and second["total"] == 4900 and second["amount_due"] == 4900
    assert exact(response)["invoices"][1]["amount_due_major"] == Decimal("49.00")
    assert [set(line) for line in second["line_items"]] == [LINE_FIELDS]
    plan_line = second["line_items"][0]
    assert (plan_line["type"], plan_line["quantity"], plan_line["unit_amount"], plan_line["amount"]) == (
        "plan",
        1,
        4900,
        4900,
    )
    assert plan_line["description"].startswith("Starter plan (monthly)")
    assert {line["type"] for line in first["line_items"]} == {"proration"}

    page = client.get(path(tenant, "/invoices?page=2&page_size=1"), headers=key).get_json()
    assert [item["invoice_id"] for item in page["invoices"]] == [second["invoice_id"]]
    assert page["pagination"] == {
        "page": 2,
        "page_size": 1,
        "total_items": 2,
        "total_pages": 2,
        "has_next": False,
        "has_previous": True,
    }
    assert client.get(path(tenant, "/invoices?status=paid"), headers=key).get_json()["invoices"] == []
    assert len(client.get(path(tenant, "/invoices?status=open"), headers=key).get_json()["invoices"]) == 2

    bad = assert_envelope(client.get(path(tenant, "/invoices?status=draft"), headers=key), 400, "VALIDATION_ERROR")
    for allowed in ("open", "overdue", "failed", "paid", "void", "uncollectible"):
        assert allowed in bad["detail"]
    for query in ("page=0", "page_size=1000", "page=abc", "page_size=-1"):
        assert_envelope(client.get(path(tenant, f"/invoices?{query}"), headers=key), 400, "VALIDATION_ERROR")

    one = client.get(path(tenant, f"/invoices/{second['invoice_id']}"), headers=key)
    assert one.status_code == 200 and one.get_json() == second
    assert_envelope(client.get(path(tenant, "/invoices/inv_nope"), headers=key), 404, "RESOURCE_NOT_FOUND")


def test_operator_marks_an_invoice_paid_and_payment_status_shows_it(client, app):
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    [invoice] = invoices_of(app, tenant)
    status = client.get(path(tenant, f"/invoices/{invoice.id}/payment-status"), headers=key)
    assert status.status_code == 200, status.get_json()
    assert status.get_json() | {"due_at": None} == {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "status": "open",
        "currency": "USD",
        "total": 4900,
        "amount_due": 4900,
        "amount_paid": 0,
        "paid_at": None,
        "payment_reference": None,
        "overdue": False,
        "payment_failed": False,
        "next_payment_attempt_at": None,
        "attempts": [],
        "due_at": None,
    }

    operator = bearer(operator_token(app))
    paid_at = (utcnow() - timedelta(days=1)).replace(microsecond=0)
    response = client.post(
        path(tenant, f"/invoices/{invoice.id}/mark-paid"),
        headers=operator,
        json={"reference": "  BANK-2025-0042 ", "paid_at": paid_at.isoformat()},
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["status"] == "paid" and data["amount_paid"] == 4900 and data["amount_due"] == 0
    assert raw_number(response, "amount_due_major") == 0

    status = client.get(path(tenant, f"/invoices/{invoice.id}/payment-status"), headers=key).get_json()
    assert status["status"] == "paid" and status["amount_due"] == 0 and status["amount_paid"] == 4900
    assert status["payment_reference"] == "BANK-2025-0042"
    assert status["paid_at"] == paid_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.get(path(tenant, "/invoices?status=paid"), headers=key).get_json()["pagination"]["total_items"] == 1

    again = client.post(
        path(tenant, f"/invoices/{invoice.id}/mark-paid"), headers=operator, json={"reference": "BANK-2025-0043"}
    )
    assert "already paid" in assert_envelope(again, 409, "CONFLICT")["detail"]
    assert fetch(app, Invoice, invoice.id).payment_reference == "BANK-2025-0042"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"reference": "BANK-1", "paid_at": "2999-01-01T00:00:00Z"}, "paid_at"),
        ({"reference": "BANK-1", "paid_at": "2025-01-01T00:00:00"}, "paid_at"),
        ({"reference": "BANK-1", "paid_at": "yesterday"}, "paid_at"),
        ({"reference": "BANK-1", "paid_at": "0001-01-01T00:00:00+05:00"}, "paid_at"),
        ({"reference": "BANK-1", "paid_at": 1700000000}, "paid_at"),
        ({"reference": "   "}, "reference"),
        ({"reference": "x" * 201}, "reference"),
        ({"reference": None}, "reference"),
        ({}, "reference"),
    ],
)
def test_mark_paid_refuses_bad_input_and_leaves_the_invoice_open(client, app, body, field):
    tenant = tenant_on(app, "starter")
    [invoice] = invoices_of(app, tenant)
    response = send_json(
        client, "post", path(tenant, f"/invoices/{invoice.id}/mark-paid"), body, bearer(operator_token(app))
    )
    errors = assert_envelope(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors[0]["field"] == field
    assert fetch(app, Invoice, invoice.id).status == "open"


def test_tenant_keys_cannot_mark_invoices_paid(client, app):
    tenant = tenant_on(app, "starter")
    [invoice] = invoices_of(app, tenant)
    response = client.post(
        path(tenant, f"/invoices/{invoice.id}/mark-paid"),
        headers=admin_key(app, tenant),
        json={"reference": "I paid, honest"},
    )
    assert_envelope(response, 403)
    assert fetch(app, Invoice, invoice.id).status == "open"


# --- who may do what ------------------------------------------------------------------------

READS = [
    ("get", "/subscription"),
    ("get", "/invoices"),
    ("get", "/invoices/{invoice}"),
    ("get", "/invoices/{invoice}/payment-status"),
]
CHANGES = [
    ("post", "/subscription/upgrade", {"new_plan": "enterprise"}),
    ("post", "/subscription/cancel", {}),
    ("post", "/subscription/resume", None),
    ("delete", "/subscription/scheduled-change", None),
]


@pytest.fixture
def two_tenants(app):
    a, b = tenant_on(app, "starter"), tenant_on(app, "starter")
    return a, b, invoices_of(app, b)[0]


def _call(client, method, url, headers, body=None):
    return getattr(client, method)(url, headers=headers, json=body)


def test_a_key_of_another_tenant_is_denied_everywhere(client, app, two_tenants):
    a, b, b_invoice = two_tenants
    key_a = admin_key(app, a)
    for method, suffix, *body in [*READS, *CHANGES, ("post", "/invoices/{invoice}/mark-paid", {"reference": "x"})]:
        url = path(b, suffix.format(invoice=b_invoice.id))
        response = _call(client, method, url, key_a, body[0] if body else None)
        expected = "This endpoint needs an operator token." if suffix.endswith("mark-paid") else "Access denied"
        assert assert_envelope(response, 403)["detail"] == expected, (method, suffix)
    assert subscription_row(app, b).plan_version.key == "starter"
    assert fetch(app, Invoice, b_invoice.id).status == "open"


def test_another_tenants_invoice_under_my_path_is_not_found(client, app, two_tenants):
    a, b, b_invoice = two_tenants
    key_a = admin_key(app, a)
    for suffix in ("/invoices/{invoice}", "/invoices/{invoice}/payment-status"):
        response = client.get(path(a, suffix.format(invoice=b_invoice.id)), headers=key_a)
        assert_envelope(response, 404, "RESOURCE_NOT_FOUND")
    # Not even the operator can reach it through the wrong tenant.
    response = client.post(
        path(a, f"/invoices/{b_invoice.id}/mark-paid"),
        headers=bearer(operator_token(app)),
        json={"reference": "BANK-1"},
    )
    assert_envelope(response, 404, "RESOURCE_NOT_FOUND")
    assert fetch(app, Invoice, b_invoice.id).status == "open"
    assert client.get(path(a, "/invoices"), headers=key_a).get_json()["pagination"]["total_items"] == 1


def test_a_key_without_admin_scope_reads_billing_but_cannot_change_it(client, app):
    tenant = tenant_on(app, "starter")
    [invoice] = invoices_of(app, tenant)
    _, reader = issue_key(app, tenant, scopes=["usage:read", "pipelines:read"])
    for method, suffix in READS:
        response = _call(client, method, path(tenant, suffix.format(invoice=invoice.id)), with_key(reader))
        assert response.status_code == 200, (suffix, response.get_json())
    for method, suffix, body in CHANGES:
        response = _call(client, method, path(tenant, suffix), with_key(reader), body)
        assert "admin:*" in assert_envelope(response, 403, "INSUFFICIENT_SCOPE")["detail"], suffix
    assert subscription_row(app, tenant).cancel_at_period_end is False
    assert subscription_row(app, tenant).plan_version.key == "starter"


def test_operator_token_manages_any_tenants_subscription(client, app):
    tenant = tenant_on(app, "starter")
    operator = bearer(operator_token(app))
    response = client.post(path(tenant, "/subscription/upgrade"), headers=operator, json={"new_plan": "enterprise"})
    assert response.status_code == 200, response.get_json()
    assert client.get(path(tenant, "/subscription"), headers=operator).get_json()["plan_name"] == "enterprise"
    assert_envelope(client.get("/api/v1/tenants/nobody_here/subscription", headers=operator), 404, "RESOURCE_NOT_FOUND")


def test_a_suspended_tenant_can_still_read_and_manage_its_billing(client, app):
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    with app.app_context():
        from portal.models import Tenant

        row = db.session.get(Tenant, tenant.tenant_id)
        row.status, row.suspension_reason = "suspended", "payment_failed"
        db.session.commit()
    assert_envelope(client.get(path(tenant, "/credentials"), headers=key), 403, "CUSTOMER_SUSPENDED")
    assert client.get(path(tenant, "/subscription"), headers=key).status_code == 200
    assert client.get(path(tenant, "/invoices"), headers=key).status_code == 200
    response = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "professional"})
    assert response.status_code == 200, response.get_json()
    assert client.post(path(tenant, "/subscription/cancel"), headers=key, json={}).status_code == 200
    assert client.post(path(tenant, "/subscription/resume"), headers=key).status_code == 200


# --- hostile input --------------------------------------------------------------------------

BAD_UPGRADES = [
    {"new_plan": None},
    {"new_plan": 5},
    {"new_plan": ["enterprise"]},
    {"new_plan": ""},
    {"new_plan": "   "},
    {"new_plan": "x" * 100_000},
    {"new_plan": "enterprise", "effective_date": "2025-02-30"},
    {"new_plan": "enterprise", "effective_date": "12/01/2025"},
    {"new_plan": "enterprise", "effective_date": 20251201},
    {"new_plan": "enterprise", "effective_date": "2025-12-01T00:00:00Z"},
    {"new_plan": "enterprise", "effective_date": "+10000-01-01"},
    {"new_plan": "enterprise", "prorate": "yes"},
    {"new_plan": "enterprise", "prorate": None},
    {"new_plan": "enterprise", "force": True},
    {"plan": "enterprise"},
]
BAD_CANCELS = [
    {"cancel_at_period_end": "false"},
    {"cancel_at_period_end": 0},
    {"cancel_at_period_end": None},
    {"cancellation_reason": "bored"},
    {"cancellation_reason": "x" * 100_000},
    {"cancellation_reason": 7},
    {"feedback": "x" * 2001},
    {"feedback": ["a"]},
    {"reason": "too_expensive"},
]


def test_hostile_bodies_get_a_4xx_envelope_and_change_nothing(client, app):
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    [invoice] = invoices_of(app, tenant)
    operator = bearer(operator_token(app))
    targets = [
        (path(tenant, "/subscription/upgrade"), key, BAD_UPGRADES),
        (path(tenant, "/subscription/cancel"), key, BAD_CANCELS),
        (path(tenant, f"/invoices/{invoice.id}/mark-paid"), operator, []),
    ]
    for url, headers, specific in targets:
        for body in [*HOSTILE_JSON, *specific]:
            response = send_json(client, "post", url, body, headers)
            assert 400 <= response.status_code < 500, (url, str(body)[:80], response.get_data(as_text=True)[:300])
            assert_envelope(response, response.status_code)
        response = client.post(
            url, data="new_plan=enterprise", content_type="application/x-www-form-urlencoded", headers=headers
        )
        assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
        response = client.post(url, data="{not json", content_type="application/json", headers=headers)
        assert_envelope(response, 400)
    sub = subscription_row(app, tenant)
    assert sub.plan_version.key == "starter" and sub.cancel_at_period_end is False and sub.status == "active"
    assert count(app, Invoice, tenant_id=tenant.tenant_id) == 1
    assert fetch(app, Invoice, invoice.id).status == "open"


def test_a_bad_date_names_the_field_and_says_how_to_write_it(client, app):
    tenant = tenant_on(app, "starter")
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=admin_key(app, tenant),
        json={"new_plan": "enterprise", "effective_date": "2025-02-30"},
    )
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "effective_date"
    assert "2025-02-30 is not a calendar date" in body["detail"]
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=admin_key(app, tenant),
        json={"new_plan": "enterprise", "effective_date": "next week"},
    )
    assert "YYYY-MM-DD" in assert_envelope(response, 400, "VALIDATION_ERROR")["detail"]


def test_a_far_future_effective_date_is_scheduled_not_an_error(client, app):
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    response = client.post(
        path(tenant, "/subscription/upgrade"),
        headers=key,
        json={"new_plan": "enterprise", "effective_date": "9999-12-31"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["effective_date"] == "9999-12-31"
    shown = client.get(path(tenant, "/subscription"), headers=key).get_json()
    assert shown["scheduled_change"]["effective_at"] == "9999-12-31T00:00:00Z"
    assert shown["plan_name"] == "starter"


def test_a_private_plan_is_the_operators_to_give(client, app):
    from portal.billing.catalog import load_catalog
    from portal.billing.plans import sync_catalog

    with app.app_context():
        specs = load_catalog().plans
        custom = specs[2].model_copy(
            update={"key": "acme_custom", "name": "Acme custom", "price": 250000, "public": False}
        )
        sync_catalog([*specs, custom])
        db.session.commit()
    tenant = tenant_on(app, "starter")
    key = admin_key(app, tenant)
    assert "acme_custom" not in [plan["key"] for plan in client.get("/api/v1/plans", headers=key).get_json()["plans"]]
    response = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "acme_custom"})
    body = assert_envelope(response, 404, "RESOURCE_NOT_FOUND")
    assert "Unknown plan 'acme_custom'" in body["detail"] and "acme_custom" not in body["detail"].split("Plans:")[1]
    response = client.post(
        path(tenant, "/subscription/upgrade"), headers=bearer(operator_token(app)), json={"new_plan": "acme_custom"}
    )
    assert response.status_code == 200, response.get_json()
    assert client.get(path(tenant, "/subscription"), headers=key).get_json()["plan_name"] == "acme_custom"
