"""Outbound webhooks end to end, against a real HTTP receiver on loopback: every event of the
catalog reaches an endpoint after its cause, signed so that the ``standardwebhooks`` package
verifies it; failures are retried with the same webhook-id; a rolled-back change sends
nothing; rotated secrets overlap; private addresses are refused; tenants stay apart."""

import json
from datetime import timedelta

import jsonschema
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    EmailMessage,
    Invoice,
    Membership,
    Subscription,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from portal.webhooks.catalog import EVENT_TYPES
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, send_json, with_key
from tests.test_usage_quotas import send_runs


def add_endpoint(app, tenant, url, event_types=("*",), description="Test endpoint"):
    """(endpoint id, secret) of a new endpoint of ``tenant`` (None: the operator's own)."""
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.webhooks.services import create_endpoint

    with app.test_request_context():
        endpoint, secret = create_endpoint(SYSTEM, tenant, url, list(event_types), description)
        commit()
        return endpoint.id, secret


def in_request(app, action):
    from portal.infra.transactions import commit

    with app.test_request_context():
        result = action()
        commit()
        return result


def test_every_event_in_the_catalog_reaches_the_endpoint_after_its_cause_and_verifies(app, client, receiver):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key, revoke_key
    from portal.billing import credits, invoices, subscriptions
    from portal.billing.payments.dunning import payment_failed, retry_days
    from portal.team.services import remove_member
    from portal.tenants import services as tenants
    from portal.tenants.suspension import activate, suspend
    from portal.webhooks.services import send_test

    endpoint_id, secret = add_endpoint(app, None, receiver.url)  # the operator's: every tenant's events
    token = operator_token(app)

    # customer.created, subscription.created, invoice.created, member.joined: a sign-up.
    user, tenant = in_request(
        app,
        lambda: tenants.sign_up(
            SYSTEM, "Hook Co", f"hook_{utcnow():%H%M%S%f}", f"hook-{utcnow():%f}@example.com", "a long passphrase here"
        ),
    )
    tid = tenant.tenant_id

    def tenant_now():
        return db.session.get(type(tenant), tid)

    key = in_request(app, lambda: create_key(SYSTEM, tenant_now(), "CI", scopes=None, expires_in_days=30)[0])
    in_request(app, lambda: revoke_key(SYSTEM, tenant_now(), db.session.get(type(key), key.id), "rotated"))
    in_request(app, lambda: suspend(SYSTEM, tenant_now(), "admin_request", note="checking"))
    in_request(app, lambda: activate(SYSTEM, tenant_now()))
    in_request(app, lambda: credits.grant(SYSTEM, tenant_now(), 1500, reason="Goodwill"))

    def developer_joins_and_leaves():
        from portal.auth.services import create_user

        dev = create_user(f"dev-{utcnow():%f}@example.com", "a long passphrase here", "Dev")
        membership = Membership(tenant_id=tid, user_id=dev.id, role="developer")
        db.session.add(membership)
        db.session.flush()
        remove_member(SYSTEM, tenant_now(), membership)

    in_request(app, developer_joins_and_leaves)

    def sub():
        return db.session.execute(select(Subscription).where(Subscription.tenant_id == tid)).scalar_one()

    # invoice.paid (by hand), then an upgrade whose proration invoice fails until it is unpaid.
    first = in_request(app, lambda: db.session.execute(select(Invoice.id).where(Invoice.tenant_id == tid)).scalar())
    in_request(app, lambda: invoices.mark_paid(SYSTEM, db.session.get(Invoice, first), "wire 1", utcnow()))
    in_request(app, lambda: subscriptions.change_plan(SYSTEM, sub(), "professional"))
    proration = in_request(
        app,
        lambda: db.session.execute(
            select(Invoice.id).where(Invoice.tenant_id == tid, Invoice.status == "open")
        ).scalar(),
    )
    with app.app_context():
        tries = len(retry_days()) + 1
    for _ in range(tries):
        in_request(app, lambda: payment_failed(db.session.get(Invoice, proration), "Card declined", utcnow()))
    in_request(app, lambda: invoices.void(SYSTEM, db.session.get(Invoice, proration), "Written off", utcnow()))

    # A second company: quota notices, an upgrade, a downgrade scheduled then applied, renewed, cancelled.
    _, other = in_request(
        app,
        lambda: tenants.sign_up(
            SYSTEM,
            "Hook Two",
            f"hook2_{utcnow():%H%M%S%f}",
            f"two-{utcnow():%f}@example.com",
            "a long passphrase here",
        ),
    )

    def other_sub():
        return db.session.execute(select(Subscription).where(Subscription.tenant_id == other.tenant_id)).scalar_one()

    sent = send_runs(client, bearer(token), other, 900)  # starter: 1,000 runs a month
    send_runs(client, bearer(token), other, 100, start=sent)
    in_request(app, lambda: subscriptions.change_plan(SYSTEM, other_sub(), "professional"))
    in_request(app, lambda: subscriptions.change_plan(SYSTEM, other_sub(), "starter"))
    in_request(app, lambda: subscriptions.renew(other_sub(), other_sub().current_period_end + timedelta(seconds=1)))
    in_request(app, lambda: subscriptions.cancel(SYSTEM, other_sub(), at_period_end=False))

    for event_type in ("pipeline.completed", "pipeline.failed"):
        response = send_json(
            client,
            "post",
            f"/api/v1/tenants/{tid}/events/pipeline",
            {"event_type": event_type, "pipeline_id": "pl_nightly", "run_id": "run_7"},
            bearer(token),
        )
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["delivered_to"] == 1
    in_request(app, lambda: send_test(SYSTEM, None, db.session.get(WebhookEndpoint, endpoint_id)))

    received = receiver.wait_for(len(EVENT_TYPES))
    verified = [request.verify(secret) for request in received]  # raises on a bad signature
    assert {payload["event_type"] for payload in verified} == set(EVENT_TYPES)
    document = client.get("/api/v1/openapi.json").get_json()
    for request, payload in zip(received, verified, strict=True):
        assert set(payload) == {"event_id", "event_type", "tenant_id", "timestamp", "data"}
        assert request.headers["webhook-id"] == payload["event_id"]
        # What arrived is what the document's ``webhooks`` section says each event carries.
        described = document["webhooks"][payload["event_type"]]["post"]
        schema = described["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(payload)
        assert {p["name"] for p in described["parameters"]} <= {name.lower() for name in request.headers}

    def data(event_type, tenant_id=tid):
        return [p["data"] for p in verified if p["event_type"] == event_type and p["tenant_id"] == tenant_id]

    assert data("customer.created")[0]["company_name"] == "Hook Co"
    assert data("api_key.created")[0]["api_key_id"] == key.id
    assert data("api_key.revoked")[0]["status"] == "revoked"
    assert data("customer.suspended")[0]["status"] == "suspended"
    assert data("invoice.paid")[0]["status"] == "paid"
    assert data("subscription.upgraded")[0]["plan_name"] == "professional"
    assert data("credit.granted")[0]["amount"] == 1500
    assert data("member.removed")[0]["role"] == "developer"
    assert data("quota.approaching_limit", other.tenant_id)[0]["feature"] == "pipeline_runs"
    assert data("quota.exceeded", other.tenant_id)[0]["usage_percentage"] >= 100
    assert data("pipeline.failed")[0]["pipeline_id"] == "pl_nightly"
    assert data("subscription.renewed", other.tenant_id)
    assert data("subscription.downgrade_scheduled", other.tenant_id)[0]["scheduled_change"]["plan"] == "starter"
    assert data("subscription.downgraded", other.tenant_id)[0]["plan_name"] == "starter"
    # Causes come before their events: the suspension was announced before the reactivation.
    order = [p["event_type"] for p in verified if p["tenant_id"] == tid]
    assert order.index("customer.suspended") < order.index("customer.activated")
    assert order.index("subscription.past_due") < order.index("subscription.unpaid")


def test_a_tenant_endpoint_gets_only_its_events_and_only_those_it_chose(app, make_tenant, receiver):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key
    from portal.billing.credits import grant

    tenant, other = make_tenant(), make_tenant()
    _, secret = add_endpoint(app, tenant, receiver.url, ["api_key.revoked", "api_key.created"])
    in_request(app, lambda: create_key(SYSTEM, other, "Other's", scopes=None))
    issue_key(app, tenant, name="Mine")

    [request] = receiver.wait_for(1)
    payload = request.verify(secret)
    assert (payload["event_type"], payload["tenant_id"], payload["data"]["key_name"]) == (
        "api_key.created",
        tenant.tenant_id,
        "Mine",
    )
    in_request(app, lambda: grant(SYSTEM, tenant, 100))
    assert len(receiver.requests) == 1  # credit.granted was not chosen


def test_a_rolled_back_change_sends_nothing(app, make_tenant, receiver):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key
    from portal.infra.transactions import rollback

    tenant = make_tenant()
    add_endpoint(app, tenant, receiver.url)
    with app.test_request_context():
        create_key(SYSTEM, tenant, "Never", scopes=None)
        assert db.session.execute(select(WebhookEvent)).scalars().all()  # written with the change...
        rollback()
        assert db.session.execute(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant.tenant_id)).all() == []
    issue_key(app, tenant, name="Kept")
    [request] = receiver.wait_for(1)
    assert request.payload["data"]["key_name"] == "Kept"  # ...and gone with it


