"""Meters (seed 003): synced from the catalog file, edited in the operator console, and the
one place that turns a tenant's events into a feature's quantity for a time window.

A meter without filter over the event's quantity is computed by the database (one aggregate
over the (tenant, name, time) index); one with a filter or over a property reads the events'
properties and aggregates them here, in the order they occurred, a chunk of rows at a time
(memory for one chunk, however many events the window holds).
"""

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import groupby

from flask import current_app, g
from sqlalchemy import event, func, literal, select, tuple_, union_all
from sqlalchemy.orm import Session

from portal import audit
from portal.access import Actor
from portal.billing.catalog import MeterFilter, MeterSpec
from portal.errors import Conflict
from portal.extensions import db
from portal.models import Meter, Plan, PlanVersion, Subscription, UsageEvent
from portal.usage import rollups

ZERO = Decimal(0)
_MEMO = "usage_meters_by_key"
_CHANGED = "usage_meters_changed"  # session.info: meters changed in this transaction


@dataclass
class MeterSyncResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def spec_of(meter: Meter) -> MeterSpec:
    return MeterSpec(
        key=meter.key,
        name=meter.name,
        event_name=meter.event_name,
        aggregation=meter.aggregation,
        property=meter.property,
        filter=MeterFilter.model_validate(meter.filter or {}),
    )


def _apply(meter: Meter, spec: MeterSpec) -> None:
    _forget_meters()
    meter.name, meter.event_name, meter.aggregation = spec.name, spec.event_name, spec.aggregation
    meter.property = spec.property
    meter.filter = spec.filter.model_dump(mode="json", exclude_none=False)


def sync_meters(specs: list[MeterSpec]) -> MeterSyncResult:
    """Create or update the catalog file's meters; meters only in the database are kept."""
    result = MeterSyncResult([], [], [])
    existing = {meter.key: meter for meter in db.session.execute(select(Meter)).scalars()}
    for spec in specs:
        meter = existing.get(spec.key)
        if meter is None:
            meter = Meter(key=spec.key)
            _apply(meter, spec)
            db.session.add(meter)
            result.created.append(spec.key)
        elif spec_of(meter) == spec:
            result.unchanged.append(spec.key)
        else:
            _apply(meter, spec)
            result.updated.append(spec.key)
    db.session.flush()
    return result


def save_meter(spec: MeterSpec) -> Meter:
    """The console's create-or-edit of one meter."""
    meter = db.session.execute(select(Meter).where(Meter.key == spec.key)).scalar_one_or_none()
    if meter is None:
        meter = Meter(key=spec.key)
        db.session.add(meter)
    _apply(meter, spec)
    db.session.flush()
    return meter


def list_meters() -> list[Meter]:
    return list(db.session.execute(select(Meter).order_by(Meter.key)).scalars())


def meters_statement():
    """Every meter by key (the API pages it)."""
    return select(Meter).order_by(Meter.key)


def get_meter(key: str) -> Meter | None:
    if not key or len(key) > 64:
        return None
    return db.session.execute(select(Meter).where(Meter.key == key)).scalar_one_or_none()


def plans_measured_by(key: str) -> list[str]:
    """The plans with a feature ``key`` in their current version or in the version a subscription
    that has not ended is on: the meter measures what they bill or limit."""
    live_versions = select(Subscription.plan_version_id).where(Subscription.status != "canceled")
    plans = db.session.execute(select(Plan).order_by(Plan.key)).scalars()
    used = {plan.key for plan in plans if plan.versions and _has_feature(plan.current_version, key)}
    for version in db.session.execute(select(PlanVersion).where(PlanVersion.id.in_(live_versions))).scalars():
        if _has_feature(version, key):
            used.add(version.key)
    return sorted(used)


def _has_feature(version: PlanVersion, key: str) -> bool:
    return any(isinstance(f, dict) and f.get("key") == key for f in version.features or [])


