"""Usage event ingestion: validate each event (the seeds' field names accepted), then store a
whole batch in one INSERT ... ON CONFLICT DO NOTHING, so a repeated idempotency key, even
sent twice at the same instant, is stored once and answered with the original event's id."""

import json
import secrets
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import aliased

from portal.errors import Conflict
from portal.extensions import db
from portal.infra import cache as key_cache
from portal.infra.bulk import dialect_insert, driver_cursor
from portal.infra.transactions import statement_connection
from portal.models import Tenant, UsageEvent, UsageEventKey, utcnow
from portal.models.base import new_id
from portal.timezones import parse_instant
from portal.usage import rollups
from portal.usage.services import Terms, tenant_terms

MAX_BATCH = 1000
MAX_NAME = 128
MAX_KEY = 200
MAX_PROPERTIES_BYTES = 8 * 1024
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_QUANTITY = Decimal(10) ** 14  # Numeric(20, 6)
SIX_PLACES = Decimal("0.000001")

# Each field under the names the seeds give it: ours / seed 002 / seed 001 / seed 003.
ALIASES = {
    "tenant": ("tenant_id", "customerReferenceId", "customerAlias"),
    "key": ("eventIdempotencyKey", "eventId", "idempotency_key", "ref"),
    "name": ("eventName", "event_name", "name", "metric"),
    "occurred_at": ("occurredAt", "occurred_at", "timestamp"),
    "quantity": ("quantity", "usageUnits"),
    "properties": ("properties", "meta", "metadata", "data"),
}
# Seed 002 fields a client may send that have no meaning here: accepted and ignored.
IGNORED = {"flowId", "featureKey", "featureId", "costAmount", "subscriptionId", "entitlementId", "customerId"}
_KNOWN = {name for names in ALIASES.values() for name in names} | IGNORED


class Rejected(ValueError):
    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass
class EventDraft:
    tenant_ref: str
    key: str
    name: str
    occurred_at: datetime
    quantity: Decimal
    properties: dict
    tenant_id: str | None = None
    properties_json: str | None = None  # as validated, so the INSERT need not encode it again


@dataclass
class Outcome:
    """What became of one event of a request: accepted, duplicate or rejected."""

    index: int
    status: str
    event_id: str | None = None
    tenant_id: str | None = None
    key: str | None = None
    reason: str | None = None
    field: str | None = None
    draft: EventDraft | None = dataclass_field(default=None, repr=False)
    # The tenant's subscription terms as validation read them (for the quota checks after it).
    terms: Terms | None = dataclass_field(default=None, repr=False)


def _one(raw: dict, what: str):
    given = [(name, raw[name]) for name in ALIASES[what] if name in raw]
    if len(given) > 1:
        names = " and ".join(name for name, _ in given)
        raise Rejected(f"give one of {names}, not both", given[1][0])
    return given[0] if given else (ALIASES[what][0], None)


