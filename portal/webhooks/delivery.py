"""Attempting deliveries: claim, send, record, retry with backoff, give up, disable.

A delivery is attempted by ``jobs.webhooks.deliver`` in three steps, each the job's own
transaction: ``claim`` (the row is locked for the length of an attempt, so two workers never
send it at once), ``send`` (the HTTP request, outside any transaction), ``record`` (the
attempt, the outcome, the next retry). Receivers may still see a delivery twice (a worker
killed after the request, before the record): they dedupe on ``webhook-id``, the event id."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from portal.extensions import db
from portal.mail import send_email
from portal.models import Membership, Tenant, User, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from portal.models.base import utcnow
from portal.webhooks import signing, urls

log = logging.getLogger(__name__)

NOTIFIED_ROLES = ("owner", "admin")


def retry_schedule() -> list[int]:
    return [int(part) for part in str(current_app.config["WEBHOOK_RETRY_SCHEDULE"]).split(",") if part.strip()]


def max_attempts() -> int:
    return len(retry_schedule()) + 1


def _lock_seconds() -> float:
    return current_app.config["WEBHOOK_TIMEOUT_SECONDS"] + 10


def claim(delivery_id: str) -> bool:
    """Take the delivery for one attempt if it is pending, due and nobody else has it."""
    now = utcnow()
    table = WebhookDelivery.__table__
    result = db.session.execute(
        update(table)
        .where(
            table.c.id == delivery_id,
            table.c.state == "pending",
            table.c.next_attempt_at <= now + timedelta(seconds=1),
            or_(table.c.locked_until.is_(None), table.c.locked_until < now),
        )
        .values(locked_until=now + timedelta(seconds=_lock_seconds()))
    )
    return result.rowcount == 1


@dataclass
class Prepared:
    delivery_id: str
    url: str | None
    body: bytes
    headers: dict
    skip_reason: str | None = None


def prepare(delivery_id: str) -> Prepared:
    """What to send, read before the request so that no transaction stays open during it."""
    delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = delivery.endpoint
    body = delivery.event.body.encode()
    if not endpoint.enabled:
        return Prepared(delivery_id, None, body, {}, "Not sent: the endpoint is disabled.")
    signed = signing.headers(delivery.event_id, body, signing.signing_secrets(endpoint))
    return Prepared(delivery_id, endpoint.url, body, signed)


def send(prepared: Prepared) -> urls.Outcome:
    if prepared.skip_reason:
        return urls.Outcome(None, 0, "", prepared.skip_reason)
    return urls.post(prepared.url, prepared.body, prepared.headers, current_app.config)


def record(delivery_id: str, outcome: urls.Outcome, trigger: str = "automatic") -> WebhookDelivery:
    """Store the attempt and decide what comes next; returns the delivery."""
    now = utcnow()
    delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = delivery.endpoint
    delivery.attempt_count += 1
    db.session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=delivery.attempt_count,
            attempted_at=now,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
            trigger=trigger,
        )
    )
    delivery.last_status_code = outcome.status_code
    delivery.last_latency_ms = outcome.latency_ms
    delivery.last_error = outcome.error or (None if outcome.succeeded else f"HTTP {outcome.status_code}")
    delivery.locked_until = None
    skipped = outcome.status_code is None and not endpoint.enabled
    if not skipped:
        endpoint.last_delivery_at, endpoint.last_status_code = now, outcome.status_code
        endpoint.last_succeeded = outcome.succeeded
    if outcome.succeeded:
        delivery.state, delivery.finished_at, delivery.next_attempt_at = "succeeded", now, None
        endpoint.failing_since = None
        return delivery
    schedule = retry_schedule()
    if skipped or delivery.attempt_count > len(schedule):
        delivery.state, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
    else:
        delivery.next_attempt_at = now + timedelta(seconds=schedule[delivery.attempt_count - 1])
    if not skipped:
        endpoint.failing_since = endpoint.failing_since or now
        if now - endpoint.failing_since >= timedelta(days=current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"]):
            _disable_failing(endpoint, now)
    return delivery


def _disable_failing(endpoint: WebhookEndpoint, now) -> None:
    days = current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"]
    endpoint.enabled = False
    endpoint.disabled_reason = (
        f"Disabled automatically: every delivery failed for {days:g} days "
        f"(since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC)."
    )
    log.warning("Webhook endpoint %s disabled after failing since %s", endpoint.id, endpoint.failing_since)
    if endpoint.tenant_id is None:
        return
    tenant = db.session.get(Tenant, endpoint.tenant_id)
    recipients = db.session.execute(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == endpoint.tenant_id, Membership.role.in_(NOTIFIED_ROLES))
        .order_by(User.email)
    ).scalars()
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
