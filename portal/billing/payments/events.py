"""Inbound Stripe events (DESIGN §7): stored on arrival, processed by a job.

The job may run twice, late, or out of order: every handler re-reads the Stripe object when
its current state matters, and the services it calls only ever move state forward.
"""

import functools
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, insert, or_, select, text
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.access import Actor
from portal.billing.invoices import record_refund
from portal.billing.payments import gateway, services
from portal.extensions import db
from portal.infra.queues import database_key
from portal.infra.transactions import defer
from portal.models import PaymentAttempt, StripeEvent, Tenant, utcnow

STRIPE = Actor(user=None, label="stripe")


def store(event: dict) -> bool:
    """Insert the event once; False when this Stripe id was already stored (a redelivery)."""
    obj = event["data"]["object"]
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    created = event.get("created")
    values = {
        "id": event["id"],
        "type": event["type"],
        "payload": event,
        "livemode": bool(event.get("livemode")),
        "status": "received",
        "attempts": 0,
        "failures_in_row": 0,
        "tenant_id": str(metadata.get("tenant_id") or "")[:50] or None,
        "stripe_created_at": datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
        "received_at": utcnow(),
    }
    connection = db.session.connection()
    if connection.dialect.name in ("postgresql", "sqlite"):
        return connection.execute(_insert_once(), values).first() is not None
    try:
        with db.session.begin_nested():
            connection.execute(insert(StripeEvent.__table__), values)
    except IntegrityError:
        return False
    return True


_COLUMNS = (
    "id",
    "type",
    "payload",
    "livemode",
    "status",
    "attempts",
    "failures_in_row",
    "tenant_id",
    "stripe_created_at",
    "received_at",
)