def test_a_failed_attempt_is_retried_with_the_same_webhook_id_and_the_log_shows_both(
    app, client, make_tenant, receiver
):
    from jobs.webhooks import deliver

    tenant = make_tenant()
    webhook_id, secret = add_endpoint(app, tenant, receiver.url)
    _, plaintext = issue_key(app, tenant)
    receiver.answer_with(500)
    response = client.post(
        f"/api/v1/tenants/{tenant.tenant_id}/webhooks/{webhook_id}/test", headers=with_key(plaintext)
    )
    assert response.status_code == 202
    first = response.get_json()
    assert (first["state"], first["attempt_count"], first["last_status_code"]) == ("pending", 1, 500)
    retry_at = first["next_attempt_at"]
    assert retry_at is not None

    with app.test_request_context():  # the retry falls due (5 s later in real life)
        delivery = db.session.get(WebhookDelivery, first["delivery_id"])
        delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert deliver(first["delivery_id"]) == "succeeded"

    receiver.wait_for(3)  # api_key.created, then the test event twice
    one, two = receiver.of_type("webhook.test")
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == first["event_id"]
    assert one.body == two.body
    two.verify(secret)
    log = client.get(
        f"/api/v1/tenants/{tenant.tenant_id}/webhooks/{webhook_id}/deliveries", headers=with_key(plaintext)
    ).get_json()
    [entry] = [d for d in log["deliveries"] if d["event_type"] == "webhook.test"]
    assert entry["state"] == "succeeded"
    assert [(a["number"], a["status_code"]) for a in entry["attempts"]] == [(1, 500), (2, 200)]
    assert entry["attempts"][1]["response_excerpt"] == '{"received": true}'