def create_meter(actor: Actor, spec: MeterSpec) -> Meter:
    if get_meter(spec.key) is not None:
        raise Conflict(f"A meter with the key {spec.key} exists; change it with PATCH instead.", field="key")
    meter = save_meter(spec)
    audit.record(actor, "meter.created", None, "meter", meter.key, meter=_described(spec))
    return meter


def update_meter(actor: Actor, meter: Meter, spec: MeterSpec) -> Meter:
    """A changed meter counts from its next read, for the whole current period (as the console's edit)."""
    before = _described(spec_of(meter))
    save_meter(spec)
    after = _described(spec)
    if before != after:
        audit.record(actor, "meter.updated", None, "meter", meter.key, before=before, after=after)
    return meter


def delete_meter(actor: Actor, meter: Meter) -> None:
    """Refused while a plan measures a feature by it (its usage would silently read as none):
    take the feature out of the catalog first. Events are kept."""
    plans = plans_measured_by(meter.key)
    if plans:
        raise Conflict(
            f"The meter {meter.key} measures a feature of the plans {', '.join(plans)}; "
            "remove the feature from those plans first (usage billed by it would read as none)."
        )
    _forget_meters()
    audit.record(actor, "meter.deleted", None, "meter", meter.key, meter=_described(spec_of(meter)))
    db.session.delete(meter)
    db.session.flush()


def _described(spec: MeterSpec) -> dict:
    return spec.model_dump(mode="json")


# (database, read at, meters) shared by the requests of this process; see METER_CACHE_SECONDS.
_process_meters: tuple[str, float, dict[str, MeterSpec]] | None = None


def meters_by_key() -> dict[str, MeterSpec]:
    """Every meter by its feature key, read once per request or job (a billing run asks for
    every subscription), and reused by this process's requests for METER_CACHE_SECONDS: an
    edit made meanwhile counts from the next read. Not while this session has changed meters
    and not committed them (what it reads must not outlive a rollback)."""
    global _process_meters
    if _MEMO in g:
        return getattr(g, _MEMO)
    lifetime = current_app.config.get("METER_CACHE_SECONDS", 0)
    database = current_app.config["SQLALCHEMY_DATABASE_URI"]
    cached = _process_meters
    if (
        lifetime > 0
        and cached is not None
        and cached[0] == database
        and time.monotonic() - cached[1] < lifetime
        and not _changed_here()
    ):
        setattr(g, _MEMO, cached[2])
        return cached[2]
    read_at = time.monotonic()
    meters = {meter.key: spec_of(meter) for meter in list_meters()}
    setattr(g, _MEMO, meters)
    if lifetime > 0 and not _changed_here():
        _process_meters = (database, read_at, meters)
    return meters


def _changed_here() -> bool:
    # Without a session in this request nothing was changed, and none is created to find out.
    return db.session.registry.has() and bool(db.session.info.get(_CHANGED))


def _forget_meters() -> None:
    global _process_meters
    g.pop(_MEMO, None)
    _process_meters = None
    db.session.info[_CHANGED] = True


def _meters_settled(session, *_args) -> None:
    """A commit or rollback: whatever this session changed in meters is settled either way."""
    global _process_meters
    if session.info.pop(_CHANGED, None):
        _process_meters = None


def register_session_hooks() -> None:
    for name in ("after_commit", "after_soft_rollback"):
        if not event.contains(Session, name, _meters_settled):
            event.listen(Session, name, _meters_settled)


# --- filters -----------------------------------------------------------------------------

_MISSING = object()


def _field(event_name: str, quantity: Decimal, properties: dict, field: str):
    if field in properties:
        return properties[field]
    if field == "quantity":
        return quantity
    if field == "name":
        return event_name
    return _MISSING


def _number(value) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _same(a, b) -> bool:
    left, right = _number(a), _number(b)
    if left is not None and right is not None:
        return left == right
    return str(a) == str(b) if not isinstance(a, dict | list) else False