@functools.cache
def _insert_once():
    """INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id, the same SQL on PostgreSQL and
    SQLite: one round trip, where a SAVEPOINT around a plain INSERT took three. Written as text
    because SQLAlchemy cannot cache the dialects' ON CONFLICT inserts and compiled one on every
    delivery; the column types still convert the values (JSON, UTC times)."""
    table = StripeEvent.__table__
    return (
        text(
            "INSERT INTO stripe_events (id, type, payload, livemode, status, attempts, failures_in_row, tenant_id, "
            "stripe_created_at, received_at) VALUES (:id, :type, :payload, :livemode, :status, :attempts, "
            ":failures_in_row, :tenant_id, :stripe_created_at, :received_at) ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        .bindparams(*(bindparam(c, type_=table.c[c].type) for c in _COLUMNS))
        .columns(id=table.c.id.type)
    )


def _reread(kind: str, obj: dict):
    """The object as Stripe has it now; the event's copy when Stripe no longer knows it."""
    fetch = {
        "payment_intent": gateway.retrieve_payment_intent,
        "setup_intent": gateway.retrieve_setup_intent,
        "customer": gateway.retrieve_customer,
        "charge": gateway.retrieve_charge,
    }[kind]
    try:
        return fetch(obj["id"])
    except gateway.GatewayUnavailable:
        raise  # transient: the job is retried
    except gateway.GatewayError:
        return obj


def _tenant_by_customer(customer_id) -> Tenant | None:
    if not isinstance(customer_id, str) or not customer_id:
        return None
    return db.session.execute(select(Tenant).where(Tenant.stripe_customer_id == customer_id)).scalars().first()


def _payment_intent(obj: dict, at) -> str:
    return services.apply_payment_intent(_reread("payment_intent", obj), at)


def _setup_intent(obj: dict, at) -> str:
    intent = _reread("setup_intent", obj)
    tenant = _tenant_by_customer(intent.get("customer"))
    if tenant is None:
        return "ignored: no tenant with this customer"
    services.save_card(STRIPE, tenant, intent)
    return f"card {tenant.card_brand} {tenant.card_last4} saved for {tenant.tenant_id}"


def _customer_updated(obj: dict, at) -> str:
    tenant = _tenant_by_customer(obj.get("id"))
    if tenant is None:
        return "ignored: no tenant with this customer"
    return services.sync_customer(tenant, _reread("customer", obj))


def _customer_deleted(obj: dict, at) -> str:
    tenant = _tenant_by_customer(obj.get("id"))
    if tenant is None:
        return "ignored: no tenant with this customer"
    return services.sync_customer(tenant, {**obj, "deleted": True})


def _charge_refunded(obj: dict, at) -> str:
    charge = _reread("charge", obj)
    intent_id = charge.get("payment_intent")
    invoice = services.invoice_of(charge.get("metadata"))
    if invoice is None and intent_id:
        attempt = db.session.execute(
            select(PaymentAttempt).where(PaymentAttempt.payment_intent_id == intent_id)
        ).scalar_one_or_none()
        invoice = attempt and db.session.get(services.Invoice, attempt.invoice_id)
    if invoice is None and intent_id:  # the refund overtook the payment: its PaymentIntent names the invoice
        invoice = services.invoice_of(_reread("payment_intent", {"id": intent_id}).get("metadata"))
    if invoice is None:
        return "ignored: no invoice of ours for this charge"

    changed = record_refund(invoice, int(charge.get("amount_refunded") or 0), charge.get("id", ""))
    return f"invoice {invoice.number} refunded {invoice.amount_refunded}" + ("" if changed else " (no change)")


def _stripe_invoice(obj: dict, at, paid: bool) -> str:
    """Stripe-side invoices are not ours; one that carries our invoice id in its metadata
    reports the payment of ours."""
    intent = obj.get("payment_intent")
    if isinstance(intent, str) and intent:
        return _payment_intent({"id": intent, "metadata": obj.get("metadata") or {}, "status": None}, at)
    invoice = services.invoice_of(obj.get("metadata"))
    if invoice is None:
        return "ignored: not one of our invoices"
    if paid:
        return services.apply_payment_intent(
            {"id": obj.get("id"), "metadata": obj["metadata"], "status": "succeeded", "amount": obj.get("amount_paid")},
            at,
            invoice,
        )
    return services.apply_payment_intent(
        {
            "id": obj.get("id"),
            "metadata": obj["metadata"],
            "status": "requires_payment_method",
            "last_payment_error": {"message": "The payment failed."},
        },
        at,
        invoice,
    )


def _checkout_completed(obj: dict, at) -> str:
    if obj.get("mode") == "setup" and obj.get("setup_intent"):
        return _setup_intent(
            {"id": obj["setup_intent"] if isinstance(obj["setup_intent"], str) else obj["setup_intent"]["id"]}, at
        )
    if obj.get("mode") == "payment" and obj.get("payment_status") == "paid":
        intent = obj.get("payment_intent")
        metadata = obj.get("metadata") or {}
        if isinstance(intent, str) and intent:
            return _payment_intent(
                {"id": intent, "metadata": metadata, "status": "succeeded", "amount": obj.get("amount_total")}, at
            )
        return services.apply_payment_intent(
            {"id": obj.get("id"), "metadata": metadata, "status": "succeeded", "amount": obj.get("amount_total")}, at
        )
    return "ignored: checkout not paid"


HANDLERS = {
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "payment_intent.processing": _payment_intent,
    "payment_intent.requires_action": _payment_intent,
    "payment_intent.canceled": _payment_intent,
    "setup_intent.succeeded": _setup_intent,
    "charge.refunded": _charge_refunded,
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
    "invoice.paid": lambda obj, at: _stripe_invoice(obj, at, paid=True),
    "invoice.payment_succeeded": lambda obj, at: _stripe_invoice(obj, at, paid=True),
    "invoice.payment_failed": lambda obj, at: _stripe_invoice(obj, at, paid=False),
    "checkout.session.completed": _checkout_completed,
}


# After a failed try: wait this long before the next one; then give up (the operator replays).
RETRY_SECONDS = (10, 60, 300)


def pending(now, limit: int) -> list[StripeEvent]:
    """Up to ``limit`` of the oldest events waiting to be processed (new, or failed and due for
    their retry), locked for this transaction; another worker's drain skips them rather than
    waiting."""
    return list(
        db.session.execute(
            select(StripeEvent)
            .where(
                StripeEvent.status.in_(("received", "failed")),
                or_(
                    StripeEvent.status == "received",
                    and_(StripeEvent.next_attempt_at.is_not(None), StripeEvent.next_attempt_at <= now),
                ),
            )
            .order_by(StripeEvent.received_at, StripeEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def preload(events: list[StripeEvent]) -> list:
    """What the events' handlers will look up by primary key, loaded for all of them in one
    query (the invoices their metadata name); returns it, to hold while the events are handled."""
    return services.load_invoices_of(event.payload["data"]["object"].get("metadata") for event in events)


def handle(event: StripeEvent) -> str:
    """Run the event's handler and return what it did; the event itself is left untouched, for
    ``record_success`` or ``record_failure`` once the handler's changes are kept or undone."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return "ignored: not a type the portal acts on"
    return handler(event.payload["data"]["object"], utcnow())


def record_success(event: StripeEvent, result: str, now) -> None:
    """The handler's changes are kept: the event is done (or ignored), its failures forgotten."""
    event.status = "ignored" if result.startswith("ignored") else "processed"
    event.result = result[:300]
    event.attempts += 1
    event.last_error = None
    event.failures_in_row = 0
    event.next_attempt_at = None
    event.processed_at = now


def record_failure(event: StripeEvent, error: Exception, now) -> None:
    """After the handler's changes were rolled back: count the try, keep the error, and set
    when to try again (None once the retries are used up)."""
    event.attempts += 1
    event.failures_in_row += 1
    event.status = "failed"
    event.last_error = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"[:2000]
    retry = event.failures_in_row - 1
    event.next_attempt_at = now + timedelta(seconds=RETRY_SECONDS[retry]) if retry < len(RETRY_SECONDS) else None


def replay(actor: Actor, event: StripeEvent) -> None:
    """The operator runs a stored event again (after fixing what made it fail, say)."""
    event.status = "received"
    event.failures_in_row = 0
    event.next_attempt_at = None
    audit.record(actor, "stripe_event.replayed", None, "stripe_event", event.id, type=event.type)
    wake()


DRAIN_JOB = "jobs.stripe.drain_stripe_events"
# A drain hands over to a fresh job after this long, so a backlog never runs into RQ's
# job timeout and other jobs on the queue get their turn.
DRAIN_SECONDS = 60


def wake() -> None:
    """After the commit, a drain for the events stored in this unit of work (one queued drain
    stands for them all)."""
    defer(DRAIN_JOB, once=drain_once())


def drain_once() -> tuple[str, int]:
    """``defer``'s ``once``: one queued drain stands for every event stored until it starts."""
    return database_key("once:stripe-drain"), DRAIN_SECONDS
