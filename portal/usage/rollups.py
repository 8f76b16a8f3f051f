"""Hourly roll-ups of usage events (``usage_rollups``): what a meter without filter or property
reads instead of the events themselves, so a month costs ~720 rows whatever the volume.

Kept exact, in the transaction that changes the events:

- ``add`` after an INSERT ... ON CONFLICT DO NOTHING, with the rows that INSERT reported as
  stored (a duplicate adds nothing), as one INSERT ... ON CONFLICT DO UPDATE of the hours they
  fall in. Ingestion on PostgreSQL does the same inside its INSERT (``ADD_STORED_POSTGRESQL``). Concurrent ingestions into one hour serialise on that roll-up row until they commit;
  rows are sent in key order, so two batches cannot deadlock on each other.
- events added, changed or deleted through the ORM's unit of work (``delete-by-refs``) recompute
  their hours from the events, after locking those roll-up rows (see ``recompute``).
- ``rebuild`` recomputes everything, for events written behind the application's back
  (COPY, psql): ``flask --app wsgi usage rebuild-rollups``.

A window [start, end) is read as its whole hours from the roll-ups plus, from the events, the
partial hours at either edge (a billing period starting at 14:23 reads 14:23-15:00 from events).
"""

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, delete, event, func, inspect, literal, select, text, union_all
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.infra import cache as key_cache
from portal.models import UsageEvent, UsageRollup
from portal.usage import partitions

HOUR = timedelta(hours=1)
# Meters the roll-ups can answer: no filter, no property, and one of these aggregations.
AGGREGATIONS = ("count", "sum", "max", "min", "avg")
ZERO = Decimal(0)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: datetime) -> datetime:
    floor = hour_of(at)
    return floor if floor == at else floor + HOUR


def _dialect(connection) -> str:
    return connection.dialect.name


def _insert(connection):
    if _dialect(connection) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(UsageRollup.__table__)


@dataclass
class Bucket:
    count: int = 0
    total: Decimal = ZERO
    max: Decimal | None = None
    min: Decimal | None = None

    def add(self, count: int, total: Decimal, high: Decimal, low: Decimal) -> None:
        self.count += count
        self.total += total
        self.max = high if self.max is None or high > self.max else self.max
        self.min = low if self.min is None or low < self.min else self.min

    def value(self, aggregation: str) -> Decimal:
        if not self.count:
            return ZERO
        if aggregation == "count":
            return Decimal(self.count)
        if aggregation == "sum":
            return self.total
        if aggregation == "max":
            return self.max
        if aggregation == "min":
            return self.min
        return self.total / self.count  # avg


# --- keeping them -------------------------------------------------------------------------


def add(rows: Iterable[dict], connection=None) -> None:
    """Count freshly stored events (dicts with tenant_id, name, occurred_at, quantity)."""
    buckets: dict[tuple, Bucket] = {}
    for row in rows:
        quantity = Decimal(row["quantity"])
        key = (row["tenant_id"], row["name"], hour_of(row["occurred_at"]))
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = Bucket(1, quantity, quantity, quantity)
        else:
            bucket.add(1, quantity, quantity, quantity)
    if not buckets:
        return
    connection = connection or db.session.connection()
    values = [
        {"tenant_id": t, "name": n, "hour": h, "count": b.count, "total": b.total, "max": b.max, "min": b.min}
        for (t, n, h), b in sorted(buckets.items())
    ]
    # A list is sent as one executemany, in the order given (key order: see the module's notes).
    connection.execute(_upsert(connection), values if len(values) > 1 else values[0])


