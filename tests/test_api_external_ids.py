"""External ids (seed 002's "bring your own customer id"): set at onboarding, through PATCH and
in the console, by the operator only; unique, never another tenant's tenant_id; looked up with
GET /tenants/by-external-id/{id} (seed 003), and accepted by events and entitlement checks."""

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Tenant
from tests.api_support import assert_envelope, bearer, fetch, issue_key, operator_token, send_json, with_key
from tests.conftest import unique


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


def patch(client, tenant, body, headers):
    return send_json(client, "patch", f"/api/v1/tenants/{tenant.tenant_id}", body, headers)


def test_onboarding_with_an_external_id_makes_the_tenant_findable_by_it(client, op):
    tenant_id, external_id = unique("acme"), unique("cust")
    body = {
        "tenant_id": tenant_id,
        "company_name": "ACME",
        "contact_email": "a@example.com",
        "external_id": external_id,
    }
    response = send_json(client, "post", "/api/v1/tenants/onboard", body, op)
    assert response.status_code == 200, response.get_json()
    found = client.get(f"/api/v1/tenants/by-external-id/{external_id}", headers=op)
    assert found.status_code == 200, found.get_json()
    assert found.get_json()["tenant_id"] == tenant_id and found.get_json()["external_id"] == external_id
    # Events and entitlement checks name the tenant by it.
    event = {"customerReferenceId": external_id, "eventName": "pipeline_run"}
    assert send_json(client, "post", "/api/v1/events", event, op).get_json()["tenant_id"] == tenant_id
    check = client.get(f"/api/v1/entitlements/{external_id}/pipeline_runs", headers=op).get_json()
    assert check["data"]["usage"]["used"] == 1


def test_an_operator_sets_changes_and_clears_it_with_patch(app, client, op, make_tenant):
    tenant = make_tenant()
    first, second = unique("crm"), unique("crm")
    response = patch(client, tenant, {"external_id": first}, op)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["external_id"] == first
    assert client.get(f"/api/v1/tenants/by-external-id/{first}", headers=op).get_json()["tenant_id"] == tenant.tenant_id

    assert patch(client, tenant, {"external_id": second}, op).get_json()["external_id"] == second
    assert_envelope(client.get(f"/api/v1/tenants/by-external-id/{first}", headers=op), 404, "RESOURCE_NOT_FOUND")
    # Omitted: unchanged; null: removed.
    assert patch(client, tenant, {"company_name": "Renamed"}, op).get_json()["external_id"] == second
    assert patch(client, tenant, {"external_id": None}, op).get_json()["external_id"] is None
    assert fetch(app, Tenant, tenant.tenant_id).external_id is None
    with app.app_context():
        changes = [
            e.details["changes"]["external_id"]
            for e in db.session.query(AuditEvent).filter_by(
                tenant_id=tenant.tenant_id, action="tenant.external_id_changed"
            )
        ]
    assert {"from": None, "to": first} in changes and {"from": second, "to": None} in changes


def test_an_external_id_is_unique_and_never_another_tenants_id(app, client, op, make_tenant):
    one, other = make_tenant(), make_tenant()
    taken = unique("crm")
    assert patch(client, one, {"external_id": taken}, op).status_code == 200
    body = assert_envelope(patch(client, other, {"external_id": taken}, op), 409, "CONFLICT")
    assert body["errors"][0]["field"] == "external_id"
    body = assert_envelope(patch(client, other, {"external_id": one.tenant_id.upper()}, op), 409)
    assert "another tenant" in body["detail"]
    assert fetch(app, Tenant, other.tenant_id).external_id is None
    # Nor can a new tenant take an id that is already someone's external id.
    onboard = {"tenant_id": taken, "company_name": "X", "contact_email": "x@example.com"}
    assert_envelope(send_json(client, "post", "/api/v1/tenants/onboard", onboard, op), 409)
    onboard = {"tenant_id": unique("new"), "company_name": "X", "contact_email": "x@example.com", "external_id": taken}
    assert_envelope(send_json(client, "post", "/api/v1/tenants/onboard", onboard, op), 409)


@pytest.mark.parametrize("bad", ["", " padded", "has space", "a/b", "x" * 101, "-leading", "tab\there", "ünï"])
def test_a_malformed_external_id_is_refused_with_the_rule(app, client, op, make_tenant, bad):
    tenant = make_tenant()
    body = assert_envelope(patch(client, tenant, {"external_id": bad}, op), 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "external_id"
    assert "letters, digits" in body["detail"]
    assert fetch(app, Tenant, tenant.tenant_id).external_id is None


@pytest.mark.parametrize("good", ["cust_12345", "550e8400-e29b-41d4-a716-446655440000", "auth0|abc.def", "9"])
def test_the_ids_other_systems_use_are_accepted(client, op, make_tenant, good):
    tenant = make_tenant()
    assert patch(client, tenant, {"external_id": good}, op).get_json()["external_id"] == good


def test_a_tenant_key_cannot_set_its_external_id(app, client, make_tenant):
    """The external id routes the operator's events: a tenant choosing it could take another's."""
    tenant = make_tenant()
    key = with_key(issue_key(app, tenant, scopes=["admin:*"])[1])
    body = assert_envelope(patch(client, tenant, {"external_id": "cust_1", "company_name": "New"}, key), 403)
    assert "operator" in body["detail"]
    row = fetch(app, Tenant, tenant.tenant_id)
    assert row.external_id is None and row.company_name != "New"
    assert_envelope(client.get("/api/v1/tenants/by-external-id/cust_1", headers=key), 403)


def test_public_onboarding_cannot_choose_an_external_id(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "API_PUBLIC_ONBOARDING", True)
    body = {"tenant_id": unique("self"), "company_name": "Self", "contact_email": "s@example.com", "external_id": "x1"}
    assert_envelope(send_json(client, "post", "/api/v1/tenants/onboard", body, {}), 403)
    assert fetch(app, Tenant, body["tenant_id"]) is None


def test_the_operator_edits_it_on_the_console_tenant_page(app, make_tenant, make_operator, login):
    tenant, other = make_tenant(), make_tenant()
    client, operator = app.test_client(), make_operator()
    login(client, operator)
    page = client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert 'data-testid="external-id"' in page

    external_id = unique("crm")
    response = client.post(f"/admin/tenants/{tenant.tenant_id}/external-id", data={"external_id": external_id})
    assert response.status_code in (302, 303)
    assert fetch(app, Tenant, tenant.tenant_id).external_id == external_id
    assert f'value="{external_id}"' in client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(action="tenant.external_id_changed").one()
        assert event.tenant_id == tenant.tenant_id and event.actor_label == operator.email

    refused = client.post(f"/admin/tenants/{other.tenant_id}/external-id", data={"external_id": external_id})
    assert refused.status_code == 422
    assert "already names another tenant" in refused.get_data(as_text=True)
    bad = client.post(f"/admin/tenants/{other.tenant_id}/external-id", data={"external_id": "no spaces"})
    assert bad.status_code == 422 and "letters, digits" in bad.get_data(as_text=True)
    assert fetch(app, Tenant, other.tenant_id).external_id is None

    cleared = client.post(f"/admin/tenants/{tenant.tenant_id}/external-id", data={"external_id": ""})
    assert cleared.status_code in (302, 303)
    assert fetch(app, Tenant, tenant.tenant_id).external_id is None
