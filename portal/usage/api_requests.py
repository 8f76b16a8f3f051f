"""Seed 000's ``api_requests_count``: every authenticated tenant-key API request counts one
``api_request`` unit, without a database write per request.

A request adds one to its tenant's counter for the current minute in Redis (fakeredis, in
process, in the embedded mode); ``api_request_events.flush()`` (a worker job every minute, and the billing run
before it bills) turns the counters into usage events, one per tenant and minute, with an
idempotency key derived from the flush, so a flush that crashed half-way is redone without
counting anything twice. Reads of usage add what is still waiting in Redis.

Each web process adds up its requests for ``API_REQUEST_COUNT_SECONDS`` (1 s) before it sends
them to Redis in one round trip (from a timer thread when no request comes to send them): a
round trip per request was most of an authenticated API read's time. A request therefore
shows in usage up to that long after it is answered; 0 sends each at once.
"""

import atexit
import logging
import threading
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal

from flask import current_app

from portal.infra.queues import database_key, redis_connection

log = logging.getLogger(__name__)

EVENT_NAME = "api_request"


def database_prefix() -> str:
    """Usage keys of one database (see portal.infra.queues.database_key)."""
    return database_key("usage")


def _prefix() -> str:
    return f"{database_prefix()}:api_requests"


def _tenants_key(prefix: str | None = None) -> str:
    return f"{prefix or _prefix()}:tenants"


def _pending_key(tenant_id: str, prefix: str | None = None) -> str:
    return f"{prefix or _prefix()}:pending:{tenant_id}"


def _flushing_key(tenant_id: str, token: str) -> str:
    return f"{_prefix()}:flushing:{tenant_id}:{token}"


class _Tally:
    """One process's requests not yet in Redis, by (tenant, minute); sent at most ``seconds``
    after the first of them, by the request that finds them due or by a timer."""

    def __init__(self, connection, prefix: str, seconds: float):
        self.connection, self.prefix, self.seconds = connection, prefix, seconds
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.timer: threading.Timer | None = None
        self.started = 0.0  # when the oldest count still here was added
        atexit.register(self.send)  # a worker shutting down sends what it holds

    def add(self, tenant_id: str, minute: int) -> None:
        with self.lock:
            if not self.counts:
                self.started = time.monotonic()
            self.counts[(tenant_id, minute)] += 1
            due = time.monotonic() - self.started >= self.seconds
            if not due and self.timer is None:
                self.timer = threading.Timer(self.seconds, self.send)
                self.timer.daemon = True
                self.timer.start()
        if due:
            self.send()

    def send(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, Counter()
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if counts:
            _send(self.connection, self.prefix, counts)


def _send(connection, prefix: str, counts: Counter) -> None:
    """Add ``counts`` to Redis in one round trip; a Redis failure costs them, never a request."""
    try:
        pipe = connection.pipeline(transaction=False)
        for (tenant_id, minute), count in counts.items():
            pipe.hincrby(_pending_key(tenant_id, prefix), str(minute), count)
        pipe.sadd(_tenants_key(prefix), *{tenant_id for tenant_id, _ in counts})
        pipe.execute()
    except Exception as error:  # noqa: BLE001 - metering must not break the API
        log.warning("%d API request(s) not counted (%s)", sum(counts.values()), type(error).__name__)


def record(tenant_id: str, at: datetime | None = None) -> None:
    """Count one request (see the module's docstring for when it reaches Redis)."""
    minute = int(at.timestamp() if at is not None else time.time()) // 60 * 60
    app = current_app._get_current_object()  # one proxy look-up: this runs on every tenant request
    seconds = app.config.get("API_REQUEST_COUNT_SECONDS", 0)
    if not seconds:
        _send(redis_connection(), _prefix(), Counter({(tenant_id, minute): 1}))
        return
    tally = app.extensions.get("portal_api_request_tally")
    if tally is None:
        tally = app.extensions["portal_api_request_tally"] = _Tally(redis_connection(), _prefix(), seconds)
    tally.add(tenant_id, minute)


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
