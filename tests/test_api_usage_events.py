"""Usage event ingestion over the API (operator tokens): one event, batches, dry runs, queries
and deletion; idempotency (also under concurrency) and every validation rule."""

import json
import threading
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import UsageEvent, utcnow
from tests.api_support import assert_envelope, bearer, count, issue_key, operator_token, send_json, with_key


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def event(tenant, key="k1", **extra):
    body = {
        "tenant_id": tenant.tenant_id,
        "eventIdempotencyKey": key,
        "eventName": "pipeline_run",
        "occurredAt": utcnow().isoformat(),
        "quantity": 1,
    }
    body.update(extra)
    return body


def post(client, headers, body, path="/api/v1/events"):
    return send_json(client, "post", path, body, headers)


def stored(app, tenant):
    with app.app_context():
        return db.session.query(UsageEvent).filter_by(tenant_id=tenant.tenant_id).order_by(UsageEvent.occurred_at).all()


# --- one event ---------------------------------------------------------------------------


def test_an_event_is_stored_and_its_repeat_is_a_duplicate_naming_the_original(app, client, operator, make_tenant):
    tenant = make_tenant()
    first = post(client, operator, event(tenant, properties={"pipeline": "etl"}))
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["success"] is True and body["duplicate"] is False
    assert body["usageEventId"] == body["event_id"]

    again = post(client, operator, event(tenant, quantity=5))
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["event_id"] == body["event_id"]
    events = stored(app, tenant)
    assert [(e.name, e.quantity, e.properties) for e in events] == [("pipeline_run", 1, {"pipeline": "etl"})]


def test_the_same_key_for_another_tenant_is_another_event(app, client, operator, make_tenant):
    one, other = make_tenant(), make_tenant()
    assert post(client, operator, event(one)).status_code == 201
    assert post(client, operator, event(other)).status_code == 201
    assert len(stored(app, one)) == len(stored(app, other)) == 1


def test_the_seeds_field_names_are_accepted(app, client, operator, make_tenant):
    tenant = make_tenant()
    seed_002 = {
        "customerReferenceId": tenant.tenant_id,
        "eventIdempotencyKey": "evt_20250115_api",
        "eventName": "compute_usage",
        "occurredAt": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "usageUnits": 2.5,
        "meta": {"model": "gpt-4"},
        "featureKey": "compute_hours",
    }
    seed_001 = {
        "tenant_id": tenant.tenant_id,
        "eventId": "event_12345_unique",
        "metric": "compute_usage",
        "quantity": 100,
        "metadata": {"endpoint": "/v1/users"},
    }
    seed_003 = {
        "customerAlias": tenant.tenant_id,
        "ref": "4f6cf35x-2c4y",
        "name": "compute_usage",
        "timestamp": utcnow().isoformat(),
        "data": {"key1": "processing_duration"},
    }
    for body in (seed_002, seed_001, seed_003):
        response = post(client, operator, body)
        assert response.status_code == 201, response.get_json()
    events = {e.idempotency_key: e for e in stored(app, tenant)}
    assert events["evt_20250115_api"].quantity == 2.5 and events["evt_20250115_api"].properties == {"model": "gpt-4"}
    assert events["event_12345_unique"].quantity == 100
    assert events["4f6cf35x-2c4y"].quantity == 1  # no quantity: one unit
    assert events["4f6cf35x-2c4y"].properties == {"key1": "processing_duration"}


def test_an_external_id_names_the_tenant_too(app, client, operator, make_tenant):
    tenant = make_tenant()
    with app.app_context():
        row = db.session.get(type(tenant), tenant.tenant_id)
        row.external_id = f"ext-{tenant.tenant_id}"
        db.session.commit()
    response = post(client, operator, {"customerReferenceId": f"ext-{tenant.tenant_id}", "eventName": "x"})
    assert response.status_code == 201
    assert response.get_json()["tenant_id"] == tenant.tenant_id


def test_the_idempotency_key_header_overrides_the_body(app, client, operator, make_tenant):
    tenant = make_tenant()
    headers = {**operator, "X-Idempotency-Key": "from-header"}
    assert post(client, headers, event(tenant, key="a")).status_code == 201
    assert post(client, headers, event(tenant, key="b")).get_json()["duplicate"] is True
    assert [e.idempotency_key for e in stored(app, tenant)] == ["from-header"]


