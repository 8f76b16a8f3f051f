"""Stored Stripe events are processed by one drain job: a burst of webhooks queues one job on
the real Redis, a worker processes every event, and a failing event is retried with backoff,
shown in the console, and given up on for the operator's replay."""

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from tests.stripe_support import WEBHOOK_SECRET, event_payload, free_port, localstripe, signature  # noqa: F401
from tests.test_jobs import jobs_app, queues  # noqa: F401 - the real-Redis fixtures


def post(client, payload: bytes):
    return client.post(
        "/webhooks/stripe",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": signature(payload)},
    )


def open_invoice(app, make_tenant):
    from portal.models import Invoice

    tenant = make_tenant()
    with app.app_context():
        return db.session.execute(select(Invoice).where(Invoice.tenant_id == tenant.tenant_id)).scalar_one()


def invoice_paid(invoice) -> bytes:
    """Stripe's invoice.paid naming our invoice: no call to Stripe is needed to apply it."""
    return event_payload(
        "invoice.paid",
        {
            "id": f"in_{uuid.uuid4().hex[:20]}",
            "object": "invoice",
            "amount_paid": invoice.total,
            "payment_intent": None,
            "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id},
        },
    )


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
        "open"
    ] * 3

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
    client, app, unreachable_stripe, make_tenant, make_operator, login
):
    from jobs.stripe import drain_stripe_events
    from portal.models import StripeEvent, utcnow

    invoice = open_invoice(app, make_tenant)
    intent = {
        "id": f"pi_{uuid.uuid4().hex[:20]}",
        "object": "payment_intent",
        "amount": invoice.total,
        "amount_received": invoice.total,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id, "attempt": "1"},
    }
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


def store_waiting(app, payloads: list[bytes]) -> list[str]:
    """Stored as the webhook stores them, but with no drain woken: the test runs it."""
    from portal.billing.payments.events import store

    with app.app_context():
        for payload in payloads:
            assert store(json.loads(payload))
        db.session.commit()
    return [json.loads(payload)["id"] for payload in payloads]


def test_a_failing_event_among_good_ones_undoes_only_its_own_changes(app, make_tenant, monkeypatch):
    from jobs.stripe import drain_stripe_events
    from portal.billing import invoices as billing_invoices
    from portal.models import AuditEvent, PaymentAttempt, utcnow

    invoices = [open_invoice(app, make_tenant) for _ in range(3)]
    event_ids = store_waiting(app, [invoice_paid(invoice) for invoice in invoices])
    end_dunning = billing_invoices.end_dunning

    def fails_for_the_middle_invoice(invoice, *args):
        if invoice.id == invoices[1].id:
            db.session.flush()  # its invoice, attempt and audit rows are written before it fails
            raise RuntimeError("dunning broke")
        end_dunning(invoice, *args)

    monkeypatch.setattr(billing_invoices, "end_dunning", fails_for_the_middle_invoice)
    with app.app_context():
        assert drain_stripe_events() == 3  # all three in one batch, one commit

    states = [state(app, invoice.id, event_id) for invoice, event_id in zip(invoices, event_ids, strict=True)]
    assert [(status, event.status, event.attempts) for status, event in states] == [
        ("paid", "processed", 1),
        ("open", "failed", 1),
        ("paid", "processed", 1),
    ]
    failed = states[1][1]
    assert failed.last_error == "RuntimeError: dunning broke" and failed.processed_at is None
    assert timedelta(seconds=5) < failed.next_attempt_at - utcnow() <= timedelta(seconds=10)
    with app.app_context():
        for invoice, kept in zip(invoices, (1, 0, 1), strict=True):
            assert (
                db.session.scalar(
                    select(func.count()).select_from(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice.id)
                )
                == kept
            )
            assert (
                db.session.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id == invoice.id)
                )
                == kept
            )

    # Fixed, and due again: the next drain pays it, once.
    monkeypatch.setattr(billing_invoices, "end_dunning", end_dunning)
    with app.app_context():
        from portal.models import StripeEvent

        db.session.get(StripeEvent, event_ids[1]).next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert drain_stripe_events() == 1
    status, event = state(app, invoices[1].id, event_ids[1])
    assert (status, event.status, event.attempts, event.last_error) == ("paid", "processed", 2, None)


def test_an_event_after_a_failed_one_sees_the_invoice_as_the_failure_left_it(app, make_tenant, monkeypatch):
    """The failed event had marked the invoice paid before it broke: the next event of the same
    batch finds it open again, and pays it."""
    from jobs.stripe import drain_stripe_events
    from portal.billing import invoices as billing_invoices
    from portal.models import AuditEvent, PaymentAttempt, StripeEvent

    invoice = open_invoice(app, make_tenant)
    paid = invoice_paid(invoice)
    # Stripe sends invoice.payment_succeeded along with invoice.paid, for the same payment.
    succeeded = event_payload("invoice.payment_succeeded", json.loads(paid)["data"]["object"])
    event_ids = store_waiting(app, [paid, succeeded])
    end_dunning, calls = billing_invoices.end_dunning, []

    def fails_the_first_time(invoice, *args):
        calls.append(invoice.id)
        if len(calls) == 1:
            raise RuntimeError("dunning broke")
        end_dunning(invoice, *args)

    monkeypatch.setattr(billing_invoices, "end_dunning", fails_the_first_time)
    with app.app_context():
        assert drain_stripe_events() == 2
        first, second = (db.session.get(StripeEvent, event_id) for event_id in event_ids)
        assert (first.status, second.status, second.result) == ("failed", "processed", f"invoice {invoice.number} paid")
        assert (
            db.session.scalar(
                select(func.count()).select_from(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice.id)
            )
            == 1
        )
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id == invoice.id)
            )
            == 1
        )
    assert state(app, invoice.id, event_ids[1])[0] == "paid"


