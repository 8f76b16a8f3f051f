"""Quota notices: at 90 % and at 100 % of a quota per period the owner and admins get one email
each, however many events follow; other tenants and other roles get none."""

from portal.extensions import db
from portal.models import QuotaNotice, utcnow
from tests.api_support import bearer, operator_token, send_json


def send_runs(client, headers, tenant, how_many, start=0):
    events = [
        {
            "tenant_id": tenant.tenant_id,
            "eventIdempotencyKey": f"run-{start + i}",
            "eventName": "pipeline_run",
            "occurredAt": utcnow().isoformat(),
        }
        for i in range(how_many)
    ]
    body = send_json(client, "post", "/api/v1/events/batch", {"events": events}, headers).get_json()
    assert body["accepted"] == how_many, body
    return start + how_many


def quota_emails(outbox, email):
    return [m.subject for m in outbox(email) if "Pipeline runs" in m.subject]


def test_owner_and_admins_are_told_once_at_90_and_once_at_100_percent(app, client, make_tenant, make_user, outbox):
    tenant, bystander = make_tenant(), make_tenant()
    owner = make_user(tenant, "owner")
    admin = make_user(tenant, "admin")
    developer = make_user(tenant, "developer")
    headers = bearer(operator_token(app))

    sent = send_runs(client, headers, tenant, 899)  # starter: 1,000 runs a month
    assert quota_emails(outbox, owner.email) == []
    sent = send_runs(client, headers, tenant, 1, sent)
    assert quota_emails(outbox, owner.email) == ["Pipeline runs: 90% of your quota used"]
    assert quota_emails(outbox, admin.email) == ["Pipeline runs: 90% of your quota used"]
    sent = send_runs(client, headers, tenant, 50, sent)
    assert len(quota_emails(outbox, owner.email)) == 1
    sent = send_runs(client, headers, tenant, 50, sent)
    assert quota_emails(outbox, owner.email) == [
        "Pipeline runs: quota reached",
        "Pipeline runs: 90% of your quota used",
    ]
    send_runs(client, headers, tenant, 20, sent)
    assert len(quota_emails(outbox, admin.email)) == 2
    assert quota_emails(outbox, developer.email) == []
    message = outbox(owner.email)[0]
    assert "1,000 of 1,000 runs" in message.text_body and "refused" in message.text_body
    assert "/usage" in message.text_body

    bystander_owner = make_user(bystander, "owner")
    assert quota_emails(outbox, bystander_owner.email) == []
    with app.app_context():
        notices = db.session.query(QuotaNotice).filter_by(tenant_id=tenant.tenant_id).all()
        assert sorted(n.threshold for n in notices) == [90, 100]


def test_a_jump_past_100_percent_sends_only_the_quota_reached_email(app, client, make_tenant, make_user, outbox):
    tenant = make_tenant()
    owner = make_user(tenant, "owner")
    send_runs(client, bearer(operator_token(app)), tenant, 1000)
    assert quota_emails(outbox, owner.email) == ["Pipeline runs: quota reached"]
    # Claimed both thresholds: 90 % never comes later in this period.
    with app.app_context():
        assert db.session.query(QuotaNotice).filter_by(tenant_id=tenant.tenant_id).count() == 2


def test_one_queued_check_stands_for_every_ingestion_until_it_starts(app, client, make_tenant, make_user, outbox):
    from jobs.usage import check_quotas
    from portal.infra.queues import redis_connection
    from portal.usage.quotas import check_key

    tenant = make_tenant()
    owner = make_user(tenant, "owner")
    headers = bearer(operator_token(app))
    with app.app_context():
        key = check_key(tenant.tenant_id)
        redis_connection().set(key, 1, ex=60)  # as if an ingestion had just queued a check
    try:
        sent = send_runs(client, headers, tenant, 900)
        assert quota_emails(outbox, owner.email) == []  # no second check queued behind the first
        with app.test_request_context():
            check_quotas(tenant.tenant_id)  # the queued check runs: it sees every event so far
            assert not redis_connection().exists(key)
        assert quota_emails(outbox, owner.email) == ["Pipeline runs: 90% of your quota used"]
        send_runs(client, headers, tenant, 100, sent)  # after it started: a new check is queued
        assert quota_emails(outbox, owner.email)[0] == "Pipeline runs: quota reached"
    finally:
        with app.app_context():
            redis_connection().delete(key)


def test_events_that_feed_no_quota_queue_no_check(app, client, make_tenant, monkeypatch):
    """Starter's quotas are on pipeline runs, concurrent pipelines and storage: compute usage
    can never cross one, so ingesting it runs no check (jobs run inline here); a run does."""
    from portal.usage import quotas

    checked = []
    monkeypatch.setattr(quotas, "check_quotas", lambda tenant_id: checked.append(tenant_id) or [])
    tenant = make_tenant()
    headers = bearer(operator_token(app))
    event = {
        "tenant_id": tenant.tenant_id,
        "eventName": "compute_usage",
        "quantity": 2.5,
        "eventIdempotencyKey": "compute-1",
        "occurredAt": utcnow().isoformat(),
    }
    assert send_json(client, "post", "/api/v1/events", event, headers).status_code == 201
    assert checked == []
    send_runs(client, headers, tenant, 1)
    assert checked == [tenant.tenant_id]
