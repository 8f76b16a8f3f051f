"""The outbox: an event is written in the transaction of the change that causes it, with one
delivery row per endpoint that wants it, so a rolled-back change emits nothing and a
committed one is never lost. The delivery job is deferred (enqueued after the commit); should
the process die between the commit and the enqueue, the worker's sweep finds the row.

The event's ``data`` is the object as the API returns it. Those shapes belong to the API, an
entry point this module may not import, so the API registers one serializer per kind of object
(``register``) when the app is built; without one, ``data`` holds the audit details."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert, or_, select

from portal.extensions import db
from portal.infra.transactions import defer
from portal.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from portal.models.base import new_id, utcnow
from portal.webhooks.catalog import FROM_AUDIT

DELIVERY_JOB = "jobs.webhooks.deliver"
QUEUE = "webhooks"

# target type -> (model, serializer(obj, tenant_id, details) -> dict)
Serializer = Callable[[Any, str | None, dict], dict]
_SERIALIZERS: dict[str, tuple[type, Serializer]] = {}


def register(target_type: str, model: type, serializer: Serializer) -> None:
    _SERIALIZERS[target_type] = (model, serializer)


def data_for(tenant_id: str | None, target_type: str | None, target_id: str | None, details: dict) -> dict:
    entry = _SERIALIZERS.get(target_type or "")
    if entry is not None and target_id is not None:
        model, serializer = entry
        obj = db.session.get(model, target_id)  # the identity map: the object just changed
        if obj is not None:
            return serializer(obj, tenant_id, details)
    return {"id": target_id, **details} if target_id else dict(details)


_KNOWN = "portal_outbox_endpoints"


@contextmanager
def endpoints_known(tenant_ids: list[str]) -> Iterator[None]:
    """Read the enabled endpoints of these tenants (and the operator's) once, for the many
    events a billing run's batch may emit about them; most tenants have none."""
    owners = or_(WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.tenant_id.is_(None))
    rows = list(db.session.execute(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True), owners)).scalars())
    db.session.info[_KNOWN] = (set(tenant_ids), rows)
    try:
        yield
    finally:
        db.session.info.pop(_KNOWN, None)


def endpoints_for(tenant_id: str | None, event_type: str, only: WebhookEndpoint | None = None) -> list[WebhookEndpoint]:
    """The enabled endpoints that want this event: the tenant's and the operator's own."""
    if only is not None:
        return [only]
    known = db.session.info.get(_KNOWN)
    if known is not None and tenant_id in known[0]:
        return [e for e in known[1] if e.tenant_id in (None, tenant_id) and e.wants(event_type)]
    owners = WebhookEndpoint.tenant_id.is_(None)
    if tenant_id is not None:
        owners = or_(WebhookEndpoint.tenant_id == tenant_id, owners)
    rows = db.session.execute(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True), owners)).scalars()
    return [endpoint for endpoint in rows if endpoint.wants(event_type)]


def emit(
    tenant_id: str | None,
    event_type: str,
    data: dict | Callable[[], dict],
    only: WebhookEndpoint | None = None,
) -> str | None:
    """Write ``event_type`` for the endpoints that want it, in the current transaction; returns
    the event id, or None when no endpoint wants it (then nothing is written). ``data`` may be
    a callable, called only when someone listens. ``only``: this endpoint alone (a test)."""
    endpoints = endpoints_for(tenant_id, event_type, only)
    if not endpoints:
        return None
    now = utcnow()
    event_id = new_id("evt")
    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "tenant_id": tenant_id,
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": data() if callable(data) else data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    connection = db.session.connection()
    connection.execute(
        insert(WebhookEvent.__table__),
        {"id": event_id, "tenant_id": tenant_id, "event_type": event_type, "body": body, "created_at": now},
    )
    deliveries = [
        {
            "id": new_id("whd"),
            "endpoint_id": endpoint.id,
            "event_id": event_id,
            "tenant_id": tenant_id,
            "event_type": event_type,
            "state": "pending",
            "attempt_count": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for endpoint in endpoints
    ]
    connection.execute(insert(WebhookDelivery.__table__), deliveries)
    for delivery in deliveries:
        defer(DELIVERY_JOB, delivery["id"], queue=QUEUE, retries=0, timeout=60)
    return event_id


def emit_for_audit(action: str, tenant_id: str | None, target_type: str | None, target_id: str | None, details: dict):
    """Called by ``portal.audit`` for every audited change: those the catalog maps become events."""
    event_type = FROM_AUDIT.get(action)
    if event_type is None:
        return None
    return emit(tenant_id, event_type, lambda: data_for(tenant_id, target_type, target_id, details))


def emit_about(tenant_id: str | None, event_type: str, target_type: str, target_id: str, **details):
    """``emit`` with the object's API shape as ``data`` (built only when someone listens)."""
    return emit(tenant_id, event_type, lambda: data_for(tenant_id, target_type, target_id, details))
