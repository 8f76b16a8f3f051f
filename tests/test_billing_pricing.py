"""Feature pricing: each model's invoice lines, rounded once per line, and the schema's refusals."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from portal.billing.money import round_half_up
from portal.billing.pricing import Charge, FeatureSpec, Tier, usage_charges, usage_total

D = Decimal


def feature(pricing: str, **fields) -> FeatureSpec:
    fields.setdefault("key", "compute_hours")
    fields.setdefault("name", "Compute hours")
    fields.setdefault("unit_label", "hours")
    return FeatureSpec(pricing=pricing, **fields)


COMPUTE = feature(
    "graduated",
    included_units=200,
    tiers=[
        {"up_to": 1000, "unit_price": "8", "flat_fee": 500},
        {"up_to": 5000, "unit_price": "6.5"},
        {"up_to": "inf", "unit_price": "5"},
    ],
)
STORAGE = feature(
    "volume",
    key="storage_gb",
    name="Storage",
    unit_label="GB",
    included_units=500,
    tiers=[
        {"up_to": 1000, "unit_price": "25"},
        {"up_to": 5000, "unit_price": "20", "flat_fee": 1000},
        {"up_to": "inf", "unit_price": "15"},
    ],
)
REQUESTS = feature(
    "package",
    key="api_requests",
    name="API requests",
    unit_label="requests",
    included_units=50000,
    package_size=10000,
    package_price=100,
)


# Worked examples, to the cent.


def test_per_unit_sub_cent_price():
    runs = feature("per_unit", key="pipeline_runs", name="Pipeline runs", unit_label="runs", unit_price="0.5")
    assert usage_charges(runs, D(1250)) == [Charge("Pipeline runs: 1,250 runs × $0.005", D(1250), D("0.5"), 625)]


def test_per_unit_above_the_included_units_reads_like_an_invoice_line():
    hours = feature("per_unit", included_units=1000, unit_price="5")
    [line] = usage_charges(hours, D(2250))
    assert line.description == "Compute hours: 1,250 hours × $0.05 (first 1,000 included)"
    assert (line.quantity, line.unit_amount, line.amount) == (D(1250), D(5), 6250)


def test_a_line_is_rounded_once_not_per_unit():
    # 3 × 0.333 = 0.999 cents: one rounding gives 1; rounding each unit would give 0.
    assert usage_total(feature("per_unit", unit_price="0.333"), D(3)) == 1
    assert usage_total(feature("per_unit", unit_price="0.5"), D(1)) == 1
    assert usage_total(feature("per_unit", unit_price="0.499"), D(1)) == 0


def test_fractional_quantities_are_priced_exactly():
    # 127.5 hours at 8.25 cents = 1051.875 cents -> 1052.
    assert usage_total(feature("per_unit", unit_price="8.25"), D("127.5")) == 1052


def test_graduated_prices_each_tier_and_adds_its_flat_fee_as_a_line():
    lines = usage_charges(COMPUTE, D("6327.5"))  # 6,127.5 billable after 200 included
    assert [(line.description, line.quantity, line.unit_amount, line.amount) for line in lines] == [
        ("Compute hours: 1,000 hours × $0.08 (up to 1,000; after 200 included)", D(1000), D(8), 8000),
        ("Compute hours: flat fee (up to 1,000)", D(1), D(500), 500),
        ("Compute hours: 4,000 hours × $0.065 (1,000–5,000)", D(4000), D("6.5"), 26000),
        ("Compute hours: 1,127.5 hours × $0.05 (over 5,000)", D("1127.5"), D(5), 5638),
    ]
    assert usage_total(COMPUTE, D("6327.5")) == 40138


def test_graduated_stops_at_the_tier_the_quantity_reaches():
    lines = usage_charges(COMPUTE, D(1200))  # exactly the first tier's 1,000 billable
    assert [line.amount for line in lines] == [8000, 500]
    assert usage_total(COMPUTE, D(1201)) == 8000 + 500 + 7  # one more hour at 6.5 cents


def test_graduated_with_a_single_unbounded_tier_has_no_band_in_its_description():
    flat = feature("graduated", tiers=[{"up_to": "inf", "unit_price": "8", "flat_fee": 100}])
    assert [line.description for line in usage_charges(flat, D(10))] == [
        "Compute hours: 10 hours × $0.08",
        "Compute hours: flat fee",
    ]


def test_volume_prices_every_unit_at_the_tier_the_quantity_falls_into():
    lines = usage_charges(STORAGE, D("2100.25"), currency="eur")
    assert [(line.description, line.quantity, line.amount) for line in lines] == [
        ("Storage: 1,600.25 GB × €0.20 (volume tier 1,000–5,000; after 500 included)", D("1600.25"), 32005),
        ("Storage: flat fee (volume tier 1,000–5,000)", D(1), 1000),
    ]


def test_volume_at_a_tier_bound_stays_in_the_lower_tier():
    assert usage_total(STORAGE, D(1500)) == 1000 * 25
    assert usage_total(STORAGE, D("1500.01")) == round_half_up(D("1000.01") * 20) + 1000


def test_volume_total_can_drop_when_a_cheaper_tier_is_reached():
    # The known trait of volume pricing, and why monotonicity is only promised for the others.
    assert usage_total(STORAGE, D(1501)) == 1001 * 20 + 1000 < usage_total(STORAGE, D(1500)) == 1000 * 25


def test_package_rounds_up_to_whole_packages():
    [line] = usage_charges(REQUESTS, D(75001))
    assert line.description == "API requests: 3 × 10,000 requests at $1.00 (25,001 requests; first 50,000 included)"
    assert (line.quantity, line.unit_amount, line.amount) == (D(3), D(100), 300)
    assert usage_total(REQUESTS, D(70000)) == 200
    assert usage_total(REQUESTS, D(50001)) == 100


def test_nothing_billable_means_no_lines():
    assert usage_charges(feature("included"), D(10**9)) == []
    assert usage_charges(COMPUTE, D(200)) == []
    assert usage_charges(STORAGE, D(0)) == []
    assert usage_charges(REQUESTS, D(50000)) == []
    assert usage_charges(feature("per_unit", unit_price="5"), D(0)) == []
    assert usage_total(REQUESTS, D(0)) == 0


def test_the_currency_labels_the_prices():
    [line] = usage_charges(feature("per_unit", unit_price="125"), D(2), currency="GBP")
    assert line.description == "Compute hours: 2 hours × £1.25"


@pytest.mark.parametrize("quantity", [D(-1), D("-0.01"), D("NaN"), D("Infinity"), D("sNaN"), -5])
def test_negative_or_non_finite_quantities_are_refused(quantity):
    with pytest.raises(ValueError, match="finite number >= 0"):
        usage_charges(COMPUTE, quantity)


@pytest.mark.parametrize("quantity", [1.5, "12", True])
def test_floats_and_strings_are_not_quantities(quantity):
    with pytest.raises(TypeError):
        usage_total(COMPUTE, quantity)


def test_int_quantities_are_accepted():
    assert usage_total(feature("per_unit", unit_price="5"), 3) == 15


# The schema.


def test_seed_002_style_inf_bound_and_json_round_trip():
    assert Tier(up_to="inf", unit_price="0.5").up_to is None
    assert Tier(up_to="INF", unit_price=1).up_to is None
    for spec in (COMPUTE, STORAGE, REQUESTS, feature("per_unit", unit_price="0.05", limit=10000)):
        # Plan versions store features as JSON; they must come back identical.
        assert FeatureSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_defaults():
    spec = feature("included")
    assert (spec.included_units, spec.limit, spec.reset_mode, spec.tiers, spec.unit_label) == (
        0,
        None,
        "reset",
        [],
        "hours",
    )


def error_of(**fields) -> str:
    with pytest.raises(ValidationError) as caught:
        feature(**fields)
    return str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pricing": "per_unit"}, "per_unit pricing needs unit_price"),
        (
            {"pricing": "per_unit", "unit_price": 1, "tiers": [{"up_to": None, "unit_price": 1}]},
            "per_unit pricing does not use tiers",
        ),
        ({"pricing": "included", "unit_price": 1}, "included pricing does not use unit_price"),
        ({"pricing": "graduated"}, "graduated pricing needs tiers"),
        ({"pricing": "volume", "unit_price": 1}, "volume pricing needs tiers; volume pricing does not use unit_price"),
        ({"pricing": "package", "package_size": 10}, "package pricing needs package_price"),
        (
            {"pricing": "package", "package_size": 10, "package_price": 5, "unit_price": 1},
            "package pricing does not use unit_price",
        ),
        ({"pricing": "graduated", "tiers": [{"up_to": 10, "unit_price": 1}]}, "the last tier must be unbounded"),
        (
            {
                "pricing": "graduated",
                "tiers": [
                    {"up_to": 10, "unit_price": 1},
                    {"up_to": 10, "unit_price": 1},
                    {"up_to": None, "unit_price": 1},
                ],
            },
            "tiers must ascend: tiers[1].up_to (10) is not above 10",
        ),
        (
            {"pricing": "volume", "tiers": [{"up_to": None, "unit_price": 1}, {"up_to": None, "unit_price": 1}]},
            "only the last tier may be unbounded, not tiers[0]",
        ),
        (
            {"pricing": "graduated", "tiers": [{"up_to": 0, "unit_price": 1}, {"up_to": None, "unit_price": 1}]},
            "greater than 0",
        ),
        ({"pricing": "per_unit", "unit_price": "-0.5"}, "unit_price\n  Input should be greater than or equal to 0"),
        ({"pricing": "per_unit", "unit_price": "NaN"}, "finite number"),
        ({"pricing": "included", "included_units": -1}, "included_units\n  Input should be greater than or equal to 0"),
        ({"pricing": "included", "limit": -1}, "limit\n  Input should be greater than or equal to 0"),
        ({"pricing": "package", "package_size": 0, "package_price": 5}, "package_size\n  Input should be greater"),
        ({"pricing": "graduated", "tiers": [{"up_to": None, "unit_price": 1, "flat_fee": -1}]}, "flat_fee"),
        ({"pricing": "flat"}, "pricing\n  Input should be 'included', 'per_unit', 'graduated', 'volume' or 'package'"),
        ({"pricing": "included", "reset_mode": "rollover"}, "Input should be 'reset' or 'accumulate'"),
        ({"pricing": "included", "key": "Compute-Hours"}, "key\n  String should match pattern"),
        ({"pricing": "included", "key": "x"}, "key\n  String should match pattern"),
        ({"pricing": "included", "name": ""}, "name\n  String should have at least 1 character"),
        ({"pricing": "included", "price_per_unit": 1}, "price_per_unit\n  Extra inputs are not permitted"),
        (
            {"pricing": "graduated", "tiers": [{"up_to": None, "unit_price": 1, "upTo": 5}]},
            "Extra inputs are not permitted",
        ),
    ],
)
def test_schema_refuses_with_a_clear_message(fields, message):
    assert message in error_of(**fields)


# Properties over random tiers and quantities.

prices = st.decimals(min_value=0, max_value=1000, places=3)
quantities = st.decimals(min_value=0, max_value=200000, places=2)
included = st.decimals(min_value=0, max_value=1000, places=0)


@st.composite
def tier_lists(draw) -> list[dict]:
    bounds = sorted(draw(st.sets(st.decimals(min_value=1, max_value=100000, places=1), max_size=4)))
    return [
        {"up_to": bound, "unit_price": draw(prices), "flat_fee": draw(st.sampled_from([0, 0, 250, 1999]))}
        for bound in [*bounds, None]
    ]


def billable(spec: FeatureSpec, quantity: Decimal) -> Decimal:
    return max(quantity - spec.included_units, D(0))


def assert_lines_are_well_formed(lines: list[Charge]) -> None:
    for line in lines:
        assert type(line.amount) is int
        assert line.quantity > 0
        assert line.amount == round_half_up(Fraction(line.quantity) * Fraction(line.unit_amount))


@given(tier_lists(), included, quantities)
def test_graduated_total_is_the_sum_over_tiers(tiers, included_units, quantity):
    spec = feature("graduated", tiers=tiers, included_units=included_units)
    lines = usage_charges(spec, quantity)
    assert_lines_are_well_formed(lines)
    # Independently: how many units land in each tier, priced and rounded per tier.
    expected, lower, left = 0, Fraction(0), Fraction(billable(spec, quantity))
    for tier in tiers:
        upper = Fraction(tier["up_to"]) if tier["up_to"] is not None else None
        units = left if upper is None else min(left, upper - lower)
        if units > 0:
            expected += round_half_up(units * Fraction(tier["unit_price"])) + tier["flat_fee"]
        left -= units
        lower = upper
    assert usage_total(spec, quantity) == expected
    unit_lines = [line for line in lines if not line.description.startswith("Compute hours: flat fee")]
    assert sum(line.quantity for line in unit_lines) == billable(spec, quantity)


@given(tier_lists(), included, quantities)
def test_volume_prices_all_units_at_one_tier(tiers, included_units, quantity):
    spec = feature("volume", tiers=tiers, included_units=included_units)
    lines = usage_charges(spec, quantity)
    assert_lines_are_well_formed(lines)
    units = billable(spec, quantity)
    if units == 0:
        assert lines == []
        return
    tier = next(tier for tier in tiers if tier["up_to"] is None or units <= tier["up_to"])
    assert lines[0].quantity == units and lines[0].unit_amount == tier["unit_price"]
    assert len(lines) == (2 if tier["flat_fee"] else 1)
    assert usage_total(spec, quantity) == round_half_up(units * tier["unit_price"]) + tier["flat_fee"]


@given(st.integers(min_value=1, max_value=100000), st.integers(min_value=0, max_value=100000), included, quantities)
def test_package_rounds_up_to_whole_packages_property(size, price, included_units, quantity):
    spec = feature("package", package_size=size, package_price=price, included_units=included_units)
    lines = usage_charges(spec, quantity)
    assert_lines_are_well_formed(lines)
    units = billable(spec, quantity)
    if units == 0:
        assert lines == []
        return
    [line] = lines
    packages = int(line.quantity)
    assert line.quantity == packages and (packages - 1) * size < units <= packages * size
    assert line.amount == packages * price


@given(prices, included, quantities)
def test_per_unit_is_one_line_rounded_once(price, included_units, quantity):
    spec = feature("per_unit", unit_price=price, included_units=included_units)
    lines = usage_charges(spec, quantity)
    assert_lines_are_well_formed(lines)
    assert len(lines) == (1 if billable(spec, quantity) else 0)
    assert usage_total(spec, quantity) == round_half_up(billable(spec, quantity) * price)


def any_feature():
    return st.one_of(
        st.builds(lambda p, i: feature("per_unit", unit_price=p, included_units=i), prices, included),
        st.builds(lambda t, i: feature("graduated", tiers=t, included_units=i), tier_lists(), included),
        st.builds(lambda t, i: feature("volume", tiers=t, included_units=i), tier_lists(), included),
        st.builds(
            lambda s, p, i: feature("package", package_size=s, package_price=p, included_units=i),
            st.integers(1, 50000),
            st.integers(0, 10000),
            included,
        ),
        st.builds(lambda i: feature("included", included_units=i), included),
    )


@given(any_feature(), quantities)
def test_totals_are_never_negative_and_lines_never_zero_quantity(spec, quantity):
    lines = usage_charges(spec, quantity)
    assert_lines_are_well_formed(lines)
    assert usage_total(spec, quantity) == sum(line.amount for line in lines) >= 0


@given(any_feature().filter(lambda spec: spec.pricing != "volume"), quantities, quantities)
def test_more_usage_never_costs_less_except_under_volume_pricing(spec, first, second):
    low, high = sorted((first, second))
    assert usage_total(spec, low) <= usage_total(spec, high)
