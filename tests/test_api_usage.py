"""Seed 000's usage and usage history, exactly shaped, from real events; the api_request count."""

import time
from datetime import timedelta

import pytest

from portal.models import utcnow
from portal.usage import api_requests
from portal.usage.periods import next_month, this_month
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, with_key
from tests.conftest import make_app
from tests.usage_support import record

SEED_000_USAGE_FIELDS = {
    "tenant_id",
    "usage_month",
    "pipelines_run_count",
    "pipelines_running_count",
    "storage_used_gb",
    "compute_hours",
    "api_requests_count",
    "last_pipeline_run_at",
    "quota_reset_at",
    "quotas",
    "usage_percentages",
}


@pytest.fixture
def tenant_with_usage(app, make_tenant):
    tenant = make_tenant()  # starter: 1,000 runs, 5 concurrent, 50 GB
    now = utcnow()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=450)
        record(tenant.tenant_id, "pipelines_running", 2, at=now)
        record(tenant.tenant_id, "pipelines_running", 1, at=now + timedelta(seconds=1))
        record(tenant.tenant_id, "storage_snapshot", "24.55")
        record(tenant.tenant_id, "compute_usage", 100.25, many=2)
    return tenant


def test_usage_of_this_month_in_seed_000s_shape(app, client, tenant_with_usage):
    tenant = tenant_with_usage
    _, plaintext = issue_key(app, tenant, scopes=["usage:read"])
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=with_key(plaintext))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert SEED_000_USAGE_FIELDS <= set(body)
    month = this_month()
    assert body["usage_month"] == f"{month:%Y-%m}"
    assert (body["pipelines_run_count"], body["pipelines_running_count"]) == (450, 1)
    assert (body["storage_used_gb"], body["compute_hours"]) == (24.55, 200.5)
    assert body["quota_reset_at"] == next_month(month).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["quotas"] == {"monthly_pipeline_quota": 1000, "concurrent_pipeline_quota": 5, "storage_quota_gb": 50}
    assert body["usage_percentages"] == {"pipelines": 45.0, "concurrent": 20.0, "storage": 49.1}
    assert body["last_pipeline_run_at"] is not None
    runs = next(f for f in body["features"] if f["key"] == "pipeline_runs")
    assert (runs["used"], runs["quota"], runs["percent"], runs["hard_limit"]) == (450, 1000, 45.0, True)


def test_another_month_has_no_usage_and_bad_months_are_400(app, client, tenant_with_usage):
    tenant = tenant_with_usage
    headers = bearer(operator_token(app))
    body = client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage?month=2020-01", headers=headers).get_json()
    assert (body["usage_month"], body["pipelines_run_count"], body["quota_reset_at"]) == (
        "2020-01",
        0,
        "2020-02-01T00:00:00Z",
    )
    for bad in ("2025-13", "2025-1", "november", "2025-11-01", "0000-01"):
        body = assert_envelope(
            client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage?month={bad}", headers=headers),
            400,
            "VALIDATION_ERROR",
        )
        assert "YYYY-MM" in body["detail"]


def test_usage_history_lists_months_newest_first(app, client, tenant_with_usage):
    tenant = tenant_with_usage
    headers = bearer(operator_token(app))
    body = client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage/history", headers=headers).get_json()
    assert body["tenant_id"] == tenant.tenant_id
    month = this_month()
    assert [h["month"] for h in body["history"]] == [f"{next_month(month, -i):%Y-%m}" for i in range(6)]
    assert body["history"][0] == {
        "month": f"{month:%Y-%m}",
        "pipelines_run": 450,
        "storage_used_gb": 24.55,
        "compute_hours": 200.5,
        "api_requests": 0,
    }
    assert all(h["pipelines_run"] == 0 for h in body["history"][1:])
    body = client.get(
        f"/api/v1/tenants/{tenant.tenant_id}/usage/history?start_month=2025-06&end_month=2025-11", headers=headers
    ).get_json()
    assert [h["month"] for h in body["history"]] == ["2025-11", "2025-10", "2025-09", "2025-08", "2025-07", "2025-06"]
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage/history?end_month=x", headers=headers), 400)
    # A range ends before it starts: no months. Longer than 36 months: the newest 36 of it.
    history = f"/api/v1/tenants/{tenant.tenant_id}/usage/history"
    inverted = client.get(f"{history}?start_month=2025-12&end_month=2025-11", headers=headers)
    assert inverted.status_code == 200 and inverted.get_json()["history"] == []
    months = client.get(f"{history}?start_month=2020-01&end_month=2025-11", headers=headers).get_json()["history"]
    assert len(months) == 36 and (months[0]["month"], months[-1]["month"]) == ("2025-11", "2022-12")


def test_usage_needs_the_usage_scope_and_is_the_tenants_own(app, client, tenant_with_usage, make_tenant):
    tenant, other = tenant_with_usage, make_tenant()
    _, pipelines_only = issue_key(app, tenant, scopes=["pipelines:read"])
    assert_envelope(
        client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=with_key(pipelines_only)),
        403,
        "INSUFFICIENT_SCOPE",
    )
    _, others_key = issue_key(app, other)
    for path in ("usage", "usage/history"):
        assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}/{path}", headers=with_key(others_key)), 403)
    body = client.get(f"/api/v1/tenants/{other.tenant_id}/usage", headers=with_key(others_key)).get_json()
    assert body["pipelines_run_count"] == 0


def test_every_tenant_key_request_counts_one_api_request(app, client, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    _, plaintext = issue_key(app, tenant)
    for _ in range(3):
        assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).status_code == 200
    client.get("/api/v1/tenants/nobody", headers=with_key("not-a-key"))  # unauthenticated: not counted
    headers = bearer(operator_token(app))
    usage = client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=headers).get_json()
    assert usage["api_requests_count"] == 3
    assert client.get(f"/api/v1/tenants/{other.tenant_id}/usage", headers=headers).get_json()["api_requests_count"] == 0

    # Flushed into events, the count stays what it was (nothing lost, nothing twice).
    from portal.extensions import db
    from portal.models import UsageEvent
    from portal.usage.api_request_events import flush

    with app.test_request_context():
        assert flush() >= 3
        assert flush() == 0
        rows = db.session.query(UsageEvent).filter_by(tenant_id=tenant.tenant_id, name="api_request").all()
        assert sum(row.quantity for row in rows) == 3
    assert (
        client.get(f"/api/v1/tenants/{tenant.tenant_id}/usage", headers=headers).get_json()["api_requests_count"] == 3
    )


def test_a_web_process_sends_its_request_counts_to_redis_together_and_without_waiting_for_another_request(
    database_url, redis_url, make_tenant
):
    app = make_app(database_url, REDIS_URL=redis_url, API_REQUEST_COUNT_SECONDS=3)
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = app.test_client()

    def in_redis() -> int:
        with app.app_context():
            return sum(api_requests.pending_counts([tenant.tenant_id])[tenant.tenant_id].values())

    started = time.monotonic()
    for _ in range(5):
        assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).status_code == 200
    waiting = in_redis()
    if time.monotonic() - started < 3:  # (a machine slow enough to take 3 s sends some on the way)
        assert waiting == 0  # held in the process: one round trip for all of them
    deadline = time.monotonic() + 10
    while in_redis() < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_redis() == 5  # sent by the process's timer: no later request was needed
