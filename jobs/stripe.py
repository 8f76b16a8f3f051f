"""Stripe jobs: process one stored webhook event; charge one invoice attempt.

Both are enqueued through portal.tasks.defer, whose RQ ``Retry`` (10 s, 1 min, 5 min) covers
transient failures such as Stripe being unreachable."""

import logging

from portal.extensions import db
from portal.models import Invoice, StripeEvent
from portal.tasks import commit, rollback

log = logging.getLogger(__name__)


def process_stripe_event(event_id: str) -> None:
    """Apply one stored event; safe to run again (a replay, a redelivered job)."""
    from portal.payments.events import process

    event = db.session.get(StripeEvent, event_id)
    if event is None or event.status in ("processed", "ignored"):
        return
    try:
        process(event)
        commit()
    except Exception as error:
        rollback()
        event = db.session.get(StripeEvent, event_id)
        event.attempts += 1
        event.status = "failed"
        event.last_error = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"[:2000]
        commit()
        log.warning("Stripe event %s (%s) failed: %s", event_id, event.type, event.last_error)
        raise  # RQ's Retry (set by portal.tasks.defer) tries again with backoff


def charge_invoice(invoice_id: str, attempt_number: int) -> None:
    """Off-session charge of an invoice with the saved card; the attempt number is part of the
    idempotency key, so a retried job never charges twice."""
    from portal.payments.services import charge

    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or invoice.status != "open" or not invoice.tenant.stripe_payment_method_id:
        return
    try:
        charge(invoice, attempt_number, off_session=True)
        commit()
    except Exception:
        rollback()
        raise  # Stripe unreachable: RQ's Retry tries again, with the same idempotency key

