"""Taxes on invoices: the EU reverse charge against domestic VAT on the same plan, rates by
country and region, proration and usage lines taxed like plan lines, credit reducing what is
taxed, the buyer's billing profile copied onto the invoice, and the arithmetic property-tested:
for any mix of lines, credit and rate, the lines' nets and taxes add up to the total."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.access import SYSTEM
from portal.billing import credits, subscriptions, taxes
from portal.billing.money import allocate
from portal.billing.profile import ProfileData, update
from portal.infra.transactions import commit
from portal.models import Invoice
from tests.billing_engine_support import bare_tenant, half_up, invoices_of, prorated, run_billing, subscribe, utc

T0 = utc(2027, 1, 1)
T1 = utc(2027, 2, 1)
FR_VAT = "FR40303265045"
DE_VAT = "DE123456788"
REVERSE_CHARGE = "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"


@pytest.fixture
def seller_de(app, monkeypatch):
    monkeypatch.setitem(app.config, "BILLING_SELLER_COUNTRY", "DE")


def customer(country: str = "", region: str = "", tax_ids=(), name: str = "Kunde GmbH"):
    """A tenant without a subscription yet, with this billing profile."""
    tenant = bare_tenant(name)
    update(
        SYSTEM,
        tenant,
        ProfileData(
            legal_name=f"{name} (legal)",
            address_line1="1 Main Street",
            city="Somewhere",
            postal_code="12345",
            country=country,
            region=region,
            tax_ids=[{"type": kind, "value": value} for kind, value in tax_ids],
            po_number="PO-1",
        ),
    )
    commit()
    return tenant


def first_invoice(tenant, plan="starter", at=T0) -> Invoice:
    subscription = subscribe(plan, at, tenant)
    return invoices_of(subscription)[0]


def line_taxes(invoice: Invoice):
    return [(line.tax_name, line.tax_percentage, line.tax_amount) for line in invoice.lines]


# --- which tax applies --------------------------------------------------------------------


@pytest.mark.usefixtures("ctx", "seller_de")
def test_a_french_business_with_a_vat_number_is_reverse_charged_and_a_german_one_pays_19_percent():
    french = first_invoice(customer("FR", tax_ids=[("eu_vat", FR_VAT)]))
    assert (french.subtotal, french.tax, french.total) == (4900, 0, 4900)
    assert french.tax_note == REVERSE_CHARGE
    assert line_taxes(french) == [("VAT reverse charge", Decimal(0), 0)]

    german = first_invoice(customer("DE", tax_ids=[("eu_vat", DE_VAT)]))
    assert (german.subtotal, german.tax, german.total) == (4900, 931, 5831)  # 19 % of $49.00
    assert german.tax_note is None
    assert line_taxes(german) == [("VAT", Decimal(19), 931)]
    assert [(rate.label, rate.taxable, rate.amount) for rate in german.tax_lines] == [("VAT 19%", 4900, 931)]


@pytest.mark.usefixtures("ctx", "seller_de")
def test_an_eu_buyer_without_a_vat_number_pays_the_sellers_rate():
    invoice = first_invoice(customer("FR"))
    assert (invoice.tax, invoice.total) == (931, 5831)  # Germany's 19 %, not France's 20 %
    assert invoice.tax_note is None


@pytest.mark.usefixtures("ctx", "seller_de")
def test_an_eu_buyer_in_another_country_with_a_vat_number_of_the_sellers_country_is_not_reverse_charged():
    invoice = first_invoice(customer("FR", tax_ids=[("eu_vat", DE_VAT)]))
    assert invoice.tax == 931 and invoice.tax_note is None


@pytest.mark.usefixtures("ctx", "seller_de")
@pytest.mark.parametrize(
    ("country", "region", "tax", "label"),
    [
        ("GB", "", 980, "VAT 20%"),
        ("CH", "", 397, "VAT 8.1%"),  # 396.9 -> 397
        ("CA", "ON", 637, "HST 13%"),
        ("CA", "on", 637, "HST 13%"),
        ("CA", "BC", 245, "GST 5%"),
        ("US", "NY", 0, None),
    ],
)
def test_outside_the_eu_the_buyers_country_or_region_rate_applies_if_the_catalog_has_one(country, region, tax, label):
    invoice = first_invoice(customer(country, region))
    assert (invoice.tax, invoice.total) == (tax, 4900 + tax)
    assert [rate.label for rate in invoice.tax_lines] == ([label] if label else [])


@pytest.mark.usefixtures("ctx", "seller_de")
def test_no_billing_profile_or_no_country_means_no_tax_as_before():
    assert first_invoice(bare_tenant()).tax == 0
    invoice = first_invoice(customer(""))
    assert (invoice.tax, invoice.total, invoice.tax_lines) == (0, 4900, [])


# --- the buyer on the invoice -------------------------------------------------------------


@pytest.mark.usefixtures("ctx", "seller_de")
def test_the_invoice_keeps_the_billing_profile_as_it_was_when_issued():
    tenant = customer("FR", tax_ids=[("eu_vat", FR_VAT)], name="Müller & Söhne 東京 Łódź")
    subscription = subscribe("starter", T0, tenant)
    update(SYSTEM, tenant, ProfileData(legal_name="Renamed SA", country="DE"))
    commit()
    run_billing(T1)
    first, renewal = invoices_of(subscription)
    assert first.billing_name == "Müller & Söhne 東京 Łódź (legal)"
    assert first.buyer["tax_ids"] == [{"type": "eu_vat", "value": FR_VAT}]
    assert first.buyer["po_number"] == "PO-1" and first.buyer["country"] == "FR"
    assert first.tax == 0
    assert renewal.billing_name == "Renamed SA" and renewal.buyer["tax_ids"] == []
    assert renewal.tax == 931  # now a German buyer


# --- lines of every kind ------------------------------------------------------------------


@pytest.mark.usefixtures("ctx", "seller_de")
def test_proration_lines_are_taxed_like_plan_lines_the_credit_line_negatively():
    tenant = customer("DE")
    subscription = subscribe("starter", T0, tenant)
    at = utc(2027, 1, 25, 13, 37, 11)
    _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional", at=at)
    commit()
    credit, charge = prorated(4900, T0, T1, at), prorated(49900, T0, T1, at)
    assert [(line.amount, line.tax_amount) for line in invoice.lines] == [
        (-credit, -half_up(Fraction(credit * 19, 100))),
        (charge, half_up(Fraction(charge * 19, 100))),
    ]
    assert invoice.subtotal == charge - credit
    assert invoice.tax == sum(line.tax_amount for line in invoice.lines)
    assert invoice.total == invoice.subtotal + invoice.tax


@pytest.mark.usefixtures("ctx", "seller_de")
def test_credit_reduces_what_is_taxed():
    tenant = customer("DE")
    credits.grant(SYSTEM, tenant, 1000, "USD", reason="goodwill", at=utc(2026, 12, 1))
    commit()
    invoice = first_invoice(tenant)
    # $49.00 less $10.00 of credit = $39.00 taxed: 741 cents of VAT.
    assert (invoice.subtotal, invoice.credits_applied, invoice.tax, invoice.total) == (4900, 1000, 741, 4641)
    assert [(line.credit_allocated, line.tax_amount) for line in invoice.lines] == [(1000, 741)]


@pytest.mark.usefixtures("ctx", "seller_de")
def test_credit_covering_everything_leaves_nothing_to_tax_or_pay():
    tenant = customer("DE")
    credits.grant(SYSTEM, tenant, 10000, "USD", reason="goodwill", at=utc(2026, 12, 1))
    commit()
    invoice = first_invoice(tenant)
    assert (invoice.credits_applied, invoice.tax, invoice.total, invoice.status) == (4900, 0, 0, "paid")


# --- the arithmetic -----------------------------------------------------------------------


def test_allocation_sums_exactly_and_gives_leftover_units_to_the_largest_remainders():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [5, 3, 2]) == [5, 3, 2]
    assert allocate(7, [100, -40]) == [12, -5]  # 11.67 and -4.67
    assert allocate(0, [1, 2]) == [0, 0]


def test_an_inclusive_rate_takes_the_tax_out_of_the_amount():
    treatment = taxes.Treatment("GST", Decimal(10), inclusive=True)
    assert taxes.line_tax(1100, treatment) == 100
    assert taxes.line_tax(-1100, treatment) == -100
    [line] = taxes.tax_lines([1100], 0, treatment)
    figures = taxes.totals([1100], ["plan"], 0, [line], inclusive=True)
    assert (figures.subtotal, figures.tax, figures.total) == (1100, 100, 1100)


def test_discount_lines_are_taxed_negatively_and_shown_as_the_discount():
    treatment = taxes.Treatment("VAT", Decimal(19))
    lines = taxes.tax_lines([4900, -980], 0, treatment)
    assert [line.tax for line in lines] == [931, -186]
    figures = taxes.totals([4900, -980], ["plan", "discount"], 0, lines, inclusive=False)
    assert (figures.subtotal, figures.discount, figures.tax, figures.total) == (4900, 980, 745, 4665)


RATES = st.sampled_from([Decimal(0), Decimal(5), Decimal("8.1"), Decimal(19), Decimal(20), Decimal("25.5")])


@st.composite
def invoices(draw):
    """Lines of any kind (charges, proration credits, discounts), never totalling below zero,
    credit up to their sum, and a rate, inclusive or not."""
    amounts = draw(st.lists(st.integers(-500_000, 5_000_000), min_size=1, max_size=8))
    if sum(amounts) < 0:
        amounts.append(-sum(amounts) + draw(st.integers(0, 10_000)))
    kinds = draw(
        st.lists(
            st.sampled_from(["plan", "proration", "usage", "discount"]), min_size=len(amounts), max_size=len(amounts)
        )
    )
    credit = draw(st.integers(0, sum(amounts)))
    treatment = taxes.Treatment("Tax", draw(RATES), inclusive=draw(st.booleans()))
    return amounts, kinds, credit, treatment


@settings(max_examples=400, deadline=None)
@given(invoices())
def test_for_any_lines_credit_and_rate_the_line_nets_and_taxes_add_up_to_the_total(case):
    amounts, kinds, credit, treatment = case
    lines = taxes.tax_lines(amounts, credit, treatment)
    figures = taxes.totals(amounts, kinds, credit, lines, treatment.inclusive)

    assert sum(line.credit_allocated for line in lines) == credit
    for amount, line in zip(amounts, lines, strict=True):
        # Each line's share of the credit is its proportion, to within a cent.
        share = Fraction(credit * amount, sum(amounts)) if sum(amounts) else 0
        assert abs(line.credit_allocated - share) < 1
        # Each line's tax is the exact tax of what is left, rounded once (within half a cent).
        taxed = amount - line.credit_allocated
        rate = Fraction(treatment.percentage) / 100
        exact = taxed - taxed / (1 + rate) if treatment.inclusive else taxed * rate
        assert abs(line.tax - exact) <= Fraction(1, 2)

    nets = [
        amount - line.credit_allocated - (line.tax if treatment.inclusive else 0)
        for amount, line in zip(amounts, lines, strict=True)
    ]
    assert sum(nets) + sum(line.tax for line in lines) == figures.total
    assert figures.tax == sum(line.tax for line in lines)
    assert figures.subtotal - figures.discount == sum(amounts)
    assert figures.total == figures.subtotal - figures.discount - credit + (0 if treatment.inclusive else figures.tax)


def test_a_negative_line_carries_exactly_the_negative_tax_of_the_same_charge():
    treatment = taxes.Treatment("VAT", Decimal("8.1"))
    for amount in range(1, 2000):
        assert taxes.line_tax(-amount, treatment) == -taxes.line_tax(amount, treatment)


# --- the pages ----------------------------------------------------------------------------


def test_the_invoice_page_shows_the_buyer_the_tax_per_rate_and_the_reverse_charge_mention(
    app, client, login, make_tenant, seller_de
):
    import html
    import re

    from portal.extensions import db
    from portal.models import Tenant
    from tests.test_billing_pages import quote_of, shown

    tenant = make_tenant(company_name="Dupont")
    with app.app_context():
        owner = db.session.get(Tenant, tenant.tenant_id).contact_email
    login(client, owner)
    details = {
        "legal_name": "Dupont SA",
        "address_line1": "12 rue de la Paix",
        "postal_code": "75002",
        "city": "Paris",
        "country": "FR",
        "tax_ids-0-type": "eu_vat",
        "tax_ids-0-value": FR_VAT,
    }
    assert client.post("/billing/details", data=details).status_code == 303
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert client.post("/billing/change/enterprise", data={"quote": quote_of(page)}).status_code == 303
    invoice_id = re.search(
        r'href="/billing/invoices/(inv_[^"]+)"', client.get("/billing").get_data(as_text=True)
    ).group(1)
    page = client.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True)
    assert shown(page, "tax-note") == REVERSE_CHARGE
    assert "Dupont SA" in shown(page, "buyer") and "75002 Paris France" in shown(page, "buyer")
    assert f"EU VAT number: {FR_VAT}" in shown(page, "buyer")
    assert "VAT reverse charge 0%" in html.unescape(shown(page, "tax-line"))
    assert "VAT ID: " in shown(page, "seller")


def test_the_plan_change_preview_adds_the_tax_and_equals_the_invoice_issued(app, client, login, make_tenant, seller_de):
    import re

    from portal.extensions import db
    from portal.models import Tenant
    from tests.test_billing_pages import quote_of, shown

    tenant = make_tenant(company_name="Berlin Co")
    with app.app_context():
        owner = db.session.get(Tenant, tenant.tenant_id).contact_email
    login(client, owner)
    client.post("/billing/details", data={"legal_name": "Berlin Co GmbH", "country": "DE"})
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert shown(page, "preview-tax").startswith("VAT 19%")
    promised = shown(page, "preview-total")
    assert client.post("/billing/change/enterprise", data={"quote": quote_of(page)}).status_code == 303
    billing = client.get("/billing").get_data(as_text=True)
    invoice_id = re.search(r'href="/billing/invoices/(inv_[^"]+)"', billing).group(1)
    assert shown(client.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True), "total") == promised


def _nearest(value: Fraction) -> int:
    """Halves away from zero, by the test's own rounding: a credit's tax mirrors the charge's."""
    return half_up(value) if value >= 0 else -half_up(-value)


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
    st.booleans(),
)
def test_a_lines_tax_is_its_exact_share_rounded_once(net, percentage, inclusive):
    treatment = taxes.Treatment("VAT", percentage, inclusive)
    rate = Fraction(percentage) / 100
    expected = net - _nearest(net / (1 + rate)) if inclusive else _nearest(net * rate)
    assert taxes.line_tax(net, treatment) == (expected if percentage else 0)
