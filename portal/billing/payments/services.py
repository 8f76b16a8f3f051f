"""Saved cards and collecting invoices through Stripe, for the portal, the jobs and webhooks.

Every outcome of a PaymentIntent goes through ``apply_payment_intent``, whoever learns of it
first (the request that confirmed it, the charge job, or the webhook), so each attempt counts
once and a paid invoice is never reopened.
"""

import functools
import logging
from datetime import datetime

from sqlalchemy import bindparam, or_, select, text
from sqlalchemy.orm import joinedload, make_transient_to_detached

from portal import audit
from portal.access import Actor
from portal.billing import invoices as invoice_service
from portal.billing.payments import dunning, gateway
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import defer
from portal.models import Invoice, PaymentAttempt, Tenant, utcnow
from portal.models.base import new_id

log = logging.getLogger(__name__)


def ensure_customer(tenant: Tenant) -> str:
    """The tenant's Stripe customer, created on first use (idempotently, keyed by the tenant)."""
    if not tenant.stripe_customer_id:
        customer = gateway.create_customer(
            tenant.tenant_id, tenant.company_name, tenant.contact_email, idempotency_key=f"customer-{tenant.tenant_id}"
        )
        tenant.stripe_customer_id = customer["id"]
    return tenant.stripe_customer_id


def start_card_setup(tenant: Tenant):
    """A SetupIntent the browser confirms with Stripe.js Elements."""
    return gateway.create_setup_intent(ensure_customer(tenant), tenant.tenant_id)


def setup_intent_for(tenant: Tenant, setup_intent_id: str):
    """The tenant's own SetupIntent; another customer's is simply not found."""
    if not setup_intent_id or not setup_intent_id.startswith("seti_") or len(setup_intent_id) > 255:
        raise ValidationFailed("That card setup is unknown.")
    try:
        intent = gateway.retrieve_setup_intent(setup_intent_id)
    except gateway.GatewayUnavailable:
        raise
    except gateway.GatewayError:
        raise ValidationFailed("That card setup is unknown.") from None
    if not tenant.stripe_customer_id or intent.get("customer") != tenant.stripe_customer_id:
        raise ValidationFailed("That card setup is unknown.")
    return intent


def save_card(actor: Actor, tenant: Tenant, setup_intent) -> Tenant:
    """Make the SetupIntent's card the tenant's card: attached, the default, shown by brand and
    last 4. The card it replaces is detached, and the open invoices are charged to the new one.
    Safe to repeat (the webhook does it too): a card already on file changes nothing."""
    if setup_intent.get("status") != "succeeded" or not setup_intent.get("payment_method"):
        raise ValidationFailed("The card was not confirmed. Enter it again.")
    payment_method_id = setup_intent["payment_method"]
    if isinstance(payment_method_id, dict):
        payment_method_id = payment_method_id["id"]
    if tenant.stripe_payment_method_id == payment_method_id:
        return tenant
    method = gateway.retrieve_payment_method(payment_method_id)
    if method.get("customer") != tenant.stripe_customer_id:
        # Stripe attaches it when the SetupIntent names the customer; an emulator may not.
        method = gateway.attach_payment_method(payment_method_id, tenant.stripe_customer_id)
    gateway.set_default_payment_method(tenant.stripe_customer_id, payment_method_id)
    previous = tenant.stripe_payment_method_id
    _show_card(tenant, method)
    if previous:
        _detach_quietly(previous)
    audit.record(
        actor,
        "payment_method.saved",
        tenant,
        "payment_method",
        payment_method_id,
        brand=tenant.card_brand,
        last4=tenant.card_last4,
        replaced=previous,
    )
    charge_open_invoices(tenant)
    return tenant


