"""Billing → Add promotion code, through HTTP: the exact new price before confirming, errors in
plain words that change nothing, replacing a discount only after saying so, who may do it, and
the discount on the billing page, the plan-change preview and the invoice."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import discounts, subscriptions
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Discount, Invoice, Tenant, utcnow
from tests.conftest import field_error, unique
from tests.test_billing_pages import flashes, quote_of, shown


@pytest.fixture
def team(make_tenant, make_user):
    tenant = make_tenant(company_name="Discount Co")
    return tenant, {role: make_user(tenant, role=role) for role in ("owner", "admin", "developer", "viewer")}


def make_code(app, code_prefix: str = "SAVE", **terms) -> str:
    terms = terms or {"percent_off": 20, "duration": "repeating", "duration_periods": 3}
    with app.test_request_context():
        coupon = discounts.create_coupon(SYSTEM, terms.pop("name", "Spring offer"), **terms)
        code = discounts.create_promotion_code(SYSTEM, coupon, unique(code_prefix).upper())
        commit()
        return code.code


def active(app, tenant) -> Discount | None:
    with app.app_context():
        subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        return discounts.active_discount(subscription)


def test_owner_sees_the_exact_new_price_then_confirms_and_the_billing_page_shows_the_discount(client, app, team, login):
    tenant, people = team
    login(client, people["owner"])
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "discount").startswith("None.")
    assert 'data-testid="add-promotion-code"' in page

    code = make_code(app)
    preview = client.post("/billing/promotion-code", data={"code": code.lower()})
    assert preview.status_code == 200
    page = preview.get_data(as_text=True)
    # Starter is $49.00 a month: 20 % off is $9.80.
    assert (shown(page, "price-before"), shown(page, "price-discount"), shown(page, "price-after")) == (
        "$49.00",
        "-$9.80",
        "$39.20",
    )
    assert active(app, tenant) is None  # the preview changes nothing

    done = client.post("/billing/promotion-code", data={"code": code, "confirmed": "yes"})
    assert done.status_code == 303 and done.headers["Location"] == "/billing"
    page = client.get("/billing").get_data(as_text=True)
    [message] = flashes(page)
    assert message.startswith(f"Promotion code {code} applied: 20% off for 3 billing periods.")
    assert "is $39.20 instead of $49.00" in message
    assert shown(page, "next-invoice-amount") == "$39.20"
    assert f"Spring offer: 20% off for 3 billing periods (code {code})" in shown(page, "discount")
    assert shown(page, "discount-ends").startswith("Ends on ")


@pytest.mark.parametrize(
    "terms, words",
    [
        (None, "There is no promotion code NOPE-NOT-A-CODE. Check the spelling."),
        ({"percent_off": 10, "plan_keys": ["enterprise"]}, "is not valid for the Starter plan; it is for Enterprise."),
        ({"amount_off": 500, "currency": "EUR"}, "takes an amount in EUR off, but your plan is billed in USD."),
        ({"percent_off": 10, "max_redemptions": 1}, "has been used up."),
    ],
)
def test_a_code_that_cannot_be_used_says_why_in_the_field_and_changes_nothing(
    client, app, team, login, make_tenant, terms, words
):
    tenant, people = team
    if terms is None:
        code = "nope-not-a-code"
    else:
        code = make_code(app, **terms)
        if terms.get("max_redemptions"):
            with app.test_request_context():
                other = subscriptions.subscription_of(db.session.get(Tenant, make_tenant().tenant_id))
                found = discounts.find_code(code)
                discounts.apply(SYSTEM, other, found.coupon, found)
                commit()
    login(client, people["admin"])
    response = client.post("/billing/promotion-code", data={"code": code})
    assert response.status_code == 422
    assert words in field_error(response.get_data(as_text=True), "code")
    assert 'value="' + code + '"' in response.get_data(as_text=True)  # what was typed is kept
    assert active(app, tenant) is None


def test_an_expired_code_names_the_day_it_expired(client, app, team, login):
    _, people = team
    with app.test_request_context():
        coupon = discounts.create_coupon(SYSTEM, "Short", percent_off=10)
        code = discounts.create_promotion_code(
            SYSTEM, coupon, unique("late").upper(), expires_at=utcnow() + timedelta(seconds=2)
        )
        code.expires_at = utcnow() - timedelta(days=1)
        commit()
        typed = code.code
    login(client, people["owner"])
    response = client.post("/billing/promotion-code", data={"code": typed})
    assert response.status_code == 422
    assert "expired on" in field_error(response.get_data(as_text=True), "code")


def test_a_second_code_replaces_the_first_only_after_the_page_says_so(client, app, team, login):
    tenant, people = team
    login(client, people["owner"])
    first = make_code(app, percent_off=10, name="First offer")
    client.post("/billing/promotion-code", data={"code": first, "confirmed": "yes"})
    second = make_code(app, percent_off=50, name="Second offer")
    page = client.post("/billing/promotion-code", data={"code": second}).get_data(as_text=True)
    assert "This replaces your current discount, First offer" in shown(page, "replaces-discount")
    assert f"Replace my discount with {second}" in page
    # A confirmation that did not see the replacement notice does not replace.
    stale = client.post("/billing/promotion-code", data={"code": second, "confirmed": "yes"})
    assert stale.status_code == 422
    assert "already has a discount" in field_error(stale.get_data(as_text=True), "code")
    assert active(app, tenant).coupon.name == "First offer"

    client.post("/billing/promotion-code", data={"code": second, "confirmed": "replace"})
    assert active(app, tenant).coupon.name == "Second offer"


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_members_without_billing_rights_cannot_add_a_code(client, app, team, login, role):
    tenant, people = team
    login(client, people[role])
    code = make_code(app)
    assert client.get("/billing/promotion-code").status_code == 403
    assert client.post("/billing/promotion-code", data={"code": code, "confirmed": "yes"}).status_code == 403
    assert 'data-testid="add-promotion-code"' not in client.get("/billing").get_data(as_text=True)
    assert active(app, tenant) is None


def test_the_plan_change_preview_and_the_invoice_it_issues_show_the_discount(client, app, team, login):
    tenant, people = team
    login(client, people["owner"])
    client.post(
        "/billing/promotion-code", data={"code": make_code(app, percent_off=25, duration="forever"), "confirmed": "yes"}
    )
    page = client.get("/billing/change/professional").get_data(as_text=True)
    charge = int(shown(page, "preview-charge").replace("$", "").replace(",", "").replace(".", ""))
    credit = -int(shown(page, "preview-credit").replace("$", "").replace(",", "").replace(".", "").replace("-", ""))
    net = charge + credit
    off = (net * 25 + 50) // 100  # 25 %, half-up
    assert shown(page, "preview-discount") == f"-${off // 100:,}.{off % 100:02d}"
    total = net - off
    assert shown(page, "preview-total") == f"${total // 100:,}.{total % 100:02d}"

    client.post("/billing/change/professional", data={"quote": quote_of(page)})
    with app.app_context():
        invoice = (
            db.session.execute(
                select(Invoice).where(Invoice.tenant_id == tenant.tenant_id, Invoice.kind == "proration")
            )
            .scalars()
            .one()
        )
        assert (invoice.subtotal, invoice.discount, invoice.total) == (net, off, total)
        invoice_id = invoice.id
    detail = client.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True)
    assert shown(detail, "discount") == f"-${off // 100:,}.{off % 100:02d}"
    assert shown(detail, "total") == f"${total // 100:,}.{total % 100:02d}"
    assert "Discount: Spring offer (25% off, code" in detail
