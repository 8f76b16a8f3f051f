"""Discounts over the API: the operator's coupons and codes, bad rules as 400 VALIDATION_ERROR
naming the field, a tenant key applying a promotion code to its own tenant (and no other), the
operator applying and removing, unknown codes as 404 RESOURCE_NOT_FOUND, and the invoice's
discount in its body."""

import pytest

from portal.models import ADMIN_SCOPE, Coupon, Discount
from tests.api_support import assert_envelope, bearer, count, issue_key, operator_token, send_json, with_key
from tests.conftest import unique


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def new_coupon(client, operator, **terms) -> dict:
    body = {"name": unique("Coupon"), "percent_off": 20, "duration": "repeating", **terms}
    if body["duration"] == "repeating":
        body.setdefault("duration_periods", 3)
    response = send_json(client, "post", "/api/v1/coupons", body, operator)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def new_code(client, operator, coupon_id: str, **options) -> str:
    code = unique("api").upper()
    response = send_json(
        client, "post", f"/api/v1/coupons/{coupon_id}/promotion-codes", {"code": code, **options}, operator
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["code"]


def test_operator_creates_lists_a_coupon_and_its_codes(client, operator):
    coupon = new_coupon(client, operator, plan_keys=["starter", "professional"], max_redemptions=10)
    assert coupon["terms"] == "20% off for 3 billing periods, professional, starter plans only"
    assert (coupon["percent_off"], coupon["amount_off"], coupon["times_redeemed"]) == (20, None, 0)
    code = new_code(client, operator, coupon["coupon_id"], max_redemptions=2)
    listed = client.get(f"/api/v1/coupons/{coupon['coupon_id']}/promotion-codes", headers=operator).get_json()
    assert [item["code"] for item in listed["promotion_codes"]] == [code]
    coupons = client.get("/api/v1/coupons", query_string={"page_size": 100}, headers=operator).get_json()
    assert coupon["coupon_id"] in [item["coupon_id"] for item in coupons["coupons"]]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"percent_off": 120}, "percent_off", "at most 100"),
        ({"percent_off": 10, "amount_off": 500, "currency": "USD"}, "amount_off", "not both"),
        ({"amount_off": 500}, "currency", "needs its currency"),
        ({"percent_off": 10, "currency": "USD"}, "currency", "leave the currency out"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_periods", "how many billing periods"),
    ],
)
def test_bad_rules_are_400_validation_errors_naming_the_field(client, app, operator, body, field, words):
    before = count(app, Coupon)
    response = send_json(client, "post", "/api/v1/coupons", {"name": "Bad", **body}, operator)
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert words in response.get_json()["detail"]
    assert response.get_json()["errors"][0]["field"] == field
    assert count(app, Coupon) == before


def test_an_unknown_plan_key_is_404_naming_the_field(client, app, operator):
    response = send_json(
        client, "post", "/api/v1/coupons", {"name": "Bad", "percent_off": 5, "plan_keys": ["gold"]}, operator
    )
    assert_envelope(response, 404, "RESOURCE_NOT_FOUND")
    assert response.get_json()["errors"][0]["field"] == "plan_keys"