def charge_open_invoices(tenant: Tenant) -> list[Invoice]:
    """A card was just saved: each open invoice is charged to it off-session, oldest first, by
    the charge job (after the commit, so Stripe is not called inside this transaction). An
    invoice whose payment is already under way is left to it. The attempt number is taken now
    and is part of the idempotency key, so the job charges once however often it runs; the
    invoice's scheduled retry is claimed, as a due retry is, until the outcome sets the next.
    Returns the invoices handed to the job."""
    due = [
        invoice
        for invoice in db.session.execute(
            select(Invoice)
            .where(Invoice.tenant_id == tenant.tenant_id, Invoice.status == "open")
            .order_by(Invoice.issued_at, Invoice.number)
        ).scalars()
        if invoice.amount_due > 0
    ]
    if not due:
        return []
    latest = {
        attempt.invoice_id: attempt
        for attempt in db.session.execute(
            select(PaymentAttempt)
            .where(PaymentAttempt.invoice_id.in_([invoice.id for invoice in due]))
            .order_by(PaymentAttempt.number)
        ).scalars()
    }
    charged = []
    for invoice in due:
        attempt = latest.get(invoice.id)
        if attempt is not None and attempt.status in invoice_service.ATTEMPTS_UNDER_WAY:
            continue
        invoice.next_payment_attempt_at = None
        defer("jobs.stripe.charge_invoice", invoice.id, (attempt.number if attempt else 0) + 1)
        charged.append(invoice)
    return charged


def _show_card(tenant: Tenant, method) -> None:
    card = method.get("card") or {}
    tenant.stripe_payment_method_id = method["id"]
    tenant.card_brand = str(card.get("brand") or "card")[:30]
    tenant.card_last4 = str(card.get("last4") or "")[:4] or None
    tenant.card_exp_month = card.get("exp_month")
    tenant.card_exp_year = card.get("exp_year")


def _forget_card(tenant: Tenant) -> None:
    tenant.stripe_payment_method_id = None
    tenant.card_brand = tenant.card_last4 = None
    tenant.card_exp_month = tenant.card_exp_year = None


def _detach_quietly(payment_method_id: str) -> None:
    try:
        gateway.detach_payment_method(payment_method_id)
    except gateway.GatewayError as error:  # already gone at Stripe: nothing left to remove
        log.info("Detaching %s: %s", payment_method_id, error.message)


def remove_card(actor: Actor, tenant: Tenant) -> None:
    if not tenant.stripe_payment_method_id:
        raise Conflict("There is no card on file.")
    removed = tenant.stripe_payment_method_id
    _detach_quietly(removed)
    gateway.set_default_payment_method(tenant.stripe_customer_id, None)
    _forget_card(tenant)
    audit.record(actor, "payment_method.removed", tenant, "payment_method", removed)


def sync_customer(tenant: Tenant, customer) -> str:
    """customer.updated / customer.deleted: follow Stripe's idea of the default card."""
    if customer.get("deleted"):
        tenant.stripe_customer_id = None
        _forget_card(tenant)
        return "customer deleted: card forgotten"
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if isinstance(default, dict):
        default = default.get("id")
    if not default:
        if tenant.stripe_payment_method_id:
            _forget_card(tenant)
            return "default card removed at Stripe"
        return "no change"
    if default == tenant.stripe_payment_method_id:
        return "no change"
    _show_card(tenant, gateway.retrieve_payment_method(default))
    return f"default card is now {tenant.card_brand} {tenant.card_last4}"


# --- paying invoices -------------------------------------------------------------------------


def attempt_for(invoice: Invoice, number: int) -> PaymentAttempt | None:
    return db.session.execute(
        select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice.id, PaymentAttempt.number == number)
    ).scalar_one_or_none()


def latest_attempt(invoice: Invoice) -> PaymentAttempt | None:
    return db.session.execute(
        select(PaymentAttempt)
        .where(PaymentAttempt.invoice_id == invoice.id)
        .order_by(PaymentAttempt.number.desc())
        .limit(1)
    ).scalar_one_or_none()


