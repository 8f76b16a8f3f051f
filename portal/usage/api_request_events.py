"""Counted API requests (portal.usage.api_requests) turned into usage events, one per tenant
and minute, by a worker job every minute and by the billing run before it bills.

Each tenant's counter is committed on its own (the documented exception to "services never
commit"): once its events are stored the Redis key is deleted, so a crash between tenants
redoes only the tenant it was on, under the same idempotency keys."""

import secrets
from datetime import UTC, datetime
from decimal import Decimal

from redis.exceptions import ResponseError

from portal.extensions import db
from portal.infra.queues import redis_connection
from portal.infra.transactions import commit
from portal.models import Tenant
from portal.usage.api_requests import EVENT_NAME, _counts, _flushing_key, _pending_key, _tenants_key
from portal.usage.ingest import EventDraft, Outcome, store


def _flush_key(key: str) -> int:
    redis = redis_connection()
    key = key.decode() if isinstance(key, bytes) else key
    tenant_id, token = key.rsplit(":", 2)[-2:]
    counts = _counts(redis.hgetall(key))
    if db.session.get(Tenant, tenant_id) is None:
        counts = {}  # the tenant was deleted meanwhile: its requests have no one to bill
    outcomes = []
    for index, (minute, count) in enumerate(sorted(counts.items())):
        event = EventDraft(
            tenant_ref=tenant_id,
            key=f"api_requests:{minute}:{token}",
            name=EVENT_NAME,
            occurred_at=datetime.fromtimestamp(minute, UTC),
            quantity=Decimal(count),
            properties={},
            tenant_id=tenant_id,
        )
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
    # Many keys a call: the default (10) is a round trip per 10 keys of the whole Redis, RQ's
    # jobs and results included, and a billing run flushes first.
    for key in redis.scan_iter(match=_flushing_key("*", "*"), count=1000):
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
