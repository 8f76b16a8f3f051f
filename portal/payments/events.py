"""Inbound Stripe events (DESIGN §7): stored on arrival, processed by a job.

The job may run twice, late, or out of order: every handler re-reads the Stripe object when
its current state matters, and the services it calls only ever move state forward.
"""

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.access import Actor
from portal.extensions import db
from portal.models import PaymentAttempt, StripeEvent, Tenant, utcnow
from portal.payments import gateway, services

STRIPE = Actor(user=None, label="stripe")


def store(event: dict) -> bool:
    """Insert the event once; False when this Stripe id was already stored (a redelivery)."""
    obj = event["data"]["object"]
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    created = event.get("created")
    values = {
        "id": event["id"], "type": event["type"], "payload": event, "livemode": bool(event.get("livemode")),
        "status": "received", "attempts": 0, "tenant_id": str(metadata.get("tenant_id") or "")[:50] or None,
        "stripe_created_at": datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
        "received_at": utcnow(),
    }
    # ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike): one round trip, where a SAVEPOINT
    # around a plain INSERT took three on every delivery, duplicate or not.
    dialect = db.session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = {"postgresql": postgresql, "sqlite": sqlite}[dialect]
        statement = module.insert(StripeEvent.__table__).values(values).on_conflict_do_nothing(index_elements=["id"])
        return db.session.execute(statement.returning(StripeEvent.__table__.c.id)).first() is not None
    try:
        with db.session.begin_nested():
            db.session.execute(insert(StripeEvent.__table__), values)
    except IntegrityError:
        return False
    return True


def _reread(kind: str, obj: dict):
    """The object as Stripe has it now; the event's copy when Stripe no longer knows it."""
    fetch = {"payment_intent": gateway.retrieve_payment_intent, "setup_intent": gateway.retrieve_setup_intent,
             "customer": gateway.retrieve_customer, "charge": gateway.retrieve_charge}[kind]
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
            select(PaymentAttempt).where(PaymentAttempt.payment_intent_id == intent_id)).scalar_one_or_none()
        invoice = attempt and db.session.get(services.Invoice, attempt.invoice_id)
    if invoice is None and intent_id:  # the refund overtook the payment: its PaymentIntent names the invoice
        invoice = services.invoice_of(_reread("payment_intent", {"id": intent_id}).get("metadata"))
    if invoice is None:
        return "ignored: no invoice of ours for this charge"
    from portal.billing.invoices import record_refund

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
        return services.apply_payment_intent({"id": obj.get("id"), "metadata": obj["metadata"], "status": "succeeded",
                                              "amount": obj.get("amount_paid")}, at)
    return services.apply_payment_intent({"id": obj.get("id"), "metadata": obj["metadata"],
                                          "status": "requires_payment_method",
                                          "last_payment_error": {"message": "The payment failed."}}, at)


def _checkout_completed(obj: dict, at) -> str:
    if obj.get("mode") == "setup" and obj.get("setup_intent"):
        return _setup_intent({"id": obj["setup_intent"] if isinstance(obj["setup_intent"], str)
                              else obj["setup_intent"]["id"]}, at)
    if obj.get("mode") == "payment" and obj.get("payment_status") == "paid":
        intent = obj.get("payment_intent")
        metadata = obj.get("metadata") or {}
        if isinstance(intent, str) and intent:
            return _payment_intent({"id": intent, "metadata": metadata, "status": "succeeded",
                                    "amount": obj.get("amount_total")}, at)
        return services.apply_payment_intent({"id": obj.get("id"), "metadata": metadata, "status": "succeeded",
                                              "amount": obj.get("amount_total")}, at)
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


def process(event: StripeEvent) -> None:
    """Run the event's handler; unknown types are kept and marked ignored."""
    event.attempts += 1
    handler = HANDLERS.get(event.type)
    if handler is None:
        event.status, event.result = "ignored", "not a type the portal acts on"
    else:
        result = handler(event.payload["data"]["object"], utcnow())
        event.status = "ignored" if result.startswith("ignored") else "processed"
        event.result = result[:300]
    event.last_error = None
    event.processed_at = utcnow()


def replay(actor: Actor, event: StripeEvent) -> None:
    """The operator runs a stored event again (after fixing what made it fail, say)."""
    from jobs.stripe import process_stripe_event
    from portal.tasks import defer

    event.status = "received"
    audit.record(actor, "stripe_event.replayed", None, "stripe_event", event.id, type=event.type)
    defer(process_stripe_event, event.id)