def _text(raw: dict, what: str, limit: int, required: bool) -> str | None:
    name, value = _one(raw, what)
    if value is None:
        if required:
            raise Rejected(f"{name} is required", name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{name} must be a non-empty string", name)
    value = value.strip()
    if len(value) > limit:
        raise Rejected(f"{name} is longer than {limit} characters", name)
    if "\x00" in value:
        raise Rejected(f"{name} contains a NUL character", name)
    return value


def _instant(raw: dict, now: datetime) -> datetime:
    name, value = _one(raw, "occurred_at")
    if value is None:
        return now
    try:
        instant = parse_instant(value)
    except ValueError as error:
        raise Rejected(f"{name}: {error}", name) from None
    if instant > now + FUTURE_TOLERANCE:
        raise Rejected(f"{name} is more than 5 minutes in the future", name)
    return instant


def _quantity(raw: dict) -> Decimal:
    name, value = _one(raw, "quantity")
    if value is None:
        return Decimal(1)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Rejected(f"{name} must be a number", name)
    try:
        quantity = Decimal(str(value))
    except InvalidOperation:
        raise Rejected(f"{name} must be a finite number", name) from None
    if not quantity.is_finite():
        raise Rejected(f"{name} must be a finite number", name)
    if quantity < 0:
        raise Rejected(f"{name} must not be negative", name)
    if quantity >= MAX_QUANTITY:
        raise Rejected(f"{name} is too large (at most 14 digits before the decimal point)", name)
    return quantity.quantize(SIX_PLACES, rounding=ROUND_HALF_UP)


def _properties(raw: dict) -> tuple[dict, str]:
    """The properties and their JSON text."""
    name, value = _one(raw, "properties")
    if value is None:
        return {}, "{}"
    if not isinstance(value, dict):
        raise Rejected(f"{name} must be a JSON object", name)
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise Rejected(f"{name} must hold finite numbers only", name) from None
    size = len(encoded.encode())
    if size > MAX_PROPERTIES_BYTES:
        raise Rejected(f"{name} is {size:,} bytes; at most {MAX_PROPERTIES_BYTES:,} are accepted", name)
    if "\\u0000" in encoded:
        raise Rejected(f"{name} contains a NUL character", name)
    return value, encoded


def draft(raw, now: datetime, header_key: str | None = None) -> EventDraft:
    """One event's fields checked on their own (the tenant and its periods are checked later)."""
    if not isinstance(raw, dict):
        raise Rejected("an event must be a JSON object")
    if unknown := sorted(set(raw) - _KNOWN, key=str)[:5]:
        raise Rejected(f"unknown field(s): {', '.join(map(str, unknown))}", str(unknown[0]))
    tenant_ref = _text(raw, "tenant", 100, required=True)
    key = header_key or _text(raw, "key", MAX_KEY, required=False) or f"auto_{secrets.token_hex(12)}"
    name = _text(raw, "name", MAX_NAME, required=True)
    occurred_at, quantity = _instant(raw, now), _quantity(raw)
    properties, properties_json = _properties(raw)
    return EventDraft(
        tenant_ref=tenant_ref,
        key=key,
        name=name,
        occurred_at=occurred_at,
        quantity=quantity,
        properties=properties,
        tenant_id=None,
        properties_json=properties_json,
    )


def _tenants(refs: set[str]) -> dict[str, Terms]:
    """ref (tenant_id or external id) -> the tenant's terms (its current period's start is the
    oldest open one), cancelled tenants left out."""
    return {ref: terms for ref, terms in tenant_terms(refs).items() if terms.tenant_status != "cancelled"}


def validate(raw_events: list, now: datetime | None = None, header_key: str | None = None) -> list[Outcome]:
    """Every event checked; accepted ones carry their draft (status "valid" until stored)."""
    now = now or utcnow()
    outcomes: list[Outcome] = []
    for index, raw in enumerate(raw_events):
        try:
            outcomes.append(Outcome(index, "valid", draft=draft(raw, now, header_key)))
        except Rejected as error:
            outcomes.append(Outcome(index, "rejected", reason=error.reason, field=error.field))
    tenants = _tenants({o.draft.tenant_ref for o in outcomes if o.draft})
    for outcome in outcomes:
        event = outcome.draft
        if event is None:
            continue
        if event.tenant_ref not in tenants:
            outcome.status, outcome.reason, outcome.field = (
                "rejected",
                f"unknown tenant {event.tenant_ref!r}",
                "tenant_id",
            )
            outcome.draft = None
            continue
        outcome.terms = tenants[event.tenant_ref]
        event.tenant_id, period_start = outcome.terms.tenant_id, outcome.terms.current_period_start
        outcome.tenant_id, outcome.key = event.tenant_id, event.key
        if period_start is not None and event.occurred_at < period_start:
            outcome.status, outcome.field = "rejected", "occurredAt"
            outcome.reason = (
                f"occurredAt is before the oldest open billing period, which started "
                f"{period_start.isoformat().replace('+00:00', 'Z')}"
            )
            outcome.draft = None
    return outcomes


_key_inserts: dict[str, object] = {}


# Ingestion on PostgreSQL takes the events' idempotency keys, stores the events whose key it
# took, and adds them to their hours' roll-ups in one statement: one round trip, one atomic
# write. (usage_events is partitioned by month, so it cannot hold a unique index on
# (tenant_id, idempotency_key); usage_event_keys does.) Constant text, values bound: not an
# injection.
def _stored_and_rolled(rows: str) -> str:
    """``WITH input AS (<rows>)``, the keys taken (ON CONFLICT DO NOTHING), the events whose
    key was taken stored, then added to their roll-ups; the ids of the events stored."""
    return (
        f"WITH input (i, t, k, n, o, q, p, r) AS ({rows}), "  # noqa: S608 - constant text, values bound
        "keyed AS (INSERT INTO usage_event_keys (tenant_id, idempotency_key, event_id, occurred_at) "
        "SELECT t, k, i, o FROM input ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING event_id), "
        "stored AS (INSERT INTO usage_events (id, tenant_id, idempotency_key, name, occurred_at, "
        "quantity, properties, received_at, invoice_id) SELECT i, t, k, n, o, q, p::json, r, NULL FROM input "
        "WHERE i IN (SELECT event_id FROM keyed) RETURNING id, tenant_id, name, occurred_at, quantity), "
        "rolled AS (" + rollups.ADD_STORED_POSTGRESQL + ") "
        "SELECT id FROM stored"
    )


# A batch as eight array parameters, sent in binary: a statement of constant text (a thousand
# rows of placeholders would be parsed again by the driver on every batch).
_UNNEST_INSERT = _stored_and_rolled(
    "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], "
    "%b::varchar[], %b::timestamp[], %b::numeric[], %b::text[], %b::timestamp[])"
)
# One event (POST /events): scalar parameters, which the driver sends for about half the cost
# of eight one-element arrays.
_SINGLE_INSERT = _stored_and_rolled(
    "SELECT %s::varchar, %s::varchar, %s::varchar, %s::varchar, %s::timestamp, %s::numeric, %s::text, %s::timestamp"
)


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def _properties_json(draft: EventDraft) -> str:
    return draft.properties_json if draft.properties_json is not None else json.dumps(draft.properties)


def _insert_postgresql(connection, rows: list[dict], drafts: list[EventDraft]) -> set[str]:
    if len(rows) == 1:
        (row,), (one,) = rows, drafts
        # On the driver's own cursor: SQLAlchemy's execution context around one statement
        # (result metadata, cursor wrapping, events) was a tenth of a single event's CPU.
        with driver_cursor(connection, _SINGLE_INSERT) as cursor:
            cursor.execute(
                _SINGLE_INSERT,
                (
                    row["id"],
                    row["tenant_id"],
                    row["idempotency_key"],
                    row["name"],
                    _naive_utc(row["occurred_at"]),
                    row["quantity"],
                    _properties_json(one),
                    _naive_utc(row["received_at"]),
                ),
            )
            return {stored[0] for stored in cursor}
    columns = (
        [r["id"] for r in rows],
        [r["tenant_id"] for r in rows],
        [r["idempotency_key"] for r in rows],
        [r["name"] for r in rows],
        [_naive_utc(r["occurred_at"]) for r in rows],
        [r["quantity"] for r in rows],
        [_properties_json(d) for d in drafts],
        [_naive_utc(r["received_at"]) for r in rows],
    )
    return {row[0] for row in connection.exec_driver_sql(_UNNEST_INSERT, columns)}


def _key_insert(dialect: str):
    statement = _key_inserts.get(dialect)
    if statement is None:
        statement = _key_inserts[dialect] = (
            dialect_insert(UsageEventKey.__table__)
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(UsageEventKey.__table__.c.event_id)
        )
    return statement


def _insert_other(connection, rows: list[dict]) -> set[str]:
    """SQLite: the keys first (one multi-row INSERT, compiled once per process), then the
    events whose key was taken, then their roll-ups."""
    keys = [
        {
            "tenant_id": r["tenant_id"],
            "idempotency_key": r["idempotency_key"],
            "event_id": r["id"],
            "occurred_at": r["occurred_at"],
        }
        for r in rows
    ]
    inserted = set(connection.execute(_key_insert(connection.dialect.name), keys).scalars())
    stored = [row for row in rows if row["id"] in inserted]
    if stored:
        connection.execute(UsageEvent.__table__.insert(), stored)
        rollups.add(stored, connection)
    return inserted


def store(outcomes: list[Outcome], now: datetime | None = None) -> list[Outcome]:
    """Store the valid events in one statement; a key already stored (before, concurrently, or
    earlier in this batch) makes its event a duplicate naming the stored event's id."""
    now = now or utcnow()
    first_of: dict[tuple[str, str], Outcome] = {}
    repeats: list[Outcome] = []
    rows = []
    for outcome in outcomes:
        if outcome.status != "valid":
            continue
        event = outcome.draft
        pair = (event.tenant_id, event.key)
        if pair in first_of:
            repeats.append(outcome)
            continue
        first_of[pair] = outcome
        outcome.event_id = new_id("evt")
        rows.append(
            {
                "id": outcome.event_id,
                "tenant_id": event.tenant_id,
                "idempotency_key": event.key,
                "name": event.name,
                "occurred_at": event.occurred_at,
                "quantity": event.quantity,
                "properties": event.properties,
                "received_at": now,
                "invoice_id": None,
            }
        )
    inserted: set[str] = set()
    if rows:
        with statement_connection() as connection:
            if connection.dialect.name == "postgresql":
                inserted = _insert_postgresql(
                    connection, rows, [first_of[(r["tenant_id"], r["idempotency_key"])].draft for r in rows]
                )
            else:
                inserted = _insert_other(connection, rows)
        if inserted:
            # Entitlement checks elsewhere may hold these tenants' usage: evicted at the commit,
            # or now if the statement ran outside the session's transaction (it has none yet).
            changed = {row["tenant_id"] for row in rows if row["id"] in inserted}
            session = db.session()
            if session.in_transaction():
                key_cache.note_usage_changed(session, changed)
            else:
                key_cache.usage_committed(changed)
    missing = [pair for pair, outcome in first_of.items() if outcome.event_id not in inserted]
    existing = {}
    if missing:
        existing = {
            (tenant_id, key): event_id
            for event_id, tenant_id, key in db.session.execute(
                select(UsageEventKey.event_id, UsageEventKey.tenant_id, UsageEventKey.idempotency_key).where(
                    tuple_(UsageEventKey.tenant_id, UsageEventKey.idempotency_key).in_(missing)
                )
            ).all()
        }
    for pair, outcome in first_of.items():
        if outcome.event_id in inserted:
            outcome.status = "accepted"
        else:
            outcome.status, outcome.event_id = "duplicate", existing.get(pair)
    for outcome in repeats:
        first = first_of[(outcome.draft.tenant_id, outcome.draft.key)]
        outcome.status, outcome.event_id = "duplicate", first.event_id
    return outcomes


def ingest(raw_events: list, header_key: str | None = None) -> list[Outcome]:
    """Validate and store; the caller commits, then defers the quota checks."""
    now = utcnow()
    return store(validate(raw_events, now, header_key), now)


class AmbiguousRef(Conflict, code="AMBIGUOUS_REF"):
    """An idempotency key that names events of more than one tenant (keys are unique per tenant)."""

    def __init__(self, ref: str):
        super().__init__(
            f"The ref {ref!r} is the idempotency key of events of more than one tenant; "
            "give tenant_id to say whose, or use the event's id.",
            field="ref",
        )


def _by_key(ref: str, tenant_id: str | None) -> list[UsageEvent]:
    """At most two events whose idempotency key is ``ref`` (within ``tenant_id`` when given)."""
    if tenant_id is not None:
        ids = select(UsageEventKey.event_id).where(
            UsageEventKey.tenant_id == tenant_id, UsageEventKey.idempotency_key == ref
        )
    else:
        # Keys are indexed behind tenant_id: one probe of that unique index per tenant, never a
        # scan of every key.
        probe = aliased(UsageEventKey)
        per_tenant = (
            select(probe.event_id)
            .where(probe.tenant_id == Tenant.tenant_id, probe.idempotency_key == ref)
            .scalar_subquery()
        )
        ids = select(per_tenant).select_from(Tenant)
    statement = select(UsageEvent).where(UsageEvent.id.in_(ids)).order_by(UsageEvent.tenant_id).limit(2)
    return list(db.session.execute(statement).scalars())


def find(ref: str, tenant_id: str | None = None) -> UsageEvent | None:
    """An event by its id or by its idempotency key (seed 003's ref), within ``tenant_id`` when
    given, else of any tenant; a key that names events of several tenants raises AmbiguousRef."""
    if not ref or len(ref) > MAX_KEY or "\x00" in ref:
        return None
    event = db.session.get(UsageEvent, ref) if len(ref) <= 32 else None
    if event is not None and (tenant_id is None or event.tenant_id == tenant_id):
        return event
    found = _by_key(ref, tenant_id)
    if len(found) > 1:
        raise AmbiguousRef(ref)
    return found[0] if found else None


@dataclass
class DeleteResult:
    deleted: list[UsageEvent]
    invoiced: list[str]
    not_found: list[str]
    ambiguous: list[str] = dataclass_field(default_factory=list)


def delete_by_refs(refs: list[str], tenant_id: str | None = None) -> DeleteResult:
    """Delete events not yet invoiced; invoiced, unknown and ambiguous refs are reported, not deleted."""
    result = DeleteResult([], [], [])
    seen = set()
    for ref in refs:
        if ref in seen:
            continue
        seen.add(ref)
        try:
            event = find(ref, tenant_id)
        except AmbiguousRef:
            result.ambiguous.append(ref)
            continue
        if event is None:
            result.not_found.append(ref)
        elif event.invoice_id is not None:
            result.invoiced.append(ref)
        else:
            result.deleted.append(event)
            db.session.delete(event)
            # The key is free again: the same event may be sent anew.
            db.session.execute(
                delete(UsageEventKey).where(
                    UsageEventKey.tenant_id == event.tenant_id, UsageEventKey.idempotency_key == event.idempotency_key
                )
            )
    db.session.flush()
    return result
