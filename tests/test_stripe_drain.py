"""Stored Stripe events are processed by one drain job: a burst of webhooks queues one job on
the real Redis, a worker processes every event, and a failing event is retried with backoff,
shown in the console, and given up on for the operator's replay."""

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from tests.stripe_support import WEBHOOK_SECRET, event_payload, free_port, localstripe, signature  # noqa: F401
from tests.test_jobs import jobs_app, queues  # noqa: F401 - the real-Redis fixtures


def post(client, payload: bytes):
    return client.post("/webhooks/stripe", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": signature(payload)})


def open_invoice(app, make_tenant):
    from portal.models import Invoice

    tenant = make_tenant()
    with app.app_context():
        return db.session.execute(select(Invoice).where(Invoice.tenant_id == tenant.tenant_id)).scalar_one()


def invoice_paid(invoice) -> bytes:
    """Stripe's invoice.paid naming our invoice: no call to Stripe is needed to apply it."""
    return event_payload("invoice.paid", {"id": f"in_{uuid.uuid4().hex[:20]}", "object": "invoice",
                                          "amount_paid": invoice.total, "payment_intent": None,
                                          "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id}})


def state(app, invoice_id: str, event_id: str):
    from portal.models import Invoice, StripeEvent

    with app.app_context():
        db.session.expire_all()
        return db.session.get(Invoice, invoice_id).status, db.session.get(StripeEvent, event_id)


def test_a_burst_of_webhooks_queues_one_drain_and_one_worker_applies_them_all(jobs_app, queues, make_tenant):  # noqa: F811
    jobs_app.config["STRIPE_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    client = jobs_app.test_client()
    invoices = [open_invoice(jobs_app, make_tenant) for _ in range(3)]
    payloads = [invoice_paid(invoice) for invoice in invoices]
    answers = [post(client, payload).get_json() for payload in [*payloads, payloads[0]]]
    assert [answer["duplicate"] for answer in answers] == [False, False, False, True]

    # Acknowledged, stored, not applied yet: one drain job waits, not one job per event.
    [job] = queues.default.get_jobs()
    assert job.func_name == "jobs.stripe.drain_stripe_events"
    assert [state(jobs_app, i.id, json.loads(p)["id"])[0] for i, p in zip(invoices, payloads, strict=True)] == [
        "open"] * 3

    queues.work()
    for invoice, payload in zip(invoices, payloads, strict=True):
        status, event = state(jobs_app, invoice.id, json.loads(payload)["id"])
        assert (status, event.status, event.attempts) == ("paid", "processed", 1)
    assert queues.default.count == 0

    # The drain that ran has let go of its "queued" mark: the next event wakes a new one.
    later = open_invoice(jobs_app, make_tenant)
    payload = invoice_paid(later)
    assert post(client, payload).status_code == 200
    assert queues.default.count == 1
    queues.work()
    assert state(jobs_app, later.id, json.loads(payload)["id"])[0] == "paid"


@pytest.fixture
def unreachable_stripe(app, localstripe):  # noqa: F811
    """Stripe configured, but nothing listens at its address (until the test says so)."""
    saved = {key: app.config.get(key) for key in localstripe.config()}
    app.config.update({**localstripe.config(), "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"})
    app.extensions.pop("portal_stripe", None)

    def reachable() -> None:
        app.config.update(localstripe.config())
        app.extensions.pop("portal_stripe", None)

    yield reachable
    app.config.update(saved)
    app.extensions.pop("portal_stripe", None)


def test_a_failing_event_is_retried_with_backoff_then_left_to_the_operator(
        client, app, unreachable_stripe, make_tenant, make_operator, login):
    from jobs.stripe import drain_stripe_events
    from portal.models import StripeEvent, utcnow

    invoice = open_invoice(app, make_tenant)
    intent = {"id": f"pi_{uuid.uuid4().hex[:20]}", "object": "payment_intent", "amount": invoice.total,
              "amount_received": invoice.total, "currency": "usd", "status": "succeeded",
              "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id, "attempt": "1"}}
    payload = event_payload("payment_intent.succeeded", intent)
    event_id = json.loads(payload)["id"]

    # The handler re-reads the PaymentIntent, and Stripe cannot be reached: a transient failure.
    assert post(client, payload).status_code == 200
    status, event = state(app, invoice.id, event_id)
    assert (status, event.status, event.attempts) == ("open", "failed", 1)
    assert "unreachable" in event.last_error
    assert timedelta(seconds=5) < event.next_attempt_at - utcnow() <= timedelta(seconds=10)

    login(client, make_operator())
    page = client.get("/admin/stripe-events?status=failed").get_data(as_text=True)
    assert event_id in page and 'data-testid="stripe-event-retry"' in page and "Tried again automatically" in page

    # Each retry that comes due fails again, with a longer pause, until the portal gives up.
    pauses = []
    for _ in range(3):
        with app.app_context():
            row = db.session.get(StripeEvent, event_id)
            row.next_attempt_at = utcnow() - timedelta(seconds=1)  # the pause has passed
            db.session.commit()
            assert drain_stripe_events() == 1
            assert drain_stripe_events() == 0  # not due again at once
        _, event = state(app, invoice.id, event_id)
        pauses.append(event.next_attempt_at and round((event.next_attempt_at - utcnow()).total_seconds(), -1))
    assert pauses == [60, 300, None]
    assert (event.status, event.attempts) == ("failed", 4)
    assert "No more automatic retries" in client.get("/admin/stripe-events").get_data(as_text=True)

    # Stripe is back; the operator replays the event and it goes through.
    unreachable_stripe()
    assert client.post(f"/admin/stripe-events/{event_id}/replay").status_code == 303
    status, event = state(app, invoice.id, event_id)
    assert (status, event.status, event.attempts, event.last_error) == ("paid", "processed", 5, None)