def _criterion_holds(criterion, value) -> bool:
    op, expected = criterion.operator, criterion.value
    if op == "exists":
        return value is not _MISSING and value is not None
    if op == "not_exists":
        return value is _MISSING or value is None
    if value is _MISSING:
        return op in ("not_equals", "not_in", "not_contains")
    if op == "equals":
        return _same(value, expected)
    if op == "not_equals":
        return not _same(value, expected)
    if op == "in":
        return any(_same(value, item) for item in expected)
    if op == "not_in":
        return not any(_same(value, item) for item in expected)
    if op in ("contains", "not_contains"):
        found = (
            str(expected) in value
            if isinstance(value, str)
            else any(_same(item, expected) for item in value)
            if isinstance(value, list)
            else False
        )
        return found if op == "contains" else not found
    number, bound = _number(value), _number(expected)
    if number is None or bound is None:
        return False
    return {"gt": number > bound, "gte": number >= bound, "lt": number < bound, "lte": number <= bound}[op]


def passes(meter_filter: MeterFilter, event_name: str, quantity: Decimal, properties: dict) -> bool:
    """Seed 003: any condition (OR) whose criteria all hold (AND); no conditions: every event."""
    if not meter_filter.conditions:
        return True
    properties = properties if isinstance(properties, dict) else {}
    return any(
        all(_criterion_holds(c, _field(event_name, quantity, properties, c.field)) for c in condition.criteria)
        for condition in meter_filter.conditions
    )


# --- aggregation -------------------------------------------------------------------------


_FOLDED = ("sum", "max", "min", "avg", "first", "last")


def aggregate(aggregation: str, values: Iterable) -> Decimal:
    """``values`` in the order the events occurred, read once (a window's events stream in);
    counts and sums of nothing are 0; values that are not numbers count only for ``count``
    and ``unique_count``."""
    if aggregation == "count":
        return Decimal(sum(1 for _ in values))
    if aggregation == "unique_count":
        return Decimal(len({json.dumps(v, sort_keys=True, default=str) for v in values}))
    if aggregation not in _FOLDED:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    count, total = 0, ZERO
    first = last = high = low = None
    for value in values:
        number = _number(value)
        if number is None:
            continue
        if count == 0:
            first = high = low = number
        else:
            high, low = max(high, number), min(low, number)
        count, total, last = count + 1, total + number, number
    if count == 0:
        return ZERO
    return {"sum": total, "max": high, "min": low, "avg": total / count, "first": first, "last": last}[aggregation]


def _window(statement, tenant_id: str, event_name: str, start: datetime | None, end: datetime):
    statement = statement.where(
        UsageEvent.tenant_id == tenant_id, UsageEvent.name == event_name, UsageEvent.occurred_at < end
    )
    return statement.where(UsageEvent.occurred_at >= start) if start is not None else statement


_ORDER = (UsageEvent.occurred_at, UsageEvent.received_at, UsageEvent.id)
_SQL_AGGREGATES = {
    "count": func.count(),
    "sum": func.sum(UsageEvent.quantity),
    "max": func.max(UsageEvent.quantity),
    "min": func.min(UsageEvent.quantity),
    "avg": func.avg(UsageEvent.quantity),
}


def _in_database(spec: MeterSpec) -> bool:
    return not spec.filter.conditions and spec.property is None and spec.aggregation != "unique_count"


def _event_values(spec: MeterSpec, rows: Iterable) -> Iterator:
    """The values ``spec`` aggregates, from (quantity, properties) pairs, lazily."""
    for quantity, properties in rows:
        properties = properties if isinstance(properties, dict) else {}
        if not passes(spec.filter, spec.event_name, quantity, properties):
            continue
        if spec.property is None:
            yield quantity
        elif spec.property in properties and properties[spec.property] is not None:
            yield properties[spec.property]


READ_CHUNK = 5000
# The reading order's columns under names of their own, for the keyset of the next chunk.
_KEYSET = tuple(column.label(f"keyset_{index}") for index, column in enumerate(_ORDER))


