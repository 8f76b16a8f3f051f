"""Credits over the API: operator grant/deduct (our field names and the seeds'), validation that
changes nothing, and the ledger read by operators and the tenant's own keys only."""

import pytest

from portal.models import CreditEntry
from tests.api_support import (
    HOSTILE_JSON,
    assert_envelope,
    bearer,
    count,
    issue_key,
    operator_token,
    send_json,
    with_key,
)


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def grant(client, operator, payload):
    return send_json(client, "post", "/api/v1/credits/grant", payload, operator)


def deduct(client, operator, payload):
    return send_json(client, "post", "/api/v1/credits/deduct", payload, operator)


def credits_of(client, tenant_id, headers, **params):
    return client.get(f"/api/v1/tenants/{tenant_id}/credits", query_string=params, headers=headers)


def test_operator_grants_and_deducts_and_the_ledger_shows_both(client, operator, make_tenant):
    tenant = make_tenant()
    response = grant(
        client,
        operator,
        {"tenant_id": tenant.tenant_id, "amount": 5000, "expires_at": "2099-01-01T00:00:00Z", "reason": "Launch promo"},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["amount"], body["remaining"], body["balance"], body["currency"]) == (5000, 5000, 5000, "USD")
    assert body["expires_at"].startswith("2099-01-01T00:00:00")
    assert body["entry"]["type"] == "grant"

    response = deduct(client, operator, {"tenant_id": tenant.tenant_id, "amount": 1200, "reason": "Refund reversal"})
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["balance"], response.get_json()["amount"]) == (3800, 1200)

    body = credits_of(client, tenant.tenant_id, operator).get_json()
    assert (body["balance"], body["total_granted"], body["total_used"], body["total_expired"]) == (3800, 5000, 1200, 0)
    assert body["balance_major"] == 38.0
    assert [(e["type"], e["amount"], e["balance_after"]) for e in body["entries"]] == [
        ("deduction", -1200, 3800),
        ("grant", 5000, 5000),
    ]
    assert body["entries"][1]["description"] == "Launch promo"
    assert body["pagination"]["total_items"] == 2


def test_seed_field_names_are_accepted(client, operator, app, make_tenant):
    tenant = make_tenant()
    response = grant(client, operator, {"customerId": tenant.tenant_id, "creditAmount": 25.5})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["amount"] == 2550
    response = deduct(client, operator, {"customerReferenceId": tenant.tenant_id, "creditAmount": 0.5})
    assert response.get_json()["balance"] == 2500


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"creditAmount": 10.005}, "creditAmount"),
        ({"creditAmount": -1}, "creditAmount"),
        ({"amount": 100, "creditAmount": 1}, None),
        ({}, None),
        ({"amount": 100, "currency": "dollars"}, "currency"),
        ({"amount": 100, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"amount": 100, "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_grants_get_a_clear_400_and_change_nothing(client, operator, app, make_tenant, payload, field):
    tenant = make_tenant()
    response = grant(client, operator, {"tenant_id": tenant.tenant_id, **payload})
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    if field:
        assert field in body["detail"] or any(e["field"] == field for e in body.get("errors", [])), body
    assert count(app, CreditEntry, tenant_id=tenant.tenant_id) == 0


def test_deducting_more_than_the_balance_is_a_400_that_changes_nothing(client, operator, app, make_tenant):
    tenant = make_tenant()
    grant(client, operator, {"tenant_id": tenant.tenant_id, "amount": 1000})
    body = assert_envelope(
        deduct(client, operator, {"tenant_id": tenant.tenant_id, "amount": 1001}), 409, "INSUFFICIENT_CREDIT"
    )
    assert body["detail"] == "Cannot deduct $10.01: the credit balance is only $10.00."
    assert credits_of(client, tenant.tenant_id, operator).get_json()["balance"] == 1000
    assert count(app, CreditEntry, tenant_id=tenant.tenant_id) == 1


def test_hostile_bodies_get_a_4xx_envelope(client, operator, make_tenant):
    make_tenant()
    for payload in HOSTILE_JSON:
        for send in (grant, deduct):
            response = send(client, operator, payload)
            assert 400 <= response.status_code < 500, (payload, response.get_data(as_text=True)[:200])
            assert_envelope(response, response.status_code)


def test_an_unknown_customer_is_not_found(client, operator):
    assert_envelope(grant(client, operator, {"tenant_id": "nobody_here", "amount": 100}), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(deduct(client, operator, {"customerId": "nobody_here", "amount": 100}), 404, "RESOURCE_NOT_FOUND")


def test_tenant_keys_cannot_grant_or_deduct(client, app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant, scopes=["admin:*"])
    for send in (grant, deduct):
        assert_envelope(send(client, with_key(plaintext), {"tenant_id": tenant.tenant_id, "amount": 100}), 403)
    assert count(app, CreditEntry, tenant_id=tenant.tenant_id) == 0


def test_a_tenant_reads_its_own_credit_but_never_another_tenants(client, app, operator, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    grant(client, operator, {"tenant_id": mine.tenant_id, "amount": 300})
    grant(client, operator, {"tenant_id": theirs.tenant_id, "amount": 99_900, "reason": "Secret deal"})
    _, plaintext = issue_key(app, mine, scopes=None)
    body = credits_of(client, mine.tenant_id, with_key(plaintext)).get_json()
    assert (body["balance"], len(body["entries"])) == (300, 1)
    # Seed 000: another tenant's id is "Access denied", whether or not it exists; nothing leaks.
    response = credits_of(client, theirs.tenant_id, with_key(plaintext))
    body = assert_envelope(response, 403)
    assert body["detail"] == "Access denied"
    assert "Secret deal" not in response.get_data(as_text=True)
    assert_envelope(credits_of(client, "nobody_here", operator), 404, "RESOURCE_NOT_FOUND")


def test_the_ledger_paginates_newest_first(client, operator, make_tenant):
    tenant = make_tenant()
    for amount in range(1, 6):
        grant(client, operator, {"tenant_id": tenant.tenant_id, "amount": amount})
    body = credits_of(client, tenant.tenant_id, operator, page=2, page_size=2).get_json()
    assert [e["amount"] for e in body["entries"]] == [3, 2]
    assert body["pagination"] == {
        "page": 2,
        "page_size": 2,
        "total_items": 5,
        "total_pages": 3,
        "has_next": True,
        "has_previous": True,
    }
    assert_envelope(credits_of(client, tenant.tenant_id, operator, page_size=1000), 400, "VALIDATION_ERROR")
    assert_envelope(credits_of(client, tenant.tenant_id, operator, currency="x"), 400, "VALIDATION_ERROR")


def test_an_empty_ledger_reads_as_zero(client, operator, make_tenant):
    tenant = make_tenant()
    body = credits_of(client, tenant.tenant_id, operator).get_json()
    assert (body["balance"], body["total_granted"], body["entries"]) == (0, 0, [])
