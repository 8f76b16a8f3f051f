"""Monthly partitions of usage_events on PostgreSQL (migration 0025): created ahead, and
retired after their periods are invoiced. On SQLite the table is not partitioned and every
function here does nothing.

- ``ensure`` creates the partitions of the current month and the next ``ahead`` months (the
  worker's scheduler calls it every day; ``flask --app wsgi usage partitions`` and the
  migration do too). A partition is built beside the table, the rows the DEFAULT partition
  caught for its month are moved into it, and it is attached: ATTACH takes a lock that lets
  ingestion go on (CREATE TABLE ... PARTITION OF would block it).
- ``retire`` (``USAGE_RETENTION_MONTHS``) detaches the monthly partitions that ended more than
  N whole months before the current month, once no subscription that could still invoice
  their events has a period starting before their end. The hourly roll-ups stay, so usage
  totals, the usage page and the quota history keep every month; the events themselves (and
  their idempotency keys) leave. A detached partition is dropped, or kept as a plain table
  ``usage_events_retired_yYYYYmMM`` when ``USAGE_RETENTION_DROP`` is off (to archive, e.g.
  ``pg_dump -t``, and drop by hand).

Each function runs in the caller's transaction; the caller commits.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text

from portal.extensions import db
from portal.models import Subscription, UsageEventKey, UsageRollup

DEFAULT_PARTITION = "usage_events_default"


def month_start(at: datetime) -> datetime:
    """The first instant of ``at``'s UTC month, naive (as the column stores it)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return datetime(at.year, at.month, 1)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1)


def partition_name(month: datetime) -> str:
    return f"usage_events_y{month.year:04d}m{month.month:02d}"


def _month_of(name: str) -> datetime | None:
    tail = name.removeprefix("usage_events_")
    if not (tail.startswith("y") and len(tail) == 8 and tail[5] == "m"):
        return None
    return datetime(int(tail[1:5]), int(tail[6:8]), 1)


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime  # the month's first instant
    end: datetime  # the next month's


def _connection():
    return db.session.connection()


def is_partitioned(connection=None) -> bool:
    connection = connection or _connection()
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('usage_events')")).scalar()
    return kind == "p"


def attached(connection=None) -> list[Partition]:
    """The monthly partitions attached to usage_events, oldest first (not DEFAULT)."""
    connection = connection or _connection()
    if not is_partitioned(connection):
        return []
    names = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass('usage_events')"
        )
    ).scalars()
    months = sorted(month for name in names if (month := _month_of(name)) is not None)
    return [Partition(partition_name(month), month, add_months(month, 1)) for month in months]


def _utc(at: datetime) -> datetime:
    """A naive UTC instant (as the DDL and psycopg give them) as the UTC columns take it."""
    return at.replace(tzinfo=UTC)


def _literal(at: datetime) -> str:
    return at.strftime("'%Y-%m-%d %H:%M:%S'")


def _create(connection, month: datetime) -> str:
    """Build the month's partition beside the table, move what DEFAULT caught of it, attach it."""
    name, end = partition_name(month), add_months(month, 1)
    connection.exec_driver_sql(f"CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    bounds = f"occurred_at >= {_literal(month)} AND occurred_at < {_literal(end)}"
    connection.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE {bounds} RETURNING *) "  # noqa: S608 - names and dates made here
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    # The month's CHECK lets ATTACH skip scanning the new partition; DEFAULT is scanned (it is
    # small: only events of months without a partition land there).
    connection.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds CHECK ({bounds})")
    connection.exec_driver_sql(
        f"ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES FROM ({_literal(month)}) TO ({_literal(end)})"
    )
    connection.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds")
    return name


def ensure(now: datetime, ahead: int = 1) -> list[str]:
    """Create the partitions of ``now``'s month and the ``ahead`` months after it that are
    missing; returns the names created."""
    connection = _connection()
    if not is_partitioned(connection):
        return []
    # One creator at a time (two workers' scheduler ticks, a CLI run): the second waits, then
    # sees the partitions made.
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('usage_events partitions'))")
    have = {partition.start for partition in attached(connection)}
    first = month_start(now)
    return [_create(connection, month) for n in range(ahead + 1) if (month := add_months(first, n)) not in have]


def _still_billable(partition: Partition) -> bool:
    """Could a billing run still invoice events of this month? Yes while a tenant with usage in
    it (read from the roll-ups, not the events) has a subscription not ended whose current
    period starts before the month's end."""
    rollup, subscription = UsageRollup.__table__, Subscription.__table__
    statement = (
        rollup.select()
        .with_only_columns(rollup.c.tenant_id)
        .join(subscription, subscription.c.tenant_id == rollup.c.tenant_id)
        .where(
            rollup.c.hour >= _utc(partition.start),
            rollup.c.hour < _utc(partition.end),
            subscription.c.status != "canceled",
            subscription.c.current_period_start < _utc(partition.end),
        )
        .limit(1)
    )
    return db.session.execute(statement).first() is not None


@dataclass
class Retired:
    name: str
    kept_as: str | None  # the detached table's name, or None when dropped


def retire(now: datetime, months: int, drop: bool) -> tuple[list[Retired], list[str]]:
    """Detach the monthly partitions that ended at least ``months`` whole months before
    ``now``'s month and whose periods are invoiced. Returns (retired, held back: their names)."""
    connection = _connection()
    if months <= 0 or not is_partitioned(connection):
        return [], []
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('usage_events partitions'))")
    cutoff = add_months(month_start(now), -months)
    retired, held = [], []
    keys = UsageEventKey.__table__
    for partition in attached(connection):
        if partition.end > cutoff:
            break
        if _still_billable(partition):
            held.append(partition.name)
            continue
        connection.exec_driver_sql(f"ALTER TABLE usage_events DETACH PARTITION {partition.name}")
        connection.execute(
            keys.delete().where(keys.c.occurred_at >= _utc(partition.start), keys.c.occurred_at < _utc(partition.end))
        )
        if drop:
            connection.exec_driver_sql(f"DROP TABLE {partition.name}")
            retired.append(Retired(partition.name, None))
        else:
            kept = partition.name.replace("usage_events_", "usage_events_retired_")
            connection.exec_driver_sql(f"ALTER TABLE {partition.name} RENAME TO {kept}")
            retired.append(Retired(partition.name, kept))
    return retired, held


def retained_from(connection=None) -> datetime | None:
    """The earliest instant whose events may still be stored, when retention may have removed
    older ones: the first attached month's start, or an older event DEFAULT holds. None when
    the table is not partitioned or has no monthly partition (every event is there)."""
    connection = connection or _connection()
    months = attached(connection)
    if not months:
        return None
    oldest_default = connection.exec_driver_sql(
        f"SELECT min(occurred_at) FROM {DEFAULT_PARTITION}"  # noqa: S608 - a constant name
    ).scalar()
    floor = months[0].start if oldest_default is None else min(months[0].start, month_start(oldest_default))
    return _utc(floor)


__all__ = [
    "DEFAULT_PARTITION",
    "Partition",
    "Retired",
    "add_months",
    "attached",
    "ensure",
    "is_partitioned",
    "month_start",
    "partition_name",
    "retained_from",
    "retire",
]
