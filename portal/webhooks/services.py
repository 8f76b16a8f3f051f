"""Webhook endpoints (a tenant's, or the operator's own), test events, resends and the
operator's pipeline events. Services flush and audit; the caller commits."""

from datetime import timedelta

from flask import current_app
from sqlalchemy import Select, func, select

from portal import audit
from portal.access import Actor
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import defer
from portal.models import DELIVERY_STATES, Tenant, WebhookDelivery, WebhookEndpoint
from portal.models.base import new_id, utcnow
from portal.tenants.scoped import could_be_an_id
from portal.webhooks import outbox, signing, urls
from portal.webhooks.catalog import EVENT_TYPES, PIPELINE_EVENT_TYPES
from portal.webhooks.delivery import retry_now

ROTATION_OVERLAP = timedelta(hours=24)
ALL_EVENTS = "*"


def check_event_types(event_types: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(event_types or []))
    if not chosen:
        raise ValidationFailed("Choose at least one event, or all events.", field="event_types")
    unknown = [name for name in chosen if name != ALL_EVENTS and name not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"Unknown event type {unknown[0]!r}: see the list of events on the Webhooks page or in the API reference.",
            field="event_types",
        )
    return [ALL_EVENTS] if ALL_EVENTS in chosen else chosen


def _description(description: str | None) -> str:
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationFailed("Keep the description under 200 characters.", field="description")
    return description


def endpoints_query(tenant: Tenant | None) -> Select:
    owner = WebhookEndpoint.tenant_id.is_(None) if tenant is None else WebhookEndpoint.tenant_id == tenant.tenant_id
    return select(WebhookEndpoint).where(owner).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)


def create_endpoint(
    actor: Actor, tenant: Tenant | None, url: str, event_types: list[str] | None, description: str | None = ""
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once, stored sealed)."""
    target = urls.check(url, current_app.config)
    event_types = check_event_types(event_types)
    description = _description(description)
    limit = current_app.config["WEBHOOK_MAX_ENDPOINTS"]
    count = db.session.scalar(select(func.count()).select_from(endpoints_query(tenant).subquery()))
    if count >= limit:
        raise Conflict(f"You can have at most {limit} webhook endpoints; delete one you no longer use first.")
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        tenant_id=tenant.tenant_id if tenant else None,
        url=url.strip(),
        description=description,
        event_types=event_types,
        enabled=True,
    )
    secret = signing.new_secret()
    endpoint.sealed_secret, endpoint.sealed_key_id = signing.seal(endpoint.id, secret)
    endpoint.secret_hint = secret[-4:]
    db.session.add(endpoint)
    db.session.flush()
    audit.record(actor, "webhook.created", tenant, "webhook", endpoint.id, url=endpoint.url, host=target.host)
    return endpoint, secret


def update_endpoint(
    actor: Actor,
    tenant: Tenant | None,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    changes = {}
    if url is not None and url.strip() != endpoint.url:
        urls.check(url, current_app.config)
        endpoint.url = changes["url"] = url.strip()
    if event_types is not None:
        chosen = check_event_types(event_types)
        if chosen != endpoint.event_types:
            endpoint.event_types = changes["event_types"] = chosen
    if description is not None and _description(description) != endpoint.description:
        endpoint.description = changes["description"] = _description(description)
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = changes["enabled"] = enabled
        endpoint.disabled_reason = None if enabled else "Disabled by hand."
        if enabled:
            endpoint.failing_since = None  # a fresh start: five more days before it is disabled again
    if changes:
        endpoint.updated_at = utcnow()
        audit.record(actor, "webhook.updated", tenant, "webhook", endpoint.id, changes=changes)
    return endpoint


def delete_endpoint(actor: Actor, tenant: Tenant | None, endpoint: WebhookEndpoint) -> None:
    audit.record(actor, "webhook.deleted", tenant, "webhook", endpoint.id, url=endpoint.url)
    db.session.delete(endpoint)
    db.session.flush()


def rotate_secret(actor: Actor, tenant: Tenant | None, endpoint: WebhookEndpoint) -> str:
    """A new secret; the old one keeps signing alongside for 24 hours, so receivers switch over
    without losing an event."""
    secret = signing.new_secret()
    endpoint.sealed_previous_secret, endpoint.previous_key_id = endpoint.sealed_secret, endpoint.sealed_key_id
    endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    endpoint.sealed_secret, endpoint.sealed_key_id = signing.seal(endpoint.id, secret)
    endpoint.secret_hint = secret[-4:]
    endpoint.updated_at = utcnow()
    audit.record(actor, "webhook.secret_rotated", tenant, "webhook", endpoint.id)
    return secret


def send_test(actor: Actor, tenant: Tenant | None, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` event to this endpoint alone, whatever it subscribes to."""
    event_id = outbox.emit(
        endpoint.tenant_id,
        "webhook.test",
        {
            "webhook_id": endpoint.id,
            "message": "This is a test event. If you can read it, your endpoint receives and verifies our webhooks.",
        },
        only=endpoint,
    )
    audit.record(actor, "webhook.test_sent", tenant, "webhook", endpoint.id, event_id=event_id)
    return db.session.execute(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event_id, WebhookDelivery.endpoint_id == endpoint.id)
    ).scalar_one()


