"""Usage metering: the events the operator's product backend reports, the meters that turn
them into per-feature quantities, and the quota notices already sent (DESIGN §3)."""

import re
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, new_id, utcnow

AGGREGATIONS = ("count", "sum", "unique_count", "max", "min", "avg", "first", "last")


# On PostgreSQL usage_events is partitioned by month of occurred_at (migration 0025,
# portal/usage/partitions.py): usage_events_y2026m12, ..., usage_events_default, and
# usage_events_retired_y2025m01 once retention detached one. They are not model tables.
PARTITION_NAME = re.compile(r"^usage_events_(y\d{4}m\d{2}|default|retired_y\d{4}m\d{2})$")


def is_usage_partition(table_name: str) -> bool:
    return PARTITION_NAME.match(table_name) is not None


class UsageEvent(db.Model):
    """One reported event. On PostgreSQL the table is partitioned by month of ``occurred_at``,
    which must then be in its primary key; ``id`` alone still names an event (ids are random),
    so the mapper keys on it. Idempotency keys are unique per tenant through UsageEventKey
    (a unique index of a partitioned table would have to include the month)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        PrimaryKeyConstraint("id", "occurred_at"),
        # Every meter reads one tenant's events of one name over a time range.
        Index("ix_usage_events_tenant_name_time", "tenant_id", "name", "occurred_at"),
    )
    __mapper_args__ = {"primary_key": ["id"]}  # noqa: RUF012 - SQLAlchemy's declarative attribute

    id: Mapped[str] = mapped_column(String(32), default=lambda: new_id("evt"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6), default=1)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the billing run has invoiced the event's period: from then on it is not deleted.
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"), index=True)


class UsageEventKey(db.Model):
    """``(tenant_id, idempotency_key)`` of every stored event, unique: ingestion inserts here
    first (ON CONFLICT DO NOTHING) and stores only the events whose key this took, so a retried
    or concurrent repeat is stored once, whatever races and whatever its timestamp. Also how an
    event is found by its key. Rows of months that retention retired are deleted with them
    (their events could not be ingested again anyway: they are before every open period)."""

    __tablename__ = "usage_event_keys"
    __table_args__ = (
        # Keys arrive in about time order: a BRIN index (PostgreSQL) finds a retired month's
        # keys for next to nothing per insert.
        Index("ix_usage_event_keys_occurred_at", "occurred_at", postgresql_using="brin"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageRollup(db.Model):
    """One tenant's events of one name in one UTC hour, summed up: maintained with every event
    stored or deleted (portal/usage/rollups.py), so a meter without filter or property reads
    a month as ~720 rows instead of every event. Exact: quantities are decimals, and an event
    counts only when its INSERT actually stored it (a duplicate adds nothing)."""

    __tablename__ = "usage_rollups"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[Decimal] = mapped_column(Numeric(32, 6))
    max: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    min: Mapped[Decimal] = mapped_column(Numeric(20, 6))


class Meter(db.Model):
    """How a plan feature (``key``) is measured from events (seed 003's meter)."""

    __tablename__ = "meters"

    id: Mapped[str] = id_column("meter")
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    event_name: Mapped[str] = mapped_column(String(128))
    aggregation: Mapped[str] = mapped_column(String(20), default="count")
    # A key of the event's properties; None: the event's quantity.
    property: Mapped[str | None] = mapped_column(String(128))
    # Seed 003's filter: {"conditions": [{"criteria": [{"field", "operator", "value"}]}]}.
    filter: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Meter {self.key} {self.aggregation}({self.property or 'quantity'}) of {self.event_name}>"


class QuotaNotice(db.Model):
    """A 90 % or 100 % quota warning sent for one feature and period; the unique constraint
    makes it once, however many ingestions cross the line at the same moment."""

    __tablename__ = "quota_notices"
    __table_args__ = (UniqueConstraint("tenant_id", "feature_key", "period_start", "threshold"),)

    id: Mapped[str] = id_column("qn")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    feature_key: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    threshold: Mapped[int] = mapped_column(Integer)
    used: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    limit: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
