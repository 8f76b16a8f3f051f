"""The catalog file: the shipped one reproduces seed 000's plans; a broken one says where."""

from decimal import Decimal

import pytest

from portal.billing.catalog import DEFAULT_CATALOG_PATH, CatalogError, CatalogFile, PlanSpec, load_catalog
from portal.billing.money import format_money
from portal.billing.pricing import usage_charges, usage_total

METERED_KEYS = {"pipeline_runs", "concurrent_pipelines", "storage_gb", "compute_hours", "api_requests"}


@pytest.fixture(scope="module")
def catalog() -> CatalogFile:
    return load_catalog()


@pytest.fixture(scope="module")
def plans(catalog) -> dict[str, PlanSpec]:
    return {plan.key: plan for plan in catalog.plans}


def features(plan: PlanSpec) -> dict:
    return {feature.key: feature for feature in plan.features}


def test_the_shipped_catalog_has_seed_000s_three_plans_in_order_each_also_yearly(catalog):
    assert DEFAULT_CATALOG_PATH.name == "catalog.toml" and DEFAULT_CATALOG_PATH.is_file()
    ordered = sorted(catalog.plans, key=lambda plan: plan.sort_order)
    monthly = [plan.key for plan in ordered if plan.interval == "month"]
    assert monthly == ["starter", "professional", "enterprise"]
    assert [plan.key for plan in ordered if plan.interval == "year"] == [f"{key}_yearly" for key in monthly]
    assert all(plan.public and plan.currency == "USD" for plan in catalog.plans)


def test_professional_matches_seed_000(plans):
    professional = plans["professional"]
    assert professional.name == "Professional"
    assert professional.price == 49900
    assert format_money(professional.price, professional.currency) == "$499.00"
    assert professional.quotas.model_dump() == {
        "monthly_pipeline_quota": 5000,
        "concurrent_pipeline_quota": 15,
        "storage_quota_gb": 500,
    }
    assert professional.rate_limits.model_dump() == {"per_minute": 300, "per_hour": 20000}
    assert professional.trial_days == 14


@pytest.mark.parametrize(
    ("key", "price", "quotas", "rate_limits"),
    [
        ("starter", 4900, (1000, 5, 50), (100, 5000)),
        ("professional", 49900, (5000, 15, 500), (300, 20000)),
        ("enterprise", 199900, (50000, 100, 5000), (1000, 100000)),
    ],
)
def test_plan_prices_quotas_and_rate_limits(plans, key, price, quotas, rate_limits):
    plan = plans[key]
    assert plan.price == price
    assert tuple(plan.quotas.model_dump().values()) == quotas
    assert (plan.rate_limits.per_minute, plan.rate_limits.per_hour) == rate_limits


def test_every_pricing_model_appears(catalog):
    used = {feature.pricing for plan in catalog.plans for feature in plan.features}
    assert used == {"included", "per_unit", "graduated", "volume", "package"}


def test_every_plan_prices_every_metered_quantity_of_seed_000(catalog):
    for plan in catalog.plans:
        assert METERED_KEYS <= set(features(plan)), plan.key


def test_limits_and_included_units_follow_the_quotas(catalog):
    for plan in catalog.plans:
        by_key = features(plan)
        assert by_key["concurrent_pipelines"].limit == plan.quotas.concurrent_pipeline_quota
        runs, storage = by_key["pipeline_runs"], by_key["storage_gb"]
        if runs.pricing == "included":
            # A hard quota (seed 000's QUOTA_EXCEEDED).
            assert runs.limit == plan.quotas.monthly_pipeline_quota
        else:
            # Overage beyond the quota is billed, so the quota is what is included.
            assert runs.included_units == plan.quotas.monthly_pipeline_quota and runs.limit is None
        if storage.pricing == "included":
            assert storage.limit == plan.quotas.storage_quota_gb
        else:
            assert storage.included_units == plan.quotas.storage_quota_gb and storage.limit is None
        assert storage.reset_mode == "accumulate"


def test_priority_support_comes_with_professional_and_enterprise_only(plans):
    assert "priority_support" not in features(plans["starter"])
    assert features(plans["professional"])["priority_support"].pricing == "included"
    assert features(plans["enterprise"])["priority_support"].pricing == "included"