def _window_rows(
    columns: tuple, tenant_id: str, event_name: str, start: datetime | None, end: datetime
) -> Iterator[tuple]:
    """``columns`` of the window's events in the order they occurred, read READ_CHUNK rows at
    a time, each chunk after the last one's (occurred, received, id): a tenant with millions
    of events costs the memory of one chunk."""
    statement = _window(select(*columns, *_KEYSET), tenant_id, event_name, start, end).order_by(*_ORDER)
    after = None
    while True:
        chunk = statement if after is None else statement.where(tuple_(*_ORDER) > tuple_(*after))
        rows = db.session.execute(chunk.limit(READ_CHUNK)).all()
        for row in rows:
            yield tuple(row[: len(columns)])
        if len(rows) < READ_CHUNK:
            return
        after = tuple(rows[-1][len(columns) :])


def meter_value(spec: MeterSpec, tenant_id: str, start: datetime | None, end: datetime) -> Decimal:
    """The meter's value for one tenant over [start, end) (start None: from the beginning)."""
    if _in_database(spec) and rollups.serves(spec.aggregation):
        return _clean(rollups.value(spec.aggregation, tenant_id, spec.event_name, start, end))
    if _in_database(spec):
        if spec.aggregation in ("first", "last"):
            order = [column.desc() for column in _ORDER] if spec.aggregation == "last" else list(_ORDER)
            value = db.session.execute(
                _window(select(UsageEvent.quantity), tenant_id, spec.event_name, start, end).order_by(*order).limit(1)
            ).scalar()
        else:
            value = db.session.execute(
                _window(select(_SQL_AGGREGATES[spec.aggregation]), tenant_id, spec.event_name, start, end)
            ).scalar()
        return _clean(Decimal(value) if value is not None else ZERO)
    rows = _window_rows((UsageEvent.quantity, UsageEvent.properties), tenant_id, spec.event_name, start, end)
    return _clean(aggregate(spec.aggregation, _event_values(spec, rows)))


def meter_values(spec: MeterSpec, windows: list[tuple[str, datetime | None, datetime]]) -> list[Decimal] | None:
    """``meter_value`` for many (tenant_id, start, end) windows at once, in their order; None
    when this meter or database cannot be read so (the caller asks one by one)."""
    if not (_in_database(spec) and rollups.serves(spec.aggregation)):
        return None
    values = rollups.values_many(
        spec.aggregation, [(tenant_id, spec.event_name, start, end) for tenant_id, start, end in windows]
    )
    return None if values is None else [_clean(value) for value in values]


def _clean(value: Decimal) -> Decimal:
    """12.000000 -> 12, and an average's 28 digits cut to the storage's 6 decimals."""
    value = value.quantize(Decimal("0.000001")) if value.as_tuple().exponent < -6 else value
    return value.normalize() if value != 0 else ZERO


def daily_values(spec: MeterSpec, tenant_id: str, start: datetime, end: datetime) -> dict[date, Decimal]:
    """The meter per UTC day of [start, end), each day aggregated on its own."""
    if _in_database(spec) and rollups.serves(spec.aggregation):
        return {
            day: _clean(value)
            for day, value in rollups.daily(spec.aggregation, tenant_id, spec.event_name, start, end).items()
        }
    rows = _window_rows(
        (UsageEvent.occurred_at, UsageEvent.quantity, UsageEvent.properties), tenant_id, spec.event_name, start, end
    )
    # In occurrence order, so each day's rows come together.
    return {
        day: _clean(aggregate(spec.aggregation, _event_values(spec, (row[1:] for row in day_rows))))
        for day, day_rows in groupby(rows, key=lambda row: row[0].date())
    }


def last_event_at(tenant_id: str, event_name: str, start: datetime, end: datetime) -> datetime | None:
    return db.session.execute(
        _window(select(func.max(UsageEvent.occurred_at)), tenant_id, event_name, start, end)
    ).scalar()