def test_after_the_last_retry_the_delivery_fails_and_five_failing_days_disable_the_endpoint(
    app, make_tenant, make_user, receiver
):
    from jobs.webhooks import deliver
    from portal.access import SYSTEM
    from portal.webhooks.services import send_test

    tenant = make_tenant()
    admin = make_user(tenant, "admin")
    developer = make_user(tenant, "developer")
    webhook_id, _ = add_endpoint(app, tenant, receiver.url)
    receiver.answer_with(*[503] * 20)
    delivery_id = in_request(app, lambda: send_test(SYSTEM, tenant, db.session.get(WebhookEndpoint, webhook_id)).id)
    with app.test_request_context():
        schedule = [int(s) for s in app.config["WEBHOOK_RETRY_SCHEDULE"].split(",")]
        assert sum(schedule) / 3600 == pytest.approx(28, abs=0.5)  # about 28 hours in all
        for _ in schedule:
            delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
            delivery.next_attempt_at = utcnow()
            db.session.commit()
            state = deliver(delivery_id)
        assert state == "failed"
        assert db.session.get(WebhookDelivery, delivery_id, populate_existing=True).attempt_count == len(schedule) + 1
        endpoint = db.session.get(WebhookEndpoint, webhook_id, populate_existing=True)
        assert endpoint.enabled  # failing, but not for five days yet
        endpoint.failing_since = utcnow() - timedelta(days=5, minutes=1)
        db.session.commit()
    in_request(app, lambda: send_test(SYSTEM, tenant, db.session.get(WebhookEndpoint, webhook_id)))
    with app.test_request_context():
        endpoint = db.session.get(WebhookEndpoint, webhook_id, populate_existing=True)
        assert not endpoint.enabled
        assert "failed for 5 days" in endpoint.disabled_reason
        told = (
            db.session.execute(select(EmailMessage.to).where(EmailMessage.subject == "A webhook endpoint was disabled"))
            .scalars()
            .all()
        )
        owner_email = (
            db.session.execute(
                select(Membership).where(Membership.tenant_id == tenant.tenant_id, Membership.role == "owner")
            )
            .scalar_one()
            .user.email
        )
        assert sorted(told) == sorted([owner_email, admin.email])
        assert developer.email not in told


