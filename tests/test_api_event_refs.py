"""Events found by their ref (seed 003): an event id or an idempotency key, looked up directly.
An operator token reaches any tenant's event, a tenant key only its own; invoiced events are
kept; a key shared by two tenants is ambiguous, never a guess."""

import pytest

from portal.extensions import db
from portal.models import Invoice, UsageEvent, utcnow
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, send_json, with_key


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def record(client, operator, tenant, key: str) -> str:
    body = {"tenant_id": tenant.tenant_id, "eventIdempotencyKey": key, "eventName": "pipeline_run"}
    response = send_json(client, "post", "/api/v1/events", body, operator)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["event_id"]


def stored_ids(app, tenant) -> list[str]:
    with app.app_context():
        return sorted(e.id for e in db.session.query(UsageEvent).filter_by(tenant_id=tenant.tenant_id))


def invoice(app, event_id: str) -> None:
    with app.app_context():
        event = db.session.get(UsageEvent, event_id)
        event.invoice_id = db.session.query(Invoice.id).filter_by(tenant_id=event.tenant_id).limit(1).scalar()
        db.session.commit()


def test_an_operator_finds_an_event_by_its_idempotency_key_without_naming_the_tenant(client, operator, make_tenant):
    tenant = make_tenant()
    event_id = record(client, operator, tenant, "run-2025-001")
    response = client.get("/api/v1/events/run-2025-001", headers=operator)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["event_id"] == event_id
    assert response.get_json()["tenant_id"] == tenant.tenant_id


def test_a_tenant_key_finds_its_own_event_by_ref_and_never_another_tenants(app, client, operator, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    own_id = record(client, operator, mine, "my-run")
    their_id = record(client, operator, theirs, "their-run")
    key = with_key(issue_key(app, mine, scopes=["usage:read"])[1])

    assert client.get("/api/v1/events/my-run", headers=key).get_json()["event_id"] == own_id
    assert client.get(f"/api/v1/events/{own_id}", headers=key).get_json()["ref"] == "my-run"
    assert_envelope(client.get("/api/v1/events/their-run", headers=key), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(client.get(f"/api/v1/events/{their_id}", headers=key), 404, "RESOURCE_NOT_FOUND")
    # Naming the other tenant does not open its events either.
    assert_envelope(client.get(f"/api/v1/events/their-run?tenant_id={theirs.tenant_id}", headers=key), 404)


def test_reading_events_needs_the_usage_scope(app, client, operator, make_tenant):
    tenant = make_tenant()
    record(client, operator, tenant, "scoped")
    key = with_key(issue_key(app, tenant, scopes=["pipelines:read"])[1])
    body = assert_envelope(client.get("/api/v1/events/scoped", headers=key), 403, "INSUFFICIENT_SCOPE")
    assert "usage:read" in body["detail"]


def test_a_key_used_by_two_tenants_is_ambiguous_until_the_tenant_is_named(client, operator, make_tenant):
    one, other = make_tenant(), make_tenant()
    record(client, operator, one, "shared")
    other_id = record(client, operator, other, "shared")
    body = assert_envelope(client.get("/api/v1/events/shared", headers=operator), 409, "AMBIGUOUS_REF")
    assert "tenant_id" in body["detail"]
    named = client.get(f"/api/v1/events/shared?tenant_id={other.tenant_id}", headers=operator)
    assert named.get_json()["event_id"] == other_id


def test_delete_by_refs_finds_keys_of_any_tenant_and_keeps_ambiguous_and_invoiced_ones(
    app, client, operator, make_tenant
):
    one, other = make_tenant(), make_tenant()
    gone = record(client, operator, one, "to-delete")
    billed = record(client, operator, one, "billed")
    invoice(app, billed)
    record(client, operator, one, "twice")
    record(client, operator, other, "twice")

    response = send_json(
        client,
        "post",
        "/api/v1/events/delete-by-refs",
        {"refs": ["to-delete", "billed", "twice", "nothing"]},
        operator,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [e["event_id"] for e in body["deleted"]] == [gone]
    assert body["invoiced"] == ["billed"]
    assert body["ambiguous"] == ["twice"]
    assert body["not_found"] == ["nothing"]
    assert gone not in stored_ids(app, one) and billed in stored_ids(app, one)
    assert len(stored_ids(app, other)) == 1


def test_delete_one_event_by_ref(app, client, operator, make_tenant):
    tenant = make_tenant()
    event_id = record(client, operator, tenant, "oops")
    response = client.delete("/api/v1/events/oops", headers=operator)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["event"]["event_id"] == event_id
    assert stored_ids(app, tenant) == []
    assert_envelope(client.delete("/api/v1/events/oops", headers=operator), 404, "RESOURCE_NOT_FOUND")


def test_an_invoiced_event_is_not_deleted(app, client, operator, make_tenant):
    tenant = make_tenant()
    event_id = record(client, operator, tenant, "billed")
    invoice(app, event_id)
    body = assert_envelope(client.delete(f"/api/v1/events/{event_id}", headers=operator), 409, "CONFLICT")
    assert "invoiced" in body["detail"]
    assert stored_ids(app, tenant) == [event_id]


def test_tenant_keys_cannot_delete_events(app, client, operator, make_tenant):
    """Usage is what the operator bills the tenant for: the tenant cannot take it back."""
    tenant = make_tenant()
    event_id = record(client, operator, tenant, "mine")
    key = with_key(issue_key(app, tenant, scopes=["admin:*"])[1])
    assert_envelope(client.delete("/api/v1/events/mine", headers=key), 403)
    assert_envelope(send_json(client, "post", "/api/v1/events/delete-by-refs", {"refs": ["mine"]}, key), 403)
    assert stored_ids(app, tenant) == [event_id]


def test_refs_that_cannot_be_events_are_simply_not_found(client, operator):
    for ref in ("x" * 250, "%00", "evt_" + "0" * 40, utcnow().isoformat()):
        assert_envelope(client.get(f"/api/v1/events/{ref}", headers=operator), 404)
        assert_envelope(client.delete(f"/api/v1/events/{ref}", headers=operator), 404)