def test_a_suspended_tenants_events_are_still_recorded(app, client, operator, make_tenant):
    tenant = make_tenant(status="suspended")
    assert post(client, operator, event(tenant)).status_code == 201
    assert len(stored(app, tenant)) == 1


@pytest.mark.parametrize(
    "change, field, words",
    [
        # A callable: the instant is taken when the test runs, not when the suite was collected
        # (on a slow machine a test can start more than the 5 minutes' tolerance later).
        ({"occurredAt": lambda: (utcnow() + timedelta(minutes=10)).isoformat()}, "occurredAt", "future"),
        ({"occurredAt": "yesterday"}, "occurredAt", "ISO 8601"),
        ({"quantity": -1}, "quantity", "negative"),
        ({"quantity": "12"}, "quantity", "number"),
        ({"quantity": True}, "quantity", "number"),
        ({"eventName": "x" * 129}, "eventName", "128"),
        ({"eventName": ""}, "eventName", "non-empty"),
        ({"properties": [1, 2]}, "properties", "object"),
        ({"properties": {"blob": "x" * 9000}}, "properties", "8,192"),
        ({"eventIdempotencyKey": "k" * 201}, "eventIdempotencyKey", "200"),
    ],
)
def test_an_invalid_event_is_refused_with_the_reason(app, client, operator, make_tenant, change, field, words):
    change = {key: value() if callable(value) else value for key, value in change.items()}
    tenant = make_tenant()
    body = assert_envelope(post(client, operator, event(tenant, **change)), 400, "VALIDATION_ERROR")
    assert words in body["detail"]
    assert body["errors"][0]["field"] == field
    assert stored(app, tenant) == []


def test_a_non_finite_quantity_is_refused(app, client, operator, make_tenant):
    tenant = make_tenant()
    raw = json.dumps(event(tenant)).replace('"quantity": 1', '"quantity": NaN')
    response = client.post("/api/v1/events", data=raw, content_type="application/json", headers=operator)
    assert response.status_code == 400
    assert stored(app, tenant) == []


def test_an_event_older_than_the_open_billing_period_is_refused(app, client, operator, make_tenant):
    tenant = make_tenant()
    body = assert_envelope(post(client, operator, event(tenant, occurredAt="2001-01-01T00:00:00Z")), 400)
    assert "oldest open billing period" in body["detail"]


def test_an_unknown_tenant_is_not_found(client, operator):
    assert_envelope(post(client, operator, {"tenant_id": "nobody_here", "eventName": "x"}), 404, "RESOURCE_NOT_FOUND")


def test_a_tenant_key_cannot_post_events(app, client, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    assert_envelope(post(client, with_key(plaintext), event(tenant)), 403)
    assert stored(app, tenant) == []


# --- batches -----------------------------------------------------------------------------


def test_a_batch_stores_the_valid_events_and_reports_each_one(app, client, operator, make_tenant):
    tenant = make_tenant()
    assert post(client, operator, event(tenant, key="old")).status_code == 201
    events = [
        event(tenant, key="a"),
        event(tenant, key="b", quantity=-3),
        "not an object",
        event(tenant, key="old"),
        event(tenant, key="a"),
        {"tenant_id": "nobody_here", "eventName": "x"},
        event(tenant, key="c", quantity=2),
    ]
    response = post(client, operator, {"events": events}, "/api/v1/events/batch")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "rejected",
        "duplicate",
        "duplicate",
        "rejected",
        "accepted",
    ]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 3)
    assert "negative" in body["results"][1]["reason"]
    assert "unknown tenant" in body["results"][5]["reason"]
    assert body["results"][4]["event_id"] == body["results"][0]["event_id"]
    assert sorted(e.idempotency_key for e in stored(app, tenant)) == ["a", "c", "old"]


def test_a_batch_of_more_than_1000_events_is_refused(app, client, operator, make_tenant):
    tenant = make_tenant()
    events = [event(tenant, key=f"k{i}") for i in range(1001)]
    assert_envelope(post(client, operator, {"events": events}, "/api/v1/events/batch"), 400, "VALIDATION_ERROR")
    assert stored(app, tenant) == []


def test_a_full_batch_of_1000_is_stored(app, client, operator, make_tenant):
    tenant = make_tenant()
    events = [event(tenant, key=f"k{i}") for i in range(1000)]
    body = post(client, operator, {"events": events}, "/api/v1/events/batch").get_json()
    assert body["accepted"] == 1000
    assert count(app, UsageEvent, tenant_id=tenant.tenant_id) == 1000