def test_rotating_the_secret_signs_with_both_for_a_day(app, client, make_tenant, receiver):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    created = send_json(
        client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/webhooks",
        {"url": receiver.url, "event_types": ["webhook.test"], "description": "Ops"},
        with_key(plaintext),
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    old_secret, webhook_id = body["secret"], body["webhook_id"]
    assert old_secret.startswith("whsec_")
    rotated = client.post(
        f"/api/v1/tenants/{tenant.tenant_id}/webhooks/{webhook_id}/rotate-secret", headers=with_key(plaintext)
    ).get_json()
    new_secret = rotated["secret"]
    assert new_secret != old_secret
    client.post(f"/api/v1/tenants/{tenant.tenant_id}/webhooks/{webhook_id}/test", headers=with_key(plaintext))
    [request] = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verify(old_secret) == request.verify(new_secret)

    with app.test_request_context():  # a day later only the new one signs
        endpoint = db.session.get(WebhookEndpoint, webhook_id)
        endpoint.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    client.post(f"/api/v1/tenants/{tenant.tenant_id}/webhooks/{webhook_id}/test", headers=with_key(plaintext))
    _, later = receiver.wait_for(2)
    later.verify(new_secret)
    from standardwebhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        later.verify(old_secret)

    # The secret is never shown again, nor stored in clear.
    path = f"/api/v1/tenants/{tenant.tenant_id}/webhooks"
    listed = client.get(path, headers=with_key(plaintext)).get_data(as_text=True)
    assert new_secret not in listed and old_secret not in listed
    assert json.loads(listed)["webhooks"][0]["secret_hint"] == new_secret[-4:]
    with app.app_context():
        row = db.session.get(WebhookEndpoint, webhook_id)
        assert new_secret.encode() not in row.sealed_secret and new_secret[6:].encode() not in row.sealed_secret


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "Use an https:// URL"),
        ("https://10.1.2.3/x", "private or reserved address"),
        ("https://127.0.0.1:8443/x", "private or reserved address"),
        ("https://169.254.169.254/latest/meta-data", "private or reserved address"),
        ("https://[::1]/x", "private or reserved address"),
        ("https://[::ffff:192.168.0.1]/x", "private or reserved address"),
        ("https://100.64.0.1/x", "private or reserved address"),
        ("https://localhost/x", "private or reserved address"),
        ("https://user:pw@hooks.example.com/x", "Leave user names and passwords out"),
        ("ftp://hooks.example.com/x", "starting with https://"),
        ("https://no-such-host.invalid/x", "could not find the host"),
    ],
)
def test_production_refuses_plain_http_and_private_addresses(app, client, make_tenant, monkeypatch, url, message):
    monkeypatch.setitem(app.config, "WEBHOOK_REQUIRE_HTTPS", True)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", "")
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    response = send_json(
        client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/webhooks",
        {"url": url, "event_types": ["*"]},
        with_key(plaintext),
    )
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert message in body["detail"]
    with app.app_context():
        assert (
            db.session.execute(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.tenant_id)).all() == []
        )


def test_an_address_that_turns_private_after_saving_is_not_called_at_delivery(app, make_tenant, receiver, monkeypatch):
    from jobs.webhooks import deliver  # noqa: F401
    from portal.access import SYSTEM
    from portal.webhooks.services import send_test

    tenant = make_tenant()
    webhook_id, _ = add_endpoint(app, tenant, receiver.url)  # allowed when saved (the allow-list)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", "")  # as if DNS now answered 127.0.0.1
    delivery = in_request(app, lambda: send_test(SYSTEM, tenant, db.session.get(WebhookEndpoint, webhook_id)))
    with app.app_context():
        attempt = db.session.execute(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
        ).scalar_one()
        assert attempt.status_code is None and "private or reserved address" in attempt.error
    assert receiver.requests == []