_ADD_ON_CONFLICT = (
    "ON CONFLICT (tenant_id, name, hour) DO UPDATE SET count = usage_rollups.count + excluded.count, "
    "total = usage_rollups.total + excluded.total, max = {greatest}(usage_rollups.max, excluded.max), "
    "min = {least}(usage_rollups.min, excluded.min)"
)
_UPSERT = (
    "INSERT INTO usage_rollups (tenant_id, name, hour, count, total, max, min) "
    "VALUES (:tenant_id, :name, :hour, :count, :total, :max, :min) " + _ADD_ON_CONFLICT
)
# The same, fed by a data-modifying CTE ``stored`` (tenant_id, name, occurred_at, quantity) of the
# events an INSERT just stored: ingestion on PostgreSQL stores events and their roll-ups in one
# statement (one round trip), hours in key order like ``add``.
ADD_STORED_POSTGRESQL = (
    "INSERT INTO usage_rollups (tenant_id, name, hour, count, total, max, min) "  # noqa: S608 - constant text
    "SELECT tenant_id, name, date_trunc('hour', occurred_at), count(*), sum(quantity), max(quantity), "
    "min(quantity) FROM stored GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
    + _ADD_ON_CONFLICT.format(greatest="greatest", least="least")
)


@functools.cache
def _upsert_for(dialect: str):
    """INSERT ... ON CONFLICT DO UPDATE adding to the hour's row. Text, because SQLAlchemy
    compiles the dialects' ON CONFLICT constructs anew on every execution (one per event
    ingested); the column types still convert the values."""
    greatest, least = ("greatest", "least") if dialect == "postgresql" else ("max", "min")
    table = UsageRollup.__table__
    return text(_UPSERT.format(greatest=greatest, least=least)).bindparams(
        *(
            bindparam(name, type_=table.c[name].type)
            for name in ("tenant_id", "name", "hour", "count", "total", "max", "min")
        )
    )


def _upsert(connection):
    return _upsert_for(_dialect(connection))


def recompute(keys: Iterable[tuple[str, str, datetime]], connection=None) -> None:
    """Recompute these (tenant, name, hour) roll-ups from the events.

    The roll-up rows are locked first: whoever added to them before has committed once the lock
    is ours, so the next statement (a fresh snapshot, under READ COMMITTED) sees their events;
    whoever adds after waits for our commit and adds on top of what we write."""
    connection = connection or db.session.connection()
    keys = sorted(set(keys))
    if not keys:
        return
    table, events = UsageRollup.__table__, UsageEvent.__table__
    for tenant_id, name, hour in keys:
        where = (table.c.tenant_id == tenant_id, table.c.name == name, table.c.hour == hour)
        connection.execute(select(table.c.count).where(*where).with_for_update())
        count, total, high, low = connection.execute(
            select(
                func.count(), func.sum(events.c.quantity), func.max(events.c.quantity), func.min(events.c.quantity)
            ).where(
                events.c.tenant_id == tenant_id,
                events.c.name == name,
                events.c.occurred_at >= hour,
                events.c.occurred_at < hour + HOUR,
            )
        ).one()
        connection.execute(delete(table).where(*where))
        if count:
            connection.execute(
                _insert(connection).values(
                    tenant_id=tenant_id, name=name, hour=hour, count=count, total=total, max=high, min=low
                )
            )


def rebuild(connection=None) -> int:
    """Every roll-up recomputed from the events; returns the number of roll-up rows."""
    connection = connection or db.session.connection()
    events = UsageEvent.__table__
    hour = (
        func.date_trunc("hour", events.c.occurred_at)
        if _dialect(connection) == "postgresql"
        else func.strftime("%Y-%m-%d %H:00:00.000000", events.c.occurred_at)
    )

    key_cache.note_usage_changed(db.session, {key_cache.ALL})  # every tenant's usage may read differently now
    # Months whose events retention retired keep their roll-ups: they are all that is left.
    floor = partitions.retained_from(connection)
    rollups, source = (
        delete(UsageRollup.__table__),
        select(
            events.c.tenant_id,
            events.c.name,
            hour,
            func.count(),
            func.sum(events.c.quantity),
            func.max(events.c.quantity),
            func.min(events.c.quantity),
        ),
    )
    if floor is not None:
        rollups = rollups.where(UsageRollup.__table__.c.hour >= floor)
        source = source.where(events.c.occurred_at >= floor)
    connection.execute(rollups)
    connection.execute(
        UsageRollup.__table__.insert().from_select(
            ["tenant_id", "name", "hour", "count", "total", "max", "min"],
            source.group_by(events.c.tenant_id, events.c.name, hour),
        )
    )
    return connection.execute(select(func.count()).select_from(UsageRollup.__table__)).scalar()