def charge(invoice: Invoice, number: int, off_session: bool, at: datetime | None = None) -> PaymentAttempt | None:
    """Attempt ``number`` at collecting ``invoice`` with the saved card. The idempotency key is
    the invoice and the attempt number: a repeated call (a retried job) charges once."""
    at = at or utcnow()
    if invoice.status != "open" or invoice.amount_due <= 0:
        return None
    tenant = invoice.tenant
    if not tenant.stripe_payment_method_id or not tenant.stripe_customer_id:
        raise Conflict("Add a card first: there is no card on file to pay with.")
    attempt = attempt_for(invoice, number)
    if attempt is not None and attempt.status != "pending":
        return attempt  # this attempt already happened
    if attempt is None:
        attempt = PaymentAttempt(
            invoice_id=invoice.id,
            tenant_id=tenant.tenant_id,
            number=number,
            amount=invoice.amount_due,
            currency=invoice.currency,
            off_session=off_session,
        )
        db.session.add(attempt)
        db.session.flush()
    try:
        intent = gateway.create_payment_intent(
            amount=attempt.amount,
            currency=attempt.currency,
            customer_id=tenant.stripe_customer_id,
            payment_method_id=tenant.stripe_payment_method_id,
            metadata={"invoice_id": invoice.id, "tenant_id": tenant.tenant_id, "attempt": str(number)},
            off_session=off_session,
            idempotency_key=attempt.idempotency_key,
        )
    except gateway.PaymentDeclined as declined:
        if declined.payment_intent_id:
            attempt.payment_intent_id = declined.payment_intent_id
        _attempt_failed(invoice, attempt, declined.message, at)
        return attempt
    if intent.get("status") == "succeeded":
        # Paid only when Stripe's webhook says so (the single source of truth for money received).
        attempt.payment_intent_id = intent["id"]
        attempt.status = "processing"
    elif off_session and intent.get("status") == "requires_action":
        _needs_the_customer(invoice, attempt, intent["id"], at)
    else:
        apply_payment_intent(intent, at)
    return attempt


AUTHENTICATION_NEEDED = (
    "Your bank asked you to confirm this payment, which it cannot do while you are away. "
    "Pay the invoice from the portal, where your bank can ask you."
)


def _needs_the_customer(invoice: Invoice, attempt: PaymentAttempt, payment_intent_id: str, at: datetime) -> None:
    """An off-session charge the bank wants authenticated: nobody is there to do it, so it
    counts as failed (past due, owner and admins emailed with the pay link, retried on the
    dunning schedule) and Pay now, on-session, lets the bank ask. The PaymentIntent is cancelled
    so that it cannot be completed later beside the one Pay now makes."""
    attempt.payment_intent_id = payment_intent_id
    _attempt_failed(invoice, attempt, AUTHENTICATION_NEEDED, at)
    try:
        gateway.cancel_payment_intent(payment_intent_id)
    except gateway.GatewayError as error:
        # Left in requires_action: its client secret is never shown (the attempt failed), and
        # Stripe cancels it after a while; the dunning goes on either way.
        log.warning(
            "could not cancel PaymentIntent %s after it asked for authentication off-session: %s",
            payment_intent_id,
            error.message,
        )


def _attempt_failed(invoice: Invoice, attempt: PaymentAttempt, message: str, at: datetime) -> None:
    if attempt.status in ("failed", "succeeded"):
        return
    attempt.status = "failed"
    attempt.failure_message = (message or "The payment failed.")[:500]
    dunning.payment_failed(invoice, attempt.failure_message, at)