def test_another_tenants_endpoints_and_deliveries_are_not_found(app, client, make_tenant, receiver):
    mine, theirs = make_tenant(), make_tenant()
    their_webhook, _ = add_endpoint(app, theirs, receiver.url)
    my_webhook, _ = add_endpoint(app, mine, receiver.url)
    _, their_key = issue_key(app, theirs)
    _, my_key = issue_key(app, mine)
    client.post(f"/api/v1/tenants/{theirs.tenant_id}/webhooks/{their_webhook}/test", headers=with_key(their_key))
    their_delivery = client.get(
        f"/api/v1/tenants/{theirs.tenant_id}/webhooks/{their_webhook}/deliveries", headers=with_key(their_key)
    ).get_json()["deliveries"][0]["delivery_id"]
    base = f"/api/v1/tenants/{mine.tenant_id}/webhooks"
    for method, path in [
        ("get", f"{base}/{their_webhook}"),
        ("patch", f"{base}/{their_webhook}"),
        ("delete", f"{base}/{their_webhook}"),
        ("post", f"{base}/{their_webhook}/test"),
        ("post", f"{base}/{their_webhook}/rotate-secret"),
        ("get", f"{base}/{their_webhook}/deliveries"),
        ("post", f"{base}/{my_webhook}/deliveries/{their_delivery}/resend"),
    ]:
        response = (
            send_json(client, method, path, {"description": "x"}, with_key(my_key))
            if method == "patch"
            else getattr(client, method)(path, headers=with_key(my_key))
        )
        assert_envelope(response, 404, "RESOURCE_NOT_FOUND")
    # and their key cannot reach mine at all
    assert_envelope(client.get(f"{base}/{my_webhook}", headers=with_key(their_key)), 403)
    assert [w["webhook_id"] for w in client.get(base, headers=with_key(my_key)).get_json()["webhooks"]] == [my_webhook]


def test_ten_endpoints_at_most_and_clear_messages_for_bad_input(app, client, make_tenant, receiver):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    path = f"/api/v1/tenants/{tenant.tenant_id}/webhooks"
    for bad, words in [
        ({"url": receiver.url, "event_types": []}, "event_types"),
        ({"url": receiver.url, "event_types": ["invoice.exploded"]}, "event_types"),
        ({"url": "not a url", "event_types": ["*"]}, "full URL"),
        ({"url": receiver.url, "event_types": ["*"], "secret": "mine"}, "secret"),
    ]:
        body = assert_envelope(send_json(client, "post", path, bad, with_key(plaintext)), 400)
        assert words in body["detail"] + json.dumps(body.get("errors"))
    for _ in range(10):
        assert (
            send_json(
                client, "post", path, {"url": receiver.url, "event_types": ["*"]}, with_key(plaintext)
            ).status_code
            == 201
        )
    body = assert_envelope(
        send_json(client, "post", path, {"url": receiver.url, "event_types": ["*"]}, with_key(plaintext)), 409
    )
    assert "at most 10" in body["detail"]
    listed = client.get(path + "?page_size=4", headers=with_key(plaintext)).get_json()
    assert len(listed["webhooks"]) == 4 and listed["pagination"]["total_items"] == 10


def test_a_key_without_admin_scope_cannot_manage_webhooks(app, client, make_tenant):
    tenant = make_tenant()
    _, reader = issue_key(app, tenant, scopes=["usage:read"])
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}/webhooks", headers=with_key(reader))
    assert_envelope(response, 403, "INSUFFICIENT_SCOPE")


def test_pipeline_events_come_from_the_operator_only(app, client, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    path = f"/api/v1/tenants/{tenant.tenant_id}/events/pipeline"
    payload = {"event_type": "pipeline.completed", "pipeline_id": "p1"}
    assert_envelope(send_json(client, "post", path, payload, with_key(plaintext)), 403)
    answer = send_json(client, "post", path, payload, bearer(operator_token(app)))
    assert answer.status_code == 202 and answer.get_json()["event_id"] is None  # nobody subscribes
    bad = send_json(client, "post", path, {**payload, "event_type": "pipeline.exploded"}, bearer(operator_token(app)))
    assert_envelope(bad, 400, "VALIDATION_ERROR")


def test_the_event_catalog_is_public_and_in_the_openapi_document(client):
    listed = client.get("/api/v1/webhook-event-types").get_json()["event_types"]
    assert {item["event_type"] for item in listed} == set(EVENT_TYPES)
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/tenants/{tenant_id}/webhooks" in document["paths"]
    assert "/api/v1/tenants/{tenant_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/resend" in document["paths"]
    assert "quota.approaching_limit" in json.dumps(document)


def test_production_defaults_refuse_plain_http_and_every_private_address(monkeypatch):
    from portal.config import load_config

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("WEBHOOK_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("WEBHOOK_REQUIRE_HTTPS", raising=False)
    production = load_config()
    assert (production["WEBHOOK_REQUIRE_HTTPS"], production["WEBHOOK_ALLOWED_HOSTS"]) == (True, "")
    monkeypatch.setenv("PORTAL_ENV", "development")
    development = load_config()
    assert development["WEBHOOK_REQUIRE_HTTPS"] is False and "127.0.0.0/8" in development["WEBHOOK_ALLOWED_HOSTS"]