def test_a_tenant_key_applies_a_code_to_its_own_tenant_only(client, app, operator, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    _, key = issue_key(app, tenant, scopes=[ADMIN_SCOPE])
    coupon = new_coupon(client, operator)
    code = new_code(client, operator, coupon["coupon_id"])

    elsewhere = send_json(client, "post", f"/api/v1/tenants/{other.tenant_id}/discount", {"code": code}, with_key(key))
    assert_envelope(elsewhere, 403)
    direct = send_json(
        client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/discount",
        {"coupon_id": coupon["coupon_id"]},
        with_key(key),
    )
    assert_envelope(direct, 403, "FORBIDDEN")

    response = send_json(
        client, "post", f"/api/v1/tenants/{tenant.tenant_id}/discount", {"code": code.lower()}, with_key(key)
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["status"], body["promotion_code"], body["periods_remaining"], body["currency"]) == (
        "active",
        code,
        3,
        "USD",
    )
    assert body["ends_at"] is not None

    again = send_json(client, "post", f"/api/v1/tenants/{tenant.tenant_id}/discount", {"code": code}, with_key(key))
    assert_envelope(again, 409, "CONFLICT")
    assert "already applied" in again.get_json()["detail"]
    removal = client.delete(f"/api/v1/tenants/{tenant.tenant_id}/discount", headers=with_key(key))
    assert_envelope(removal, 403)
    assert count(app, Discount, tenant_id=other.tenant_id) == 0


def test_unknown_code_is_404_and_a_used_up_code_409(client, app, operator, make_tenant):
    tenant, first = make_tenant(), make_tenant()
    unknown = send_json(client, "post", f"/api/v1/tenants/{tenant.tenant_id}/discount", {"code": "NO-SUCH"}, operator)
    assert_envelope(unknown, 404, "RESOURCE_NOT_FOUND")
    coupon = new_coupon(client, operator)
    code = new_code(client, operator, coupon["coupon_id"], max_redemptions=1)
    assert (
        send_json(client, "post", f"/api/v1/tenants/{first.tenant_id}/discount", {"code": code}, operator).status_code
        == 201
    )
    used_up = send_json(client, "post", f"/api/v1/tenants/{tenant.tenant_id}/discount", {"code": code}, operator)
    assert_envelope(used_up, 409, "CONFLICT")
    assert used_up.get_json()["detail"] == f"The code {code} has been used up."


def test_operator_applies_a_coupon_replaces_only_with_replace_and_removes(client, operator, make_tenant):
    tenant = make_tenant()
    url = f"/api/v1/tenants/{tenant.tenant_id}/discount"
    first, second = new_coupon(client, operator), new_coupon(client, operator, percent_off=50, duration="forever")
    assert send_json(client, "post", url, {"coupon_id": first["coupon_id"]}, operator).status_code == 201
    refused = send_json(client, "post", url, {"coupon_id": second["coupon_id"]}, operator)
    assert_envelope(refused, 409, "CONFLICT")
    assert "replaces it" in refused.get_json()["detail"]
    replaced = send_json(client, "post", url, {"coupon_id": second["coupon_id"], "replace": True}, operator)
    assert replaced.status_code == 201 and replaced.get_json()["ends_at"] is None
    removed = client.delete(url, headers=operator)
    assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    assert_envelope(client.delete(url, headers=operator), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(send_json(client, "post", url, {"coupon_id": "cpn_nope"}, operator), 404, "RESOURCE_NOT_FOUND")


def test_an_upgrade_invoice_in_the_api_carries_the_discount(client, app, operator, make_tenant):
    tenant = make_tenant()
    coupon = new_coupon(client, operator, percent_off=10, duration="forever")
    send_json(
        client, "post", f"/api/v1/tenants/{tenant.tenant_id}/discount", {"coupon_id": coupon["coupon_id"]}, operator
    )
    upgrade = send_json(
        client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/subscription/upgrade",
        {"new_plan": "professional"},
        operator,
    )
    assert upgrade.status_code == 200, upgrade.get_json()
    invoice = client.get(
        f"/api/v1/tenants/{tenant.tenant_id}/invoices/{upgrade.get_json()['invoice_id']}", headers=operator
    ).get_json()
    net = sum(line["amount"] for line in invoice["line_items"] if line["type"] != "discount")
    off = (net * 10 + 50) // 100
    assert (invoice["subtotal"], invoice["discount"], invoice["total"]) == (net, off, net - off)
    assert [line["amount"] for line in invoice["line_items"] if line["type"] == "discount"] == [-off]
    assert float(upgrade.get_json()["prorated_charge"]) == (net - off) / 100