@dataclass
class Reading:
    """One meter over a window, as a page shows it: the value, the value per UTC day, and for a
    ``last`` meter the level the window opens with (the last one reported before it)."""

    value: Decimal
    daily: dict[date, Decimal]
    opening: Decimal = ZERO


def _day_of(connection):
    if connection.dialect.name == "postgresql":
        return lambda column: func.date_trunc("day", column)
    return func.date


def _last_levels(
    specs: list[MeterSpec], tenant_id: str, start: datetime, end: datetime
) -> dict[str, tuple[dict[date, Decimal], Decimal]]:
    """For ``last`` meters: each day's last reading in [start, end) and the last one before
    start, for every meter in one statement (one row per meter and day, one per opening)."""
    names = sorted({spec.event_name for spec in specs})
    day = _day_of(db.session.connection())(UsageEvent.occurred_at)
    ranked = (
        select(
            UsageEvent.name,
            UsageEvent.occurred_at,
            UsageEvent.quantity,
            func.row_number()
            .over(partition_by=(UsageEvent.name, day), order_by=[column.desc() for column in _ORDER])
            .label("rank"),
        )
        .where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.name.in_(names),
            UsageEvent.occurred_at >= start,
            UsageEvent.occurred_at < end,
        )
        .subquery()
    )
    parts = [select(ranked.c.name, ranked.c.occurred_at, ranked.c.quantity, literal(0)).where(ranked.c.rank == 1)]
    for name in names:
        before = (
            select(UsageEvent.name, UsageEvent.occurred_at, UsageEvent.quantity)
            .where(UsageEvent.tenant_id == tenant_id, UsageEvent.name == name, UsageEvent.occurred_at < start)
            .order_by(*(column.desc() for column in _ORDER))
            .limit(1)
            .subquery()
        )
        parts.append(select(before.c.name, before.c.occurred_at, before.c.quantity, literal(1)))
    found: dict[str, tuple[dict[date, Decimal], Decimal]] = {name: ({}, ZERO) for name in names}
    for name, at, quantity, is_opening in db.session.execute(union_all(*parts)):
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        days, opening = found[name]
        if is_opening:
            found[name] = (days, _clean(Decimal(quantity)))
        else:
            days[at.date()] = _clean(Decimal(quantity))
    return found


def read_window(specs: dict[str, MeterSpec], tenant_id: str, start: datetime, end: datetime) -> dict[str, Reading]:
    """Every meter of ``specs`` (by key) over [start, end), value and days, in a constant number
    of statements whatever the meters and the events: one for the meters the roll-ups serve, one
    for ``last`` levels; a meter with a filter or over a property reads its own events."""
    rolled = {key: spec for key, spec in specs.items() if _in_database(spec) and rollups.serves(spec.aggregation)}
    levels = {key: spec for key, spec in specs.items() if _in_database(spec) and spec.aggregation == "last"}
    readings: dict[str, Reading] = {}
    if rolled:
        buckets = rollups.many(tenant_id, sorted({spec.event_name for spec in rolled.values()}), start, end)
        for key, spec in rolled.items():
            by_day = buckets.get(spec.event_name, {})
            total = rollups.Bucket()
            for bucket in by_day.values():
                total.add(bucket.count, bucket.total, bucket.max, bucket.min)
            readings[key] = Reading(
                value=_clean(total.value(spec.aggregation)),
                daily={day: _clean(bucket.value(spec.aggregation)) for day, bucket in by_day.items() if bucket.count},
            )
    if levels:
        found = _last_levels(list(levels.values()), tenant_id, start, end)
        for key, spec in levels.items():
            by_day, opening = found[spec.event_name]
            value = by_day[max(by_day)] if by_day else ZERO
            readings[key] = Reading(value=value, daily=by_day, opening=opening)
    for key, spec in specs.items():
        if key not in readings:
            readings[key] = Reading(
                value=meter_value(spec, tenant_id, start, end),
                daily=daily_values(spec, tenant_id, start, end),
                opening=meter_value(spec, tenant_id, None, start) if spec.aggregation == "last" else ZERO,
            )
    return readings