# --- the ORM's unit of work ---------------------------------------------------------------


_EVENT_COLUMNS = ("tenant_id", "name", "occurred_at", "quantity")


def _before_flush(session, _context, _instances) -> None:
    """Note the hours of events about to be deleted or changed (their old values, which the
    flush forgets) and the events about to be inserted."""
    touched = session.info.setdefault("usage_rollup_touched", set())
    added = session.info.setdefault("usage_rollup_added", [])
    for obj in session.deleted:
        if isinstance(obj, UsageEvent):
            touched.add((obj.tenant_id, obj.name, hour_of(obj.occurred_at)))
    for obj in session.dirty:
        if isinstance(obj, UsageEvent) and session.is_modified(obj):
            state = inspect(obj)
            if any(state.attrs[c].history.has_changes() for c in _EVENT_COLUMNS):
                old = {c: (state.attrs[c].history.deleted or [getattr(obj, c)])[0] for c in _EVENT_COLUMNS}
                touched.add((old["tenant_id"], old["name"], hour_of(old["occurred_at"])))
                touched.add((obj.tenant_id, obj.name, hour_of(obj.occurred_at)))
    added.extend(obj for obj in session.new if isinstance(obj, UsageEvent))


def _after_flush_postexec(session, _context) -> None:
    touched = session.info.pop("usage_rollup_touched", set())
    added = session.info.pop("usage_rollup_added", [])
    if not touched and not added:
        return
    connection = session.connection()
    add(
        (
            {c: getattr(obj, c) for c in _EVENT_COLUMNS}
            for obj in added
            if (obj.tenant_id, obj.name, hour_of(obj.occurred_at)) not in touched
        ),
        connection,
    )
    recompute(touched, connection)


def _after_soft_rollback(session, _previous) -> None:
    session.info.pop("usage_rollup_touched", None)
    session.info.pop("usage_rollup_added", None)


def register_session_hooks() -> None:
    """On every session (the app's and the jobs'); idempotent."""
    for name, hook in (
        ("before_flush", _before_flush),
        ("after_flush_postexec", _after_flush_postexec),
        ("after_soft_rollback", _after_soft_rollback),
    ):
        if not event.contains(Session, name, hook):
            event.listen(Session, name, hook)


# --- reading them -------------------------------------------------------------------------


def serves(aggregation: str) -> bool:
    return aggregation in AGGREGATIONS


def _edges(start: datetime | None, end: datetime) -> tuple[datetime | None, datetime, list]:
    """(first whole hour or None, end of the last whole hour, partial windows to read from events)."""
    high = hour_of(end)
    low = _ceil_hour(start) if start is not None else None
    if low is not None and low >= high:
        return None, high, [(start, end)]  # no whole hour: the events only
    partial = []
    if start is not None and start < low:
        partial.append((start, low))
    if high < end:
        partial.append((high, end))
    return low, high, partial


def _event_window(statement, tenant_id: str, name: str, start: datetime, end: datetime):
    return statement.where(
        UsageEvent.tenant_id == tenant_id,
        UsageEvent.name == name,
        UsageEvent.occurred_at >= start,
        UsageEvent.occurred_at < end,
    )


_statements: dict[tuple, object] = {}


