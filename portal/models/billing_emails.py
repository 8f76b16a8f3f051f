"""Billing emails: which ones a tenant wants, and the causes already emailed (DESIGN §6)."""

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow
from portal.models.email import EmailMessage

# Every billing email; all but the receipt (proof of a payment) can be switched off per tenant.
BILLING_EMAIL_KINDS = (
    "invoice_issued",
    "payment_receipt",
    "renewal_upcoming",
    "trial_ending",
    "cancellation_confirmed",
    "plan_changed",
)
OPTIONAL_BILLING_EMAILS = tuple(kind for kind in BILLING_EMAIL_KINDS if kind != "payment_receipt")


class BillingEmailSettings(db.Model):
    """A tenant's choice of billing emails; no row means every one is sent."""

    __tablename__ = "billing_email_settings"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), primary_key=True)
    invoice_issued: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    renewal_upcoming: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    trial_ending: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    cancellation_confirmed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    plan_changed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def wants(self, kind: str) -> bool:
        return kind not in OPTIONAL_BILLING_EMAILS or getattr(self, kind) is not False


class BillingNotice(db.Model):
    """A billing email's cause, recorded in the transaction that sends it: the unique ``key``
    (kind, invoice or subscription, period or instant) makes it once, however often a billing
    run, a job or a Stripe webhook comes back to the same cause."""

    __tablename__ = "billing_notices"

    id: Mapped[str] = id_column("bn")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmailAttachment(db.Model):
    """A file sent with an email (an invoice's PDF). Only for what may be kept: never a secret.
    Either its bytes (``content``) or what draws them at delivery (``source``, e.g.
    ``invoice_pdf:inv_…``): a PDF is drawn only when SMTP sends it, never for the outbox."""

    __tablename__ = "email_attachments"

    id: Mapped[str] = id_column("att")
    message_id: Mapped[str] = mapped_column(ForeignKey("email_messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[EmailMessage] = relationship()
