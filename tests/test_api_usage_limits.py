"""Hard limits at ingestion: seed 002's usageLimitExceeded on single and batch results, and
seed 000's 429 QUOTA_EXCEEDED for an event sent with enforce: true (then nothing is stored).

Starter's pipeline_runs (1,000 a period), concurrent_pipelines (5) and storage_gb (50) are hard
limits; professional's pipeline runs beyond the included 5,000 are billed, not limited."""

import pytest

from portal.extensions import db
from portal.models import UsageEvent, utcnow
from tests.api_support import assert_envelope, bearer, operator_token, send_json
from tests.conftest import unique
from tests.usage_support import record


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def post(client, headers, tenant, name, key, quantity=1, **extra):
    body = {"tenant_id": tenant.tenant_id, "eventName": name, "eventIdempotencyKey": key, "quantity": quantity}
    return send_json(client, "post", "/api/v1/events", {**body, **extra}, headers)


def events(app, tenant, name) -> int:
    with app.app_context():
        return db.session.query(UsageEvent).filter_by(tenant_id=tenant.tenant_id, name=name).count()


def runs_recorded(app, tenant, many: int) -> None:
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=many)


def test_the_event_that_reaches_a_hard_limit_says_so_and_is_recorded(app, client, operator, make_tenant):
    tenant = make_tenant()
    runs_recorded(app, tenant, 998)
    below = post(client, operator, tenant, "pipeline_run", "run-999")
    assert below.status_code == 201
    assert below.get_json()["usageLimitExceeded"] is False and below.get_json()["message"] is None

    reaching = post(client, operator, tenant, "pipeline_run", "run-1000")
    assert reaching.status_code == 201, reaching.get_json()
    body = reaching.get_json()
    assert body["usageLimitExceeded"] is True
    assert "pipeline_runs" in body["message"] and "1000 of 1000 runs" in body["message"]
    # Seed 002's shape carries the same notice.
    assert body["data"] == {"usageLimitExceeded": True, "message": body["message"]}

    past = post(client, operator, tenant, "pipeline_run", "run-1001").get_json()
    assert past["usageLimitExceeded"] is True and "exceeded" in past["message"] and "1001 of 1000" in past["message"]
    assert events(app, tenant, "pipeline_run") == 1001  # without enforce, recorded all the same


def test_events_of_features_without_a_hard_limit_never_report_one(app, client, operator, make_tenant):
    tenant = make_tenant()
    body = post(client, operator, tenant, "compute_usage", "c1", quantity=10_000).get_json()
    assert body["usageLimitExceeded"] is False and body["data"]["usageLimitExceeded"] is False

    with app.test_request_context():
        from portal.access import SYSTEM
        from portal.infra.transactions import commit
        from portal.tenants.services import create_tenant

        professional = create_tenant(SYSTEM, unique("pro"), "Pro Co", "pro@example.com", "professional")
        commit()
    runs_recorded(app, professional, 1200)  # past starter's limit, within nothing on professional
    assert post(client, operator, professional, "pipeline_run", "p1").get_json()["usageLimitExceeded"] is False


def test_enforce_refuses_an_event_past_the_limit_with_429_and_stores_nothing(app, client, operator, make_tenant):
    tenant = make_tenant()
    runs_recorded(app, tenant, 999)
    last = post(client, operator, tenant, "pipeline_run", "last-one", enforce=True)
    assert last.status_code == 201, last.get_json()
    assert last.get_json()["usageLimitExceeded"] is True  # reached: the limit allows this one

    refused = post(client, operator, tenant, "pipeline_run", "one-too-many", enforce=True)
    body = assert_envelope(refused, 429, "QUOTA_EXCEEDED")
    assert "pipeline_runs" in body["detail"] and "not recorded" in body["detail"]
    assert body["feature"] == "pipeline_runs" and body["limit"] == 1000
    assert body["retry_after_seconds"] >= 1
    assert refused.headers["Retry-After"] == str(body["retry_after_seconds"])
    assert events(app, tenant, "pipeline_run") == 1000

    # Sent again, it is refused again (nothing was stored under its key); a repeat of the
    # accepted one is still its duplicate.
    assert_envelope(post(client, operator, tenant, "pipeline_run", "one-too-many", enforce=True), 429)
    repeat = post(client, operator, tenant, "pipeline_run", "last-one", enforce=True)
    assert repeat.status_code == 200 and repeat.get_json()["duplicate"] is True
    assert events(app, tenant, "pipeline_run") == 1000

    # Usage that does not touch the limited feature is not held back.
    assert post(client, operator, tenant, "compute_usage", "c1", quantity=5, enforce=True).status_code == 201