def _value_statement(rolled: str | None, edges: int):
    """The statement for one shape of window (``rolled``: None, "to" or "between" for the
    roll-ups' part; ``edges``: how many partial hours), built once: its parameters are bound
    per call, so SQLAlchemy neither rebuilds nor re-keys it on every entitlement check."""
    shape = (rolled, edges)
    statement = _statements.get(shape)
    if statement is not None:
        return statement
    tenant, name = bindparam("tenant_id"), bindparam("event_name")
    parts = []
    if rolled is not None:
        part = select(
            func.sum(UsageRollup.count).label("c"),
            func.sum(UsageRollup.total).label("t"),
            func.max(UsageRollup.max).label("hi"),
            func.min(UsageRollup.min).label("lo"),
        ).where(
            UsageRollup.tenant_id == tenant,
            UsageRollup.name == name,
            UsageRollup.hour < bindparam("high", type_=UsageRollup.hour.type),
        )
        if rolled == "between":
            part = part.where(UsageRollup.hour >= bindparam("low", type_=UsageRollup.hour.type))
        parts.append(part)
    for n in range(edges):
        parts.append(
            select(
                func.count().label("c"),
                func.sum(UsageEvent.quantity).label("t"),
                func.max(UsageEvent.quantity).label("hi"),
                func.min(UsageEvent.quantity).label("lo"),
            ).where(
                UsageEvent.tenant_id == tenant,
                UsageEvent.name == name,
                UsageEvent.occurred_at >= bindparam(f"edge{n}_start", type_=UsageEvent.occurred_at.type),
                UsageEvent.occurred_at < bindparam(f"edge{n}_end", type_=UsageEvent.occurred_at.type),
            )
        )
    both = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    statement = _statements[shape] = select(
        func.coalesce(func.sum(both.c.c), literal(0)), func.sum(both.c.t), func.max(both.c.hi), func.min(both.c.lo)
    )
    return statement


def value(aggregation: str, tenant_id: str, event_name: str, start: datetime | None, end: datetime) -> Decimal:
    """count/sum/max/min/avg of the quantities of ``event_name`` events in [start, end), in one
    statement: whole hours from the roll-ups, the edges' partial hours from the events."""
    low, high, partial = _edges(start, end)
    rolled = None if low is None and start is not None else "between" if low is not None else "to"
    params = {"tenant_id": tenant_id, "event_name": event_name, "high": high, "low": low}
    for n, (edge_start, edge_end) in enumerate(partial):
        params[f"edge{n}_start"], params[f"edge{n}_end"] = edge_start, edge_end
    # On the connection: a plain Core read needs none of the ORM's execution machinery.
    count, total, high_value, low_value = (
        db.session.connection().execute(_value_statement(rolled, len(partial)), params).one()
    )
    if not count:
        return ZERO
    bucket = Bucket(int(count), Decimal(total), Decimal(high_value), Decimal(low_value))
    return bucket.value(aggregation)


def values_many(aggregation: str, windows: list[tuple[str, str, datetime | None, datetime]]) -> list[Decimal] | None:
    """``value`` for many (tenant_id, event_name, start, end) windows in one statement, in their
    order (a billing run's batch reads its subscriptions' closed periods so). PostgreSQL only
    (the windows go as JSON, joined to the tables); None elsewhere, for the caller to ask one
    by one."""
    if not windows or db.engine.dialect.name != "postgresql":
        return None
    rolled: list[dict] = []
    edges: list[dict] = []
    for k, (tenant_id, event_name, start, end) in enumerate(windows):
        low, high, partial = _edges(start, end)
        if low is not None or start is None:
            rolled.append(_window_row(k, tenant_id, event_name, low or _EPOCH, high))
        edges += [_window_row(k, tenant_id, event_name, edge_start, edge_end) for edge_start, edge_end in partial]
    params = {"rolled": json.dumps(rolled), "edges": json.dumps(edges)}
    found = {
        k: Bucket(int(count), Decimal(total), Decimal(high), Decimal(low))
        for k, count, total, high, low in db.session.connection().execute(_VALUES_MANY, params)
        if count
    }
    return [found[k].value(aggregation) if k in found else ZERO for k in range(len(windows))]


def _window_row(k: int, tenant_id: str, event_name: str, low: datetime, high: datetime) -> dict:
    return {
        "k": k,
        "tenant_id": tenant_id,
        "name": event_name,
        "low": _naive(low).isoformat(),
        "high": _naive(high).isoformat(),
    }


