"""Seed 000's ``api_requests_count``: every authenticated tenant-key API request counts one
``api_request`` unit, without a database write per request.

A request adds one to its tenant's counter for the current minute in Redis (fakeredis, in
process, in the embedded mode); ``flush()`` (a worker job every minute, and the billing run
before it bills) turns the counters into usage events, one per tenant and minute, with an
idempotency key derived from the flush, so a flush that crashed half-way is redone without
counting anything twice. Reads of usage add what is still waiting in Redis.
"""

import logging
import secrets
from datetime import UTC, datetime
from decimal import Decimal

from redis.exceptions import ResponseError

from portal.tasks import database_key, redis_connection

log = logging.getLogger(__name__)

EVENT_NAME = "api_request"


def database_prefix() -> str:
    """Usage keys of one database (see tasks.database_key)."""
    return database_key("usage")


def _prefix() -> str:
    return f"{database_prefix()}:api_requests"


def _tenants_key() -> str:
    return f"{_prefix()}:tenants"


def _pending_key(tenant_id: str) -> str:
    return f"{_prefix()}:pending:{tenant_id}"


def _flushing_key(tenant_id: str, token: str) -> str:
    return f"{_prefix()}:flushing:{tenant_id}:{token}"


def record(tenant_id: str, at: datetime | None = None) -> None:
    """Count one request; a Redis failure costs the count, never the request."""
    minute = int((at or datetime.now(UTC)).timestamp()) // 60 * 60
    try:
        pipe = redis_connection().pipeline(transaction=False)
        pipe.hincrby(_pending_key(tenant_id), str(minute), 1)
        pipe.sadd(_tenants_key(), tenant_id)
        pipe.execute()
    except Exception as error:  # noqa: BLE001 - metering must not break the API
        log.warning("API request not counted for %s (%s)", tenant_id, type(error).__name__)


def _counts(raw: dict) -> dict[int, int]:
    return {int(minute): int(count) for minute, count in raw.items()}


def pending(tenant_id: str, start: datetime | None, end: datetime) -> Decimal:
    """Requests counted in Redis but not flushed yet, in [start, end)."""
    try:
        counts = _counts(redis_connection().hgetall(_pending_key(tenant_id)))
    except Exception:  # noqa: BLE001
        return Decimal(0)
    low = start.timestamp() if start is not None else float("-inf")
    return Decimal(sum(count for minute, count in counts.items() if low <= minute < end.timestamp()))


def _flush_key(key: str) -> int:
    from portal.extensions import db
    from portal.models import Tenant
    from portal.tasks import commit
    from portal.usage.ingest import EventDraft, Outcome, store

    redis = redis_connection()
    key = key.decode() if isinstance(key, bytes) else key
    tenant_id, token = key.rsplit(":", 2)[-2:]
    counts = _counts(redis.hgetall(key))
    if db.session.get(Tenant, tenant_id) is None:
        counts = {}  # the tenant was deleted meanwhile: its requests have no one to bill
    outcomes = []
    for index, (minute, count) in enumerate(sorted(counts.items())):
        event = EventDraft(tenant_ref=tenant_id, key=f"api_requests:{minute}:{token}", name=EVENT_NAME,
                           occurred_at=datetime.fromtimestamp(minute, UTC), quantity=Decimal(count), properties={},
                           tenant_id=tenant_id)
        outcomes.append(Outcome(index, "valid", tenant_id=tenant_id, key=event.key, draft=event))
    if outcomes:
        store(outcomes)
        commit()
    redis.delete(key)
    return sum(counts.values())


def flush() -> int:
    """Move every counter into usage events; returns the requests flushed. Safe to run twice,
    and at once in several workers (each counter is renamed away by exactly one of them)."""
    redis = redis_connection()
    flushed = 0
    # Left over by a flush that died after renaming: redone under the same token.
    for key in redis.scan_iter(match=_flushing_key("*", "*")):
        flushed += _flush_key(key)
    for member in redis.smembers(_tenants_key()):
        tenant_id = member.decode() if isinstance(member, bytes) else member
        # Out of the set first: a request arriving now adds itself back for the next flush.
        redis.srem(_tenants_key(), tenant_id)
        target = _flushing_key(tenant_id, secrets.token_hex(6))
        try:
            redis.rename(_pending_key(tenant_id), target)
        except ResponseError:  # no such key: nothing pending, or another flush took it
            continue
        flushed += _flush_key(target)
    return flushed
