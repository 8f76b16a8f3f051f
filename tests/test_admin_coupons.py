"""Console → Coupons: create coupons and codes (bad rules shown beside their field), deactivate
them, list redemptions, and apply or remove a tenant's discount from its page; all audited."""

import pytest
from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import discounts, subscriptions
from portal.errors import Conflict
from portal.extensions import db
from portal.models import AuditEvent, Coupon, PromotionCode, Tenant
from tests.conftest import field_error, unique
from tests.test_billing_pages import flashes, shown


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


def coupon_named(app, name: str) -> Coupon:
    with app.app_context():
        return db.session.execute(select(Coupon).where(Coupon.name == name)).scalar_one()


def test_operator_creates_a_coupon_and_a_code_and_sees_them_listed(app, operator_client):
    name = unique("Spring")
    response = operator_client.post(
        "/admin/coupons",
        data={
            "name": name,
            "percent_off": "20",
            "duration": "repeating",
            "duration_periods": "3",
            "plan_keys": ["starter"],
        },
    )
    assert response.status_code == 303
    coupon = coupon_named(app, name)
    assert response.headers["Location"] == f"/admin/coupons/{coupon.id}"
    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert shown(page, "coupon-terms") == "20% off for 3 billing periods, starter plan only"
    assert flashes(page)[0].startswith(f"Coupon {name} created")

    code = unique("spring").upper()
    response = operator_client.post(
        f"/admin/coupons/{coupon.id}/codes", data={"code": code.lower(), "max_redemptions": "5"}
    )
    assert response.status_code == 303
    page = operator_client.get(f"/admin/coupons/{coupon.id}").get_data(as_text=True)
    assert f'data-code="{code}"' in page
    listing = operator_client.get("/admin/coupons").get_data(as_text=True)
    assert name in listing and 'data-testid="no-redemptions"' in listing
    with app.app_context():
        actions = (
            db.session.execute(select(AuditEvent.action).where(AuditEvent.actor_label != "system")).scalars().all()
        )
    assert {"coupon.created", "promotion_code.created"} <= set(actions)


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"percent_off": "150"}, "percent_off", "at most 100"),
        ({"percent_off": "10", "amount_off": "5", "currency": "USD"}, "amount_off", "not both"),
        ({"amount_off": "5"}, "currency", "needs its currency"),
        ({"percent_off": "10", "duration": "repeating"}, "duration_periods", "how many billing periods"),
    ],
)
def test_a_bad_coupon_is_refused_beside_its_field_and_nothing_is_created(app, operator_client, data, field, words):
    name = unique("Bad")
    response = operator_client.post("/admin/coupons", data={"name": name, "duration": "once", **data})
    assert response.status_code == 422
    assert words in field_error(response.get_data(as_text=True), field)
    with app.app_context():
        assert db.session.execute(select(Coupon).where(Coupon.name == name)).first() is None


def test_deactivating_a_code_and_a_coupon_stops_customers_redeeming_them(app, operator_client, make_tenant):
    name = unique("Off")
    operator_client.post(
        "/admin/coupons", data={"name": name, "amount_off": "10.00", "currency": "usd", "duration": "once"}
    )
    coupon = coupon_named(app, name)
    code = unique("off").upper()
    operator_client.post(f"/admin/coupons/{coupon.id}/codes", data={"code": code})
    with app.app_context():
        promotion_code = db.session.execute(select(PromotionCode).where(PromotionCode.code == code)).scalar_one()
    assert operator_client.post(f"/admin/promotion-codes/{promotion_code.id}/deactivate").status_code == 303
    assert operator_client.post(f"/admin/coupons/{coupon.id}/deactivate").status_code == 303
    page = operator_client.get(f"/admin/coupons/{coupon.id}").get_data(as_text=True)
    assert "Coupon " + name + " deactivated" in " ".join(flashes(page))
    assert "New promotion code" not in page
    tenant = make_tenant()
    with app.test_request_context():
        subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        found = discounts.find_code(code)
        with pytest.raises(Conflict, match="no longer valid"):
            discounts.apply(SYSTEM, subscription, found.coupon, found)


def test_operator_applies_a_coupon_to_a_tenant_replaces_it_only_when_ticked_and_removes_it(
    app, operator_client, make_tenant
):
    tenant = make_tenant(company_name="Console Discount Co")
    first, second = unique("First"), unique("Second")
    for name, percent in ((first, "10"), (second, "30")):
        operator_client.post("/admin/coupons", data={"name": name, "percent_off": percent, "duration": "forever"})
    first_id, second_id = coupon_named(app, first).id, coupon_named(app, second).id

    url = f"/admin/tenants/{tenant.tenant_id}"
    assert operator_client.post(f"{url}/discount", data={"coupon_id": first_id}).status_code == 303
    page = operator_client.get(url).get_data(as_text=True)
    assert shown(page, "tenant-discount").startswith(f"{first}: 10% off for ever")

    refused = operator_client.post(f"{url}/discount", data={"coupon_id": second_id})
    assert refused.status_code == 422
    assert "confirm that the new one replaces it" in refused.get_data(as_text=True)
    assert operator_client.post(f"{url}/discount", data={"coupon_id": second_id, "replace": "y"}).status_code == 303
    page = operator_client.get(url).get_data(as_text=True)
    assert shown(page, "tenant-discount").startswith(f"{second}: 30% off for ever")

    assert operator_client.post(f"{url}/discount/remove").status_code == 303
    page = operator_client.get(url).get_data(as_text=True)
    assert shown(page, "tenant-discount") == "None."
    listing = operator_client.get("/admin/coupons").get_data(as_text=True)
    assert listing.count(f'data-tenant="{tenant.tenant_id}"') == 2
    with app.app_context():
        actions = (
            db.session.execute(select(AuditEvent.action).where(AuditEvent.tenant_id == tenant.tenant_id))
            .scalars()
            .all()
        )
    assert actions.count("discount.applied") == 2 and actions.count("discount.removed") == 1


def test_applying_nothing_or_an_unknown_code_says_so(operator_client, make_tenant):
    tenant = make_tenant()
    url = f"/admin/tenants/{tenant.tenant_id}/discount"
    response = operator_client.post(url, data={"coupon_id": ""})
    assert response.status_code == 422
    assert "Choose a coupon or type a promotion code." in field_error(response.get_data(as_text=True), "coupon_id")
    response = operator_client.post(url, data={"code": "no-such-code-here"})
    assert "There is no promotion code NO-SUCH-CODE-HERE" in field_error(response.get_data(as_text=True), "code")


def test_the_coupon_pages_are_the_operators_only(client, make_tenant, make_user, login):
    tenant = make_tenant()
    login(client, make_user(tenant, role="owner"))
    assert client.get("/admin/coupons").status_code == 404
    assert client.post("/admin/coupons", data={"name": "x", "percent_off": "10"}).status_code == 404