def test_enforce_judges_a_snapshot_meter_by_the_value_it_would_have(app, client, operator, make_tenant):
    tenant = make_tenant()
    assert_envelope(post(client, operator, tenant, "storage_snapshot", "s1", quantity=60, enforce=True), 429)
    assert events(app, tenant, "storage_snapshot") == 0
    ok = post(client, operator, tenant, "storage_snapshot", "s2", quantity=40, enforce=True)
    assert ok.status_code == 201 and ok.get_json()["usageLimitExceeded"] is False
    full = post(client, operator, tenant, "storage_snapshot", "s3", quantity=50, enforce=True)
    assert full.status_code == 201 and full.get_json()["usageLimitExceeded"] is True
    body = assert_envelope(post(client, operator, tenant, "pipelines_running", "r1", quantity=6, enforce=True), 429)
    assert body["feature"] == "concurrent_pipelines"
    assert events(app, tenant, "storage_snapshot") == 2 and events(app, tenant, "pipelines_running") == 0


def test_enforce_must_be_a_boolean(app, client, operator, make_tenant):
    tenant = make_tenant()
    body = assert_envelope(post(client, operator, tenant, "pipeline_run", "k", enforce="yes"), 400, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "enforce" and "boolean" in body["detail"]
    assert events(app, tenant, "pipeline_run") == 0


def test_a_batch_flags_each_event_that_feeds_a_feature_at_its_limit(app, client, operator, make_tenant):
    limited, other = make_tenant(), make_tenant()
    runs_recorded(app, limited, 999)
    now = utcnow().isoformat()
    batch = [
        {"tenant_id": limited.tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": "b1", "occurredAt": now},
        {"tenant_id": limited.tenant_id, "eventName": "compute_usage", "eventIdempotencyKey": "b2", "quantity": 3},
        {"tenant_id": other.tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": "b3"},
        {"tenant_id": limited.tenant_id, "eventName": ""},
    ]
    response = send_json(client, "post", "/api/v1/events/batch", {"events": batch}, operator)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["usageLimitExceeded"] for r in results] == [True, False, False, False]
    assert "pipeline_runs" in results[0]["message"] and "1000 of 1000" in results[0]["message"]
    assert [r["message"] for r in results[1:]] == [None, None, None]
    assert events(app, limited, "pipeline_run") == 1000


def test_an_ended_subscription_has_no_limits_to_report(app, client, operator, make_tenant):
    tenant = make_tenant()
    with app.test_request_context():
        from portal.access import SYSTEM
        from portal.billing import subscriptions
        from portal.infra.transactions import commit
        from portal.models import Subscription

        subscriptions.cancel(
            SYSTEM, db.session.query(Subscription).filter_by(tenant_id=tenant.tenant_id).one(), at_period_end=False
        )
        commit()
    response = post(client, operator, tenant, "storage_snapshot", "s", quantity=500, enforce=True)
    assert response.status_code == 201 and response.get_json()["usageLimitExceeded"] is False


def test_parallel_enforced_events_never_go_past_the_limit_together(committed_app):
    import threading
    from datetime import timedelta

    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.tenants.services import create_tenant

    with committed_app.test_request_context():
        create_tenant(SYSTEM, "limit_race", "Race Co", "race@example.com", subscribed_at=utcnow() - timedelta(days=2))
        commit()
        record("limit_race", "pipeline_run", many=998)
    token = operator_token(committed_app)
    barrier, statuses = threading.Barrier(6), []

    def send(n: int):
        client = committed_app.test_client()
        # Each in an hour of its own: no shared roll-up row makes them wait for each other.
        body = {
            "tenant_id": "limit_race",
            "eventName": "pipeline_run",
            "eventIdempotencyKey": f"race-{n}",
            "occurredAt": (utcnow() - timedelta(hours=n + 1)).isoformat(),
            "enforce": True,
        }
        barrier.wait()
        statuses.append(send_json(client, "post", "/api/v1/events", body, bearer(token)).status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201, 201, 429, 429, 429, 429]
    with committed_app.app_context():
        assert db.session.query(UsageEvent).filter_by(tenant_id="limit_race").count() == 1000