def _find_attempt(invoice: Invoice, intent) -> PaymentAttempt:
    """The attempt that ``intent`` is the outcome of: the one carrying it, else the invoice's
    attempt its metadata numbers, else a new one (a PaymentIntent made elsewhere: the Stripe
    dashboard, say, or a Stripe invoice)."""
    number = str((intent.get("metadata") or {}).get("attempt") or "")
    if not number.isdigit() and isinstance(intent.get("id"), str) and intent["id"]:
        attempt = _new_attempt_unless_carried(invoice, intent)
        if attempt is not None:
            return attempt
    # One query for the attempt with this PaymentIntent and the invoice's attempts (to match
    # the metadata's attempt number, or to number a new one).
    candidates = (
        db.session.execute(
            select(PaymentAttempt).where(
                or_(PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.invoice_id == invoice.id)
            )
        )
        .scalars()
        .all()
    )
    ours = [candidate for candidate in candidates if candidate.invoice_id == invoice.id]
    attempt = next((candidate for candidate in candidates if candidate.payment_intent_id == intent["id"]), None)
    if attempt is None and number.isdigit():
        attempt = next((candidate for candidate in ours if candidate.number == int(number)), None)
    if attempt is None:
        attempt = PaymentAttempt(
            invoice_id=invoice.id,
            tenant_id=invoice.tenant_id,
            number=max((candidate.number for candidate in ours), default=0) + 1,
            amount=intent.get("amount") or 0,
            currency=invoice.currency,
            off_session=False,
        )
        db.session.add(attempt)
    attempt.payment_intent_id = intent["id"]
    return attempt


# The PaymentIntent statuses an attempt takes as they are. A failure is counted by
# _attempt_failed instead, from pending (what any other status leaves a new attempt at).
_INTENT_STATUSES_TAKEN = ("succeeded", "requires_action", "processing")
_NEW_ATTEMPT_COLUMNS = (
    "id",
    "invoice_id",
    "tenant_id",
    "amount",
    "currency",
    "off_session",
    "status",
    "payment_intent_id",
    "created_at",
    "updated_at",
)


def _new_attempt_unless_carried(invoice: Invoice, intent) -> PaymentAttempt | None:
    """A new attempt of ``invoice`` for ``intent``, numbered after the invoice's others; None
    when an attempt (of any invoice) already carries this PaymentIntent. One statement where
    looking first took two (every invoice.paid webhook comes this way)."""
    connection = db.session.connection()
    if connection.dialect.name not in ("postgresql", "sqlite"):
        return None
    db.session.flush()  # attempts still pending in the session count for the number
    now = utcnow()
    values = {
        "id": new_id("pay"),
        "invoice_id": invoice.id,
        "tenant_id": invoice.tenant_id,
        "amount": intent.get("amount") or 0,
        "currency": invoice.currency,
        "off_session": False,
        "status": intent.get("status") if intent.get("status") in _INTENT_STATUSES_TAKEN else "pending",
        "payment_intent_id": intent["id"],
        "created_at": now,
        "updated_at": now,
    }
    number = connection.execute(_insert_attempt_unless_carried(), values).scalar()
    if number is None:
        return None
    attempt = PaymentAttempt(**values, number=number, failure_message=None)
    make_transient_to_detached(attempt)  # stored already, every column set: nothing to reload
    db.session.add(attempt)
    return attempt


@functools.cache
def _insert_attempt_unless_carried():
    """INSERT ... SELECT the next number ... ON CONFLICT (payment_intent_id) DO NOTHING, the same
    SQL on PostgreSQL and SQLite; text, as events._insert_once, so it is compiled once."""
    table = PaymentAttempt.__table__
    return (
        text(
            "INSERT INTO payment_attempts (id, invoice_id, tenant_id, number, amount, currency, off_session, status, "
            "payment_intent_id, created_at, updated_at) "
            "SELECT :id, :invoice_id, :tenant_id, COALESCE(MAX(number), 0) + 1, :amount, :currency, :off_session, "
            ":status, :payment_intent_id, :created_at, :updated_at FROM payment_attempts WHERE invoice_id = :invoice_id "
            "ON CONFLICT (payment_intent_id) DO NOTHING RETURNING number"
        )
        .bindparams(*(bindparam(c, type_=table.c[c].type) for c in _NEW_ATTEMPT_COLUMNS))
        .columns(number=table.c.number.type)
    )


# Marking an invoice paid (or failed) touches its tenant and subscription too: one query, not three.
_WITH_TENANT_AND_SUBSCRIPTION = (joinedload(Invoice.tenant), joinedload(Invoice.subscription))


