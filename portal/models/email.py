from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow


class EmailMessage(db.Model):
    """Every email the portal sends. Without SMTP this table is the outbox people read."""

    __tablename__ = "email_messages"

    id: Mapped[str] = id_column("msg")
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    to: Mapped[str] = mapped_column(String(254), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    # The bodies hold "[[secret:N]]" where a live link was; the links are sealed here (portal/mail.py)
    # under the credentials key, never in clear, and dropped once SMTP has the message.
    sealed_secrets: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_key_id: Mapped[str | None] = mapped_column(String(16))
    # queued -> sent (SMTP) | outbox (no SMTP configured) | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