def test_a_dry_run_validates_and_shows_meters_without_storing(app, client, operator, make_tenant):
    tenant = make_tenant()
    events = [
        event(tenant, key="a"),
        event(tenant, key="b", eventName="compute_usage", quantity=3),
        event(tenant, key="c", quantity=-1),
    ]
    body = post(client, operator, {"events": events}, "/api/v1/events/dry-run").get_json()
    assert (body["valid"], body["rejected"]) == (2, 1)
    assert body["results"][0]["meters"] == [{"key": "pipeline_runs", "value": 1.0}]
    assert body["results"][1]["meters"] == [{"key": "compute_hours", "value": 3.0}]
    assert stored(app, tenant) == []


# --- queries and deletion ------------------------------------------------------------------


def test_events_are_listed_by_time_name_and_tenant_with_pagination(app, client, operator, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    now = utcnow()
    batch = [event(tenant, key=f"r{i}", occurredAt=(now + timedelta(seconds=10 * i)).isoformat()) for i in range(5)]
    batch += [event(tenant, key="c1", eventName="compute_usage"), event(other, key="o1")]
    post(client, operator, {"events": batch}, "/api/v1/events/batch")
    response = client.get(
        f"/api/v1/events?tenant_id={tenant.tenant_id}&event_name=pipeline_run&page_size=2", headers=operator
    )
    body = response.get_json()
    assert body["pagination"]["total_items"] == 5 and body["pagination"]["has_next"] is True
    assert [e["ref"] for e in body["events"]] == ["r0", "r1"]
    start = (now + timedelta(seconds=15)).isoformat().replace("+00:00", "Z")
    body = client.get(
        f"/api/v1/events?tenant_id={tenant.tenant_id}&start_time={start}&event_name=pipeline_run", headers=operator
    ).get_json()
    assert [e["ref"] for e in body["events"]] == ["r2", "r3", "r4"]
    assert_envelope(client.get("/api/v1/events?start_time=soon", headers=operator), 400)


def test_one_event_is_found_by_id_or_by_key_within_its_tenant(client, operator, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    event_id = post(client, operator, event(tenant, key="mine")).get_json()["event_id"]
    assert client.get(f"/api/v1/events/{event_id}", headers=operator).get_json()["ref"] == "mine"
    by_key = client.get(f"/api/v1/events/mine?tenant_id={tenant.tenant_id}", headers=operator)
    assert by_key.get_json()["event_id"] == event_id
    assert_envelope(client.get(f"/api/v1/events/mine?tenant_id={other.tenant_id}", headers=operator), 404)


def test_delete_by_refs_keeps_invoiced_events(app, client, operator, make_tenant):
    tenant = make_tenant()
    ids = [post(client, operator, event(tenant, key=k)).get_json()["event_id"] for k in ("a", "b")]
    with app.app_context():
        from portal.models import Invoice

        invoice_id = db.session.query(Invoice.id).filter_by(tenant_id=tenant.tenant_id).scalar()
        db.session.get(UsageEvent, ids[1]).invoice_id = invoice_id
        db.session.commit()
    body = post(client, operator, {"refs": [ids[0], ids[1], "nope"]}, "/api/v1/events/delete-by-refs").get_json()
    assert [e["event_id"] for e in body["deleted"]] == [ids[0]]
    assert body["invoiced"] == [ids[1]] and body["not_found"] == ["nope"]
    assert [e.id for e in stored(app, tenant)] == [ids[1]]


# --- concurrency (PostgreSQL) --------------------------------------------------------------


def test_parallel_posts_of_one_key_store_one_event(committed_app):
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.tenants.services import create_tenant

    with committed_app.test_request_context():
        create_tenant(SYSTEM, "race_tenant", "Race Co", "race@example.com")
        commit()
    token = operator_token(committed_app)
    barrier, results = threading.Barrier(8), []
    body = {"tenant_id": "race_tenant", "eventIdempotencyKey": "same", "eventName": "pipeline_run"}

    def send():
        client = committed_app.test_client()
        barrier.wait()
        response = send_json(client, "post", "/api/v1/events", body, bearer(token))
        results.append((response.status_code, response.get_json()["event_id"]))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(status for status, _ in results) == [200] * 7 + [201]
    assert len({event_id for _, event_id in results}) == 1
    with committed_app.app_context():
        assert db.session.query(UsageEvent).filter_by(tenant_id="race_tenant").count() == 1