def resend(actor: Actor, tenant: Tenant | None, delivery: WebhookDelivery) -> WebhookDelivery:
    """One more attempt of a delivery, now (the same event id and body)."""
    retry_now(delivery)
    defer(outbox.DELIVERY_JOB, delivery.id, "manual", queue=outbox.QUEUE, retries=0, timeout=60)
    audit.record(actor, "webhook.resent", tenant, "webhook_delivery", delivery.id, event_id=delivery.event_id)
    return delivery


def deliveries_query(
    endpoint: WebhookEndpoint | None = None, state: str | None = None, tenant_id: str | None = None
) -> Select:
    """Newest first; the console passes no endpoint (every tenant's)."""
    statement = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    if endpoint is not None:
        statement = statement.where(WebhookDelivery.endpoint_id == endpoint.id)
    if tenant_id:
        statement = statement.where(WebhookDelivery.tenant_id == tenant_id)
    if state:
        if state not in DELIVERY_STATES:
            raise ValidationFailed(f"Choose a state among {', '.join(DELIVERY_STATES)}.", field="state")
        statement = statement.where(WebhookDelivery.state == state)
    return statement


def get_delivery(endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    delivery = db.session.get(WebhookDelivery, delivery_id) if could_be_an_id(delivery_id) else None
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("Delivery not found")
    return delivery


def health(endpoints: list[WebhookEndpoint]) -> dict[str, dict]:
    """Per endpoint: deliveries failed and pending over the last 7 days, in one query."""
    since = utcnow() - timedelta(days=7)
    rows = db.session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.state, func.count())
        .where(WebhookDelivery.endpoint_id.in_([e.id for e in endpoints]), WebhookDelivery.created_at >= since)
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.state)
    ).all()
    found = {endpoint.id: {"failed": 0, "pending": 0, "succeeded": 0} for endpoint in endpoints}
    for endpoint_id, state, count in rows:
        found[endpoint_id][state] = count
    return found


def report_pipeline(actor: Actor, tenant: Tenant, event_type: str, data: dict) -> str | None:
    """The operator's report of a pipeline run, fanned out to the tenant's endpoints."""
    if event_type not in PIPELINE_EVENT_TYPES:
        raise ValidationFailed(f"event_type must be one of {', '.join(PIPELINE_EVENT_TYPES)}.", field="event_type")
    event_id = outbox.emit(tenant.tenant_id, event_type, data)
    audit.record(actor, "pipeline.reported", tenant, "pipeline", str(data.get("pipeline_id") or ""), event=event_type)
    return event_id
