"""Seed 000's ``api_requests_count``: every authenticated tenant-key API request counts one
``api_request`` unit, without a database write per request.

A request adds one to its tenant's counter for the current minute in Redis (fakeredis, in
process, in the embedded mode); ``api_request_events.flush()`` (a worker job every minute, and the billing run
before it bills) turns the counters into usage events, one per tenant and minute, with an
idempotency key derived from the flush, so a flush that crashed half-way is redone without
counting anything twice. Reads of usage add what is still waiting in Redis.
"""

import logging
from datetime import UTC, datetime
from decimal import Decimal

from portal.infra.queues import database_key, redis_connection

log = logging.getLogger(__name__)

EVENT_NAME = "api_request"


def database_prefix() -> str:
    """Usage keys of one database (see portal.infra.queues.database_key)."""
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


def pending_counts(tenant_ids: list[str]) -> dict[str, dict[int, int]] | None:
    """Each tenant's requests still counted in Redis, per minute, in one round trip (None when
    Redis cannot be read)."""
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for tenant_id in tenant_ids:
            pipe.hgetall(_pending_key(tenant_id))
        return {tenant_id: _counts(raw) for tenant_id, raw in zip(tenant_ids, pipe.execute(), strict=True)}
    except Exception:  # noqa: BLE001
        return None


def in_window(counts: dict[int, int], start: datetime | None, end: datetime) -> Decimal:
    low = start.timestamp() if start is not None else float("-inf")
    return Decimal(sum(count for minute, count in counts.items() if low <= minute < end.timestamp()))


def pending(tenant_id: str, start: datetime | None, end: datetime) -> Decimal:
    """Requests counted in Redis but not flushed yet, in [start, end)."""
    try:
        counts = _counts(redis_connection().hgetall(_pending_key(tenant_id)))
    except Exception:  # noqa: BLE001
        return Decimal(0)
    low = start.timestamp() if start is not None else float("-inf")
    return Decimal(sum(count for minute, count in counts.items() if low <= minute < end.timestamp()))