# One text whatever the number of windows, so it is parsed and prepared once. The windows go
# as one JSON array each: as arrays to ``unnest`` (the previous way) psycopg dumped and escaped
# every element in Python, 31 µs of client CPU per five-value row against 8 µs as JSON.
_WINDOWS = (
    "json_to_recordset(CAST(:{p} AS json)) AS w (k integer, tenant_id text, name text, low timestamp, high timestamp)"
)
_VALUES_MANY = text(
    "SELECT k, sum(c), sum(t), max(hi), min(lo) FROM ("  # noqa: S608 - constant text, values bound
    "SELECT w.k, r.count AS c, r.total AS t, r.max AS hi, r.min AS lo "
    f"FROM {_WINDOWS.format(p='rolled')} JOIN usage_rollups r ON r.tenant_id = w.tenant_id AND r.name = w.name "
    "AND r.hour >= w.low AND r.hour < w.high "
    "UNION ALL "
    "SELECT w.k, 1, e.quantity, e.quantity, e.quantity "
    f"FROM {_WINDOWS.format(p='edges')} JOIN usage_events e ON e.tenant_id = w.tenant_id AND e.name = w.name "
    "AND e.occurred_at >= w.low AND e.occurred_at < w.high"
    ") AS x GROUP BY k"
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def daily(aggregation: str, tenant_id: str, event_name: str, start: datetime, end: datetime) -> dict[date, Decimal]:
    """The same per UTC day of [start, end): the roll-ups' hours, the edges' events."""
    low, high, partial = _edges(start, end)
    days: dict[date, Bucket] = {}
    if low is not None:
        for hour, count, total, high_value, low_value in db.session.execute(
            select(UsageRollup.hour, UsageRollup.count, UsageRollup.total, UsageRollup.max, UsageRollup.min).where(
                UsageRollup.tenant_id == tenant_id,
                UsageRollup.name == event_name,
                UsageRollup.hour >= low,
                UsageRollup.hour < high,
            )
        ):
            days.setdefault(hour.date(), Bucket()).add(count, Decimal(total), Decimal(high_value), Decimal(low_value))
    for edge_start, edge_end in partial:
        for occurred_at, quantity in db.session.execute(
            _event_window(
                select(UsageEvent.occurred_at, UsageEvent.quantity), tenant_id, event_name, edge_start, edge_end
            )
        ):
            days.setdefault(occurred_at.date(), Bucket()).add(1, quantity, quantity, quantity)
    return {day: bucket.value(aggregation) for day, bucket in days.items() if bucket.count}


def many(tenant_id: str, names: list[str], start: datetime | None, end: datetime) -> dict[str, dict[date, Bucket]]:
    """Per event name, per UTC day of [start, end), the buckets of ``names``' events, in one
    statement for all of them (a page showing every feature): the whole hours from the roll-ups,
    the edges' partial hours from the events."""
    if not names:
        return {}
    low, high, partial = _edges(start, end)
    parts = []
    if low is not None or start is None:
        rolled = select(
            UsageRollup.name, UsageRollup.hour, UsageRollup.count, UsageRollup.total, UsageRollup.max, UsageRollup.min
        ).where(UsageRollup.tenant_id == tenant_id, UsageRollup.name.in_(names), UsageRollup.hour < high)
        parts.append(rolled.where(UsageRollup.hour >= low) if low is not None else rolled)
    for edge_start, edge_end in partial:
        parts.append(
            select(
                UsageEvent.name,
                UsageEvent.occurred_at,
                literal(1),
                UsageEvent.quantity,
                UsageEvent.quantity,
                UsageEvent.quantity,
            ).where(
                UsageEvent.tenant_id == tenant_id,
                UsageEvent.name.in_(names),
                UsageEvent.occurred_at >= edge_start,
                UsageEvent.occurred_at < edge_end,
            )
        )
    statement = union_all(*parts) if len(parts) > 1 else parts[0]
    found: dict[str, dict[date, Bucket]] = {name: {} for name in names}
    for name, at, count, total, high_value, low_value in db.session.execute(statement):
        if isinstance(at, str):  # SQLite gives a UNION's instants back as text
            at = datetime.fromisoformat(at)
        found[name].setdefault(at.date(), Bucket()).add(
            int(count), Decimal(total), Decimal(high_value), Decimal(low_value)
        )
    return found