def test_shipped_prices_give_exact_invoice_lines(plans):
    professional = features(plans["professional"])
    assert usage_total(professional["pipeline_runs"], Decimal(6000)) == 1000 * 10
    # 12,500 compute hours: 500 included, then 2,000 at 10¢, 8,000 at 8¢, 2,000 at 6.5¢.
    assert usage_total(professional["compute_hours"], Decimal(12500)) == 20000 + 64000 + 13000
    # 1,700 GB: 1,200 beyond the 500 included, all in the 1,000–10,000 tier at 15¢.
    assert usage_total(professional["storage_gb"], Decimal(1700)) == 18000
    assert usage_total(professional["api_requests"], Decimal(1_000_001)) == 50
    enterprise_runs = features(plans["enterprise"])["pipeline_runs"]
    [line] = usage_charges(enterprise_runs, Decimal(50333))
    assert (line.description, line.amount) == ("Pipeline runs: 333 runs × $0.045 (first 50,000 included)", 1499)


def test_plans_survive_the_json_round_trip_of_plan_versions(catalog):
    for plan in catalog.plans:
        assert PlanSpec.model_validate(plan.model_dump(mode="json")) == plan


# A broken catalog file.

PLAN = """
[[plans]]
key = "{key}"
name = "Team"
price = {price}
currency = "{currency}"
quotas = {{ monthly_pipeline_quota = 10, concurrent_pipeline_quota = 1, storage_quota_gb = 1 }}
rate_limits = {{ per_minute = 10, per_hour = {per_hour} }}
"""

FEATURE = """
[[plans.features]]
key = "{key}"
name = "Runs"
pricing = "{pricing}"
{extra}
"""


def write(tmp_path, text: str):
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def plan(key="team", price=1000, currency="USD", per_hour=600) -> str:
    return PLAN.format(key=key, price=price, currency=currency, per_hour=per_hour)


def feature(key="runs", pricing="included", extra="") -> str:
    return FEATURE.format(key=key, pricing=pricing, extra=extra)


def load_error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: ")
    return str(caught.value)


def test_a_minimal_catalog_loads_with_defaults(tmp_path):
    loaded = load_catalog(write(tmp_path, plan(currency="eur") + feature()))
    [team] = loaded.plans
    assert (team.currency, team.interval, team.trial_days, team.sort_order, team.public) == ("EUR", "month", 0, 0, True)
    assert load_catalog(str(write(tmp_path, plan()))) == load_catalog(tmp_path / "catalog.toml")


def test_invalid_toml_names_the_file(tmp_path):
    message = load_error(tmp_path, "[[plans]\nkey = ")
    assert "invalid TOML" in message and "line 1" in message


def test_a_missing_file_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load_catalog(tmp_path / "missing.toml")


def test_catalog_error_is_a_value_error():
    assert issubclass(CatalogError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (plan(price=-1), "plans[0].price: Input should be greater than or equal to 0"),
        (plan(currency="EURO"), "plans[0].currency: String should match pattern"),
        (plan(key="Team Plan"), "plans[0].key: String should match pattern"),
        (plan(per_hour=5), "plans[0].rate_limits: per_hour (5) is below per_minute (10)"),
        (plan() + "trial_days = 400\n", "plans[0].trial_days: Input should be less than or equal to 365"),
        (plan() + 'interval = "week"\n', "plans[0].interval: Input should be 'month' or 'year'"),
        (plan() + "colour = 1\n", "plans[0].colour: Extra inputs are not permitted"),
        (plan() + plan(), "plans: plan keys must be unique; repeated: team"),
        (
            plan() + feature() + feature(),
            "plans[0].features: feature keys must be unique within a plan; repeated: runs",
        ),
        (plan() + feature(pricing="per_unit"), "plans[0].features[0]: per_unit pricing needs unit_price"),
        (
            plan()
            + feature(
                pricing="graduated", extra='tiers = [{ up_to = 5, unit_price = 1 }, { up_to = "x", unit_price = 1 }]'
            ),
            "plans[0].features[0].tiers[1].up_to: Input should be a valid decimal",
        ),
        (
            plan() + feature(pricing="graduated", extra="tiers = [{ up_to = 5, unit_price = 1 }]"),
            'plans[0].features[0]: the last tier must be unbounded (up_to = "inf")',
        ),
        ("plans = []\n", "plans: List should have at least 1 item"),
        ("[[plan]]\n", "plans: Field required"),
    ],
)
def test_schema_errors_name_the_file_and_the_field(tmp_path, text, expected):
    assert expected in load_error(tmp_path, text)


def test_every_problem_is_listed(tmp_path):
    message = load_error(tmp_path, plan(price=-1, currency="x") + feature(key="Bad"))
    assert "3 problem(s)" in message
    assert "plans[0].features[0].key" in message
