"""Attempting deliveries: claim, send, record, retry with backoff, give up, disable.

A delivery is attempted by ``jobs.webhooks.deliver`` in three steps: ``claim`` (the row is
held for the length of an attempt, so two workers never send it at once, and what to send is
read; a transaction of its own), ``send`` (the HTTP request, outside any transaction),
``record`` (the attempt, the outcome, the next retry; another transaction). Receivers may still see a delivery twice (a worker
killed after the request, before the record): they dedupe on ``webhook-id``, the event id."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, or_, select, text, update

from portal.extensions import db
from portal.mail import send_email
from portal.models import Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from portal.models.base import utcnow
from portal.team.services import owner_and_admin_emails
from portal.timezones import format_local
from portal.webhooks import signing, urls

log = logging.getLogger(__name__)


def retry_schedule() -> list[int]:
    return [int(part) for part in str(current_app.config["WEBHOOK_RETRY_SCHEDULE"]).split(",") if part.strip()]


def _lock_seconds() -> float:
    return current_app.config["WEBHOOK_TIMEOUT_SECONDS"] + 10


@dataclass
class Prepared:
    """A claimed delivery and what to send, read in the claim's transaction so that none stays
    open during the request."""

    delivery_id: str
    endpoint_id: str
    attempt_number: int
    url: str | None
    body: bytes
    headers: dict
    failing_since: datetime | None = None
    skip_reason: str | None = None


_DELIVERIES = WebhookDelivery.__table__
_ENDPOINTS = WebhookEndpoint.__table__
_EVENTS = WebhookEvent.__table__
_ATTEMPTS = WebhookAttempt.__table__


def _relaxed_commit() -> None:
    """This transaction's commit need not wait for the disk (PostgreSQL): should the database
    crash just after it, the delivery is only attempted once more, which receivers expect
    (they dedupe on webhook-id). The event and its delivery row, written with the change,
    are committed durably like the change itself."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_SYNCHRONOUS_COMMIT_OFF)


_SYNCHRONOUS_COMMIT_OFF = text("SET LOCAL synchronous_commit TO OFF")


def claim(delivery_id: str) -> Prepared | None:
    """Take the delivery for one attempt if it is pending, due and nobody else has it (one
    UPDATE: of two workers, one wins), and read what to send. None: not ours to attempt."""
    now = utcnow()
    _relaxed_commit()
    claimed = db.session.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == delivery_id,
            _DELIVERIES.c.state == "pending",
            _DELIVERIES.c.next_attempt_at <= now + timedelta(seconds=1),
            or_(_DELIVERIES.c.locked_until.is_(None), _DELIVERIES.c.locked_until < now),
        )
        .values(locked_until=now + timedelta(seconds=_lock_seconds()))
        .returning(_DELIVERIES.c.endpoint_id, _DELIVERIES.c.event_id, _DELIVERIES.c.attempt_count)
    ).first()
    if claimed is None:
        return None
    endpoint_id, event_id, attempts = claimed
    body_of_event = select(_EVENTS.c.body).where(_EVENTS.c.id == event_id).scalar_subquery()
    endpoint, body = db.session.execute(
        select(WebhookEndpoint, body_of_event).where(WebhookEndpoint.id == endpoint_id)
    ).one()
    body = body.encode()
    prepared = Prepared(delivery_id, endpoint_id, attempts + 1, endpoint.url, body, {}, endpoint.failing_since)
    if not endpoint.enabled:
        prepared.url, prepared.skip_reason = None, "Not sent: the endpoint is disabled."
    else:
        prepared.headers = signing.headers(event_id, body, signing.signing_secrets(endpoint))
    return prepared


def send(prepared: Prepared) -> urls.Outcome:
    if prepared.skip_reason:
        return urls.Outcome(None, 0, "", prepared.skip_reason)
    return urls.post(prepared.url, prepared.body, prepared.headers, current_app.config)


def record(prepared: Prepared, outcome: urls.Outcome, trigger: str = "automatic") -> tuple[str, datetime | None]:
    """Store the attempt and decide what comes next: (state, next attempt). A few plain
    statements, no object loading: this runs once per attempt, at hundreds a second."""
    now = utcnow()
    _relaxed_commit()
    number = prepared.attempt_number
    skipped = prepared.skip_reason is not None
    db.session.execute(
        insert(_ATTEMPTS),
        {
            "delivery_id": prepared.delivery_id,
            "number": number,
            "attempted_at": now,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "response_excerpt": outcome.excerpt,
            "error": outcome.error,
            "trigger": trigger,
        },
    )
    schedule = retry_schedule()
    if outcome.succeeded:
        state, next_at, finished = "succeeded", None, now
    elif skipped or number > len(schedule):
        state, next_at, finished = "failed", None, now
    else:
        state, next_at, finished = "pending", now + timedelta(seconds=schedule[number - 1]), None
    db.session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == prepared.delivery_id)
        .values(
            attempt_count=number,
            last_status_code=outcome.status_code,
            last_latency_ms=outcome.latency_ms,
            last_error=outcome.error or (None if outcome.succeeded else f"HTTP {outcome.status_code}"),
            locked_until=None,
            state=state,
            next_attempt_at=next_at,
            finished_at=finished,
        )
    )
    if skipped:
        return state, next_at
    failing_since = None if outcome.succeeded else (prepared.failing_since or now)
    db.session.execute(
        update(_ENDPOINTS)
        .where(_ENDPOINTS.c.id == prepared.endpoint_id)
        .values(
            last_delivery_at=now,
            last_status_code=outcome.status_code,
            last_succeeded=outcome.succeeded,
            failing_since=failing_since,
        )
    )
    disable_after = timedelta(days=current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"])
    if failing_since is not None and now - failing_since >= disable_after:
        endpoint = db.session.get(WebhookEndpoint, prepared.endpoint_id, populate_existing=True)
        if endpoint.enabled:
            _disable_failing(endpoint, now)
    return state, next_at


def _disable_failing(endpoint: WebhookEndpoint, now) -> None:
    days = current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"]
    endpoint.enabled = False
    endpoint.disabled_reason = (
        f"Disabled automatically: every delivery failed for {days:g} days "
        f"(since {format_local(endpoint.failing_since)})."
    )
    log.warning("Webhook endpoint %s disabled after failing since %s", endpoint.id, endpoint.failing_since)
    if endpoint.tenant_id is None:
        return
    tenant = db.session.get(Tenant, endpoint.tenant_id)
    recipients = owner_and_admin_emails(endpoint.tenant_id)
    for email in recipients:
        send_email(
            email,
            "A webhook endpoint was disabled",
            "webhook_disabled",
            tenant=tenant,
            endpoint=endpoint,
            days=days,
            company=tenant.company_name,
        )


def retry_now(delivery: WebhookDelivery) -> WebhookDelivery:
    """Make the delivery due at once (a Resend): one more attempt, whatever its state."""
    delivery.state, delivery.finished_at = "pending", None
    delivery.next_attempt_at, delivery.locked_until = utcnow(), None
    return delivery


def due(grace_seconds: float = 0, limit: int = 1000) -> list[str]:
    """Pending deliveries whose attempt is overdue by ``grace_seconds`` and that nobody holds:
    their job was lost (a crash between commit and enqueue, a killed worker) or never queued."""
    now = utcnow()
    return list(
        db.session.execute(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now - timedelta(seconds=grace_seconds),
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            .limit(limit)
        ).scalars()
    )
