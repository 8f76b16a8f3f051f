"""Outbound webhooks: the endpoints tenants (or the operator) register, the events written in
the same transaction as the change that caused them, and each event's delivery to each
endpoint with its attempts."""

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

DELIVERY_STATES = ("pending", "succeeded", "failed")


class WebhookEndpoint(db.Model):
    """A URL that receives signed events. ``tenant_id`` NULL: the operator's own endpoint,
    which receives every tenant's events (``customer.created`` can reach nobody else).

    The signing secret must be usable to sign, so it is sealed (AES-GCM under the credentials
    keyring), never stored in clear; after a rotation the previous one keeps signing alongside
    until ``previous_secret_expires_at``."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = id_column("we")
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.tenant_id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key_id: Mapped[str] = mapped_column(String(64))
    sealed_previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_key_id: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    secret_hint: Mapped[str] = mapped_column(String(16), default="")
    # Set at the first failed attempt since the last success; five days of that disables it.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_succeeded: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class WebhookEvent(db.Model):
    """One event as sent: the JSON body is fixed when the change commits, so every attempt and
    every endpoint gets the very same bytes (and signature input)."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = id_column("evt")
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """An event on its way to one endpoint: pending until a 2xx (succeeded) or the last retry
    (failed). ``locked_until``: a worker is attempting it; another leaves it alone till then."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = id_column("whd")
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()
    event: Mapped[WebhookEvent] = relationship()
    attempts: Mapped[list["WebhookAttempt"]] = relationship(
        order_by="WebhookAttempt.number", cascade="all, delete-orphan", back_populates="delivery"
    )


class WebhookAttempt(db.Model):
    """One HTTP request of a delivery, as the log shows it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(16), default="automatic")

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempts")
