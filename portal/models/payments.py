"""Stripe's side of payments: inbound webhook events and the attempts to charge an invoice."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

# received: stored, not processed yet; processed / ignored: done; failed: the last try raised.
# A failed event is tried again at next_attempt_at (backoff, a few times); when that is empty
# the portal has given up and waits for the operator's replay.
STRIPE_EVENT_STATUSES = ("received", "processed", "ignored", "failed")
PAYMENT_ATTEMPT_STATUSES = ("pending", "requires_action", "processing", "succeeded", "failed")


class StripeEvent(db.Model):
    """One webhook delivery, stored before it is processed; Stripe's id makes repeats no-ops."""

    __tablename__ = "stripe_events"
    # The drain's "oldest waiting event": processed events pile up for ever, and an index over
    # them all would be walked past them on every pick; this one holds only the waiting ones.
    __table_args__ = (
        Index(
            "ix_stripe_events_waiting",
            "received_at",
            "id",
            postgresql_where=text("status IN ('received', 'failed')"),
            sqlite_where=text("status IN ('received', 'failed')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's evt_...
    type: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    livemode: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures_in_row: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(String(300))
    tenant_id: Mapped[str | None] = mapped_column(String(50), index=True)
    stripe_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PaymentAttempt(db.Model):
    """One try to collect an invoice through a PaymentIntent. (invoice, number) is unique and
    is also the PaymentIntent's idempotency key, so a retried job never charges twice."""

    __tablename__ = "payment_attempts"
    __table_args__ = (UniqueConstraint("invoice_id", "number"),)

    id: Mapped[str] = id_column("pay")
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    off_session: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def idempotency_key(self) -> str:
        return f"invoice-{self.invoice_id}-attempt-{self.number}"