def _invoice_id(metadata) -> str | None:
    invoice_id = metadata.get("invoice_id") if isinstance(metadata, dict) else None
    return invoice_id if isinstance(invoice_id, str) and invoice_id and len(invoice_id) <= 32 else None


def invoice_of(metadata: dict | None) -> Invoice | None:
    """Our invoice named by a Stripe object's metadata, only if the tenant matches too."""
    invoice_id = _invoice_id(metadata)
    if invoice_id is None:
        return None
    invoice = db.session.get(Invoice, invoice_id, options=_WITH_TENANT_AND_SUBSCRIPTION)
    if invoice is None or (metadata.get("tenant_id") and invoice.tenant_id != metadata["tenant_id"]):
        return None
    return invoice


def load_invoices_of(metadatas) -> list[Invoice]:
    """``invoice_of``'s invoices for many Stripe objects in one query, into the session, where
    ``invoice_of`` then finds them without a query of its own. The session keeps them only as
    long as something else does: hold the list while they are needed."""
    invoice_ids = {invoice_id for metadata in metadatas if (invoice_id := _invoice_id(metadata))}
    if not invoice_ids:
        return []
    return list(
        db.session.execute(select(Invoice).options(*_WITH_TENANT_AND_SUBSCRIPTION).where(Invoice.id.in_(invoice_ids)))
        .unique()
        .scalars()
    )


def apply_payment_intent(intent, at: datetime | None = None, invoice: Invoice | None = None) -> str:
    """Bring our invoice in line with the PaymentIntent's current state; returns what happened.
    ``invoice``: the one its metadata names, when the caller has already loaded it."""
    at = at or utcnow()
    invoice = invoice or invoice_of(intent.get("metadata"))
    if invoice is None:
        return "ignored: no invoice of ours in its metadata"
    attempt = _find_attempt(invoice, intent)
    status = intent.get("status")
    # A new attempt was stored with its status; assigning it again would still cost a flush.
    # A failed attempt stays failed unless the money arrived after all.
    if (
        status in _INTENT_STATUSES_TAKEN
        and attempt.status != status
        and (attempt.status != "failed" or status == "succeeded")
    ):
        attempt.status = status
    if status == "succeeded":
        amount = intent.get("amount_received") or intent.get("amount") or invoice.total
        if invoice_service.record_card_payment(invoice, amount, intent["id"], at):  # ends its dunning too
            return f"invoice {invoice.number} paid"
        return f"invoice {invoice.number} already {invoice.status}"
    if status == "requires_action":
        return f"invoice {invoice.number}: waiting for the customer's authentication"
    if status == "processing":
        return f"invoice {invoice.number}: payment processing"
    if status == "canceled" or (status == "requires_payment_method" and intent.get("last_payment_error")):
        error = intent.get("last_payment_error") or {}
        already = attempt.status == "failed"
        _attempt_failed(invoice, attempt, error.get("message") or f"The payment was {status}.", at)
        return f"invoice {invoice.number}: payment failed" + (" (already counted)" if already else "")
    return f"invoice {invoice.number}: payment is {status}"


def pay_now(invoice: Invoice) -> PaymentAttempt:
    """The customer pays an open invoice with the card on file (on-session: 3-D Secure may follow)."""
    if invoice.status != "open" or invoice.amount_due <= 0:
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}; there is nothing to pay.")
    pending = latest_attempt(invoice)
    if pending is not None and pending.status in ("pending", "processing"):
        raise Conflict("A payment of this invoice is already under way.")
    return charge(invoice, dunning.next_attempt_number(invoice), off_session=False)


def charge_after_issue(invoice: Invoice) -> None:
    """Billing runs: charge a newly issued invoice off-session when a card is on file, from a
    job so the run's transaction is not held during the call to Stripe."""
    if invoice.status == "open" and invoice.tenant.stripe_payment_method_id and gateway.configured():
        defer("jobs.stripe.charge_invoice", invoice.id, 1)
