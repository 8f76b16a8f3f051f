"""Meters over the API (seed 003, operator tokens): what the console does by hand. A meter a plan
measures a feature by cannot be deleted (409): its usage would silently read as none."""

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Meter
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, send_json, with_key
from tests.usage_support import record

NEW_METER = {
    "key": "gpu_minutes",
    "name": "GPU minutes",
    "event_name": "gpu_job",
    "aggregation": "sum",
    "property": "minutes",
    "filter": {"conditions": [{"criteria": [{"field": "status", "operator": "equals", "value": "ok"}]}]},
}


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


def meter_row(app, key):
    with app.app_context():
        db.session.expire_all()
        return db.session.query(Meter).filter_by(key=key).one_or_none()


def test_an_operator_creates_reads_lists_changes_and_deletes_a_meter(app, client, op):
    created = send_json(client, "post", "/api/v1/meters", NEW_METER, op)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert {k: body[k] for k in NEW_METER} == NEW_METER

    assert client.get("/api/v1/meters/gpu_minutes", headers=op).get_json()["event_name"] == "gpu_job"
    listed = client.get("/api/v1/meters?page_size=100", headers=op).get_json()
    keys = [m["key"] for m in listed["meters"]]
    assert "gpu_minutes" in keys and "pipeline_runs" in keys and keys == sorted(keys)
    assert listed["pagination"]["total_items"] == len(keys)

    changed = send_json(client, "patch", "/api/v1/meters/gpu_minutes", {"aggregation": "max", "filter": None}, op)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["aggregation"] == "max" and changed.get_json()["filter"] == {"conditions": []}
    assert changed.get_json()["property"] == "minutes"  # not sent: kept
    row = meter_row(app, "gpu_minutes")
    assert (row.aggregation, row.property) == ("max", "minutes")

    deleted = client.delete("/api/v1/meters/gpu_minutes", headers=op)
    assert deleted.status_code == 200, deleted.get_json()
    assert deleted.get_json()["meter"]["key"] == "gpu_minutes" and deleted.get_json()["deleted_at"]
    assert meter_row(app, "gpu_minutes") is None
    assert_envelope(client.get("/api/v1/meters/gpu_minutes", headers=op), 404, "RESOURCE_NOT_FOUND")
    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).filter_by(target_id="gpu_minutes")]
    assert sorted(actions) == ["meter.created", "meter.deleted", "meter.updated"]


def test_a_changed_meter_is_what_usage_reads_at_once(app, client, op, make_tenant):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "compute_usage", quantity=2, many=3)
    usage = client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=op).get_json()
    assert usage["compute_hours"] == 6
    send_json(client, "patch", "/api/v1/meters/compute_hours", {"aggregation": "max"}, op)
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=op).get_json()["compute_hours"] == 2


def test_a_meter_a_plan_measures_by_is_not_deleted(app, client, op):
    body = assert_envelope(client.delete("/api/v1/meters/pipeline_runs", headers=op), 409, "CONFLICT")
    assert "starter" in body["detail"] and "professional" in body["detail"]
    assert meter_row(app, "pipeline_runs") is not None


def test_a_second_meter_with_the_same_key_is_a_conflict(app, client, op):
    body = assert_envelope(send_json(client, "post", "/api/v1/meters", {**NEW_METER, "key": "pipeline_runs"}, op), 409)
    assert body["errors"][0]["field"] == "key"
    assert meter_row(app, "pipeline_runs").event_name == "pipeline_run"


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"key": "GPU Minutes"}, "key", "lowercase letter"),
        ({"key": ""}, "key", "lowercase letter"),
        ({"aggregation": "median"}, "aggregation", "count"),
        ({"aggregation": "unique_count", "property": None}, None, "needs a property"),
        ({"aggregation": "count"}, None, "leave property out"),
        (
            {"filter": {"conditions": [{"criteria": [{"field": "n", "operator": "gt", "value": "x"}]}]}},
            "filter",
            "number",
        ),
        ({"filter": {"conditions": [{"criteria": [{"field": "n", "operator": "around"}]}]}}, "filter", "equals"),
        (
            {"filter": {"conditions": [{"criteria": [{"field": "n", "operator": "lt", "value": float("inf")}]}]}},
            "filter",
            "finite",
        ),
        (
            {"filter": {"conditions": [{"criteria": [{"field": "n", "operator": "in", "value": [1, float("nan")]}]}]}},
            "filter",
            "finite",
        ),
        ({"filter": {"conditions": "all"}}, "filter", "list"),
        ({"name": ""}, "name", "at least 1"),
        ({"event_name": 5}, "event_name", "string"),
        ({"unit": "minutes"}, "unit", "Extra inputs"),
    ],
)
def test_a_bad_meter_is_refused_with_the_reason_and_nothing_is_stored(app, client, op, change, field, words):
    body = {**NEW_METER, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = assert_envelope(send_json(client, "post", "/api/v1/meters", body, op), 400, "VALIDATION_ERROR")
    assert words in response["detail"], response
    if field is not None:
        assert (response["errors"][0]["field"] or "").startswith(field)
    assert "MeterSpec" not in response["detail"] and "Value error" not in response["detail"]
    assert meter_row(app, body.get("key") or "") is None or body["key"] == "pipeline_runs"


def test_a_bad_change_leaves_the_meter_as_it_was(app, client, op):
    # A change that does not fit the meter as it is (unique_count of a meter without a property)
    # conflicts with its state; one that breaks the rule on its own is malformed.
    response = send_json(client, "patch", "/api/v1/meters/pipeline_runs", {"aggregation": "unique_count"}, op)
    assert "unique_count needs a property" in assert_envelope(response, 409, "CONFLICT")["detail"]
    body = {"aggregation": "unique_count", "property": None}
    assert_envelope(send_json(client, "patch", "/api/v1/meters/pipeline_runs", body, op), 400, "VALIDATION_ERROR")
    assert_envelope(send_json(client, "patch", "/api/v1/meters/pipeline_runs", {"name": None}, op), 400)
    assert_envelope(send_json(client, "patch", "/api/v1/meters/pipeline_runs", {"key": "other"}, op), 400)
    assert_envelope(send_json(client, "patch", "/api/v1/meters/no_such_meter", {"name": "x"}, op), 404)
    row = meter_row(app, "pipeline_runs")
    assert (row.aggregation, row.name) == ("count", "Pipeline runs")


def test_tenant_keys_cannot_manage_meters(app, client, make_tenant):
    key = with_key(issue_key(app, make_tenant(), scopes=["admin:*"])[1])
    assert_envelope(client.get("/api/v1/meters", headers=key), 403)
    assert_envelope(send_json(client, "post", "/api/v1/meters", NEW_METER, key), 403)
    assert_envelope(client.delete("/api/v1/meters/compute_hours", headers=key), 403)
    assert meter_row(app, "gpu_minutes") is None and meter_row(app, "compute_hours") is not None