def test_a_drain_takes_the_oldest_events_first_in_batches(app, make_tenant, monkeypatch):
    import jobs.stripe
    from portal.billing.payments import drain
    from portal.models import AuditEvent, PaymentAttempt, utcnow

    monkeypatch.setattr(drain, "BATCH_SIZE", 2)
    invoices = [open_invoice(app, make_tenant) for _ in range(5)]
    event_ids = store_waiting(app, [invoice_paid(invoice) for invoice in invoices])
    with app.app_context():
        assert jobs.stripe.drain_stripe_events() == 5  # batches of 2, 2 and 1
        paid_order = (
            db.session.execute(
                select(AuditEvent.target_id)
                .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id.in_([i.id for i in invoices]))
                .order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
    assert paid_order == [invoice.id for invoice in invoices]
    assert [state(app, i.id, e)[1].status for i, e in zip(invoices, event_ids, strict=True)] == ["processed"] * 5
    # Each payment is recorded as an attempt, numbered after the invoice's others (none here).
    stripe_invoice_id = state(app, invoices[0].id, event_ids[0])[1].payload["data"]["object"]["id"]
    with app.app_context():
        attempt = db.session.execute(
            select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoices[0].id)
        ).scalar_one()
        assert (
            attempt.number,
            attempt.amount,
            attempt.currency,
            attempt.off_session,
            attempt.status,
            attempt.payment_intent_id,
            attempt.failure_message,
        ) == (1, invoices[0].total, invoices[0].currency, False, "succeeded", stripe_invoice_id, None)
        assert utcnow() - timedelta(minutes=1) < attempt.created_at <= utcnow()


def test_slow_events_end_their_batch_early_and_the_drain_hands_over_when_its_time_is_up(app, make_tenant, monkeypatch):
    import jobs.stripe
    from portal.billing.payments import drain
    from portal.models import AuditEvent

    class SlowClock:
        """Every look at the clock finds 20 s gone: each event is slower than a batch may last."""

        def __init__(self):
            self.seconds = 0.0

        def monotonic(self) -> float:
            self.seconds += 20
            return self.seconds

    monkeypatch.setattr(drain, "time", SlowClock())
    invoices = [open_invoice(app, make_tenant) for _ in range(3)]
    event_ids = store_waiting(app, [invoice_paid(invoice) for invoice in invoices])
    with app.app_context():
        # One event, then the batch lets the others go; then the 60 s are up and a fresh drain
        # job takes over (inline here: it runs within the commit, and hands over in turn).
        assert jobs.stripe.drain_stripe_events() == 1
        paid_order = (
            db.session.execute(
                select(AuditEvent.target_id)
                .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id.in_([i.id for i in invoices]))
                .order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
    assert paid_order == [invoice.id for invoice in invoices]
    assert [state(app, i.id, e)[1].attempts for i, e in zip(invoices, event_ids, strict=True)] == [1, 1, 1]


def test_a_second_drain_skips_the_events_another_drain_holds(committed_app):
    """Two workers at once (PostgreSQL's row locks): each event is processed by one of them."""
    from jobs.stripe import drain_stripe_events
    from portal.access import SYSTEM
    from portal.billing.payments.events import pending
    from portal.infra.transactions import commit, rollback
    from portal.models import Invoice, StripeEvent, utcnow
    from portal.tenants.services import create_tenant

    with committed_app.test_request_context():
        for n in range(3):
            create_tenant(SYSTEM, f"drain_{n}", f"Drain {n}", f"drain-{n}@example.com")
        commit()
        invoices = db.session.execute(select(Invoice).order_by(Invoice.number)).scalars().all()
    event_ids = store_waiting(committed_app, [invoice_paid(invoice) for invoice in invoices])

    with committed_app.app_context():
        [held] = pending(utcnow(), 1)  # the oldest, locked by this "worker" until it ends
        assert held.id == event_ids[0]
        with committed_app.app_context():  # another worker, another session and connection
            assert drain_stripe_events() == 2
        rollback()
        statuses = dict(db.session.execute(select(StripeEvent.id, StripeEvent.status)).all())
        assert [statuses[event_id] for event_id in event_ids] == ["received", "processed", "processed"]
        assert drain_stripe_events() == 1
        assert db.session.get(Invoice, invoices[0].id).status == "paid"
