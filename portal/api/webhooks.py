"""Outbound webhooks: a tenant's endpoints, their deliveries, test events and resends; the
operator's pipeline events; the event catalog. Also where the API tells the outbox how each
kind of object looks in an event's ``data`` (the same shape the API returns)."""

import json
from functools import partial

from sqlalchemy import select

from portal.api.billing import invoice_out, subscription_out
from portal.api.keys import api_key_out
from portal.api.members import member_out
from portal.api.registry import EVENT_PAYLOADS, OPERATOR, PUBLIC, ApiError, operation
from portal.api.schemas import common
from portal.api.schemas import webhooks as schemas
from portal.api.schemas.billing import InvoiceOut, SubscriptionOut
from portal.api.schemas.keys import ApiKeyOut
from portal.api.schemas.tenants import TenantOut
from portal.api.tenants import tenant_out
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import (
    ADMIN_SCOPE,
    ApiKey,
    CreditGrant,
    Invoice,
    Membership,
    Subscription,
    Tenant,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.tenants.scoped import get_for_tenant
from portal.webhooks import outbox
from portal.webhooks import services as webhooks
from portal.webhooks.catalog import EVENT_TYPES

TAGS = ["webhooks"]
webhook_operation = partial(operation, scope=ADMIN_SCOPE, tags=TAGS)
PIPELINE_DATA_LIMIT = 16 * 1024


def _member(user: User, tenant_id: str | None, details: dict) -> dict:
    membership = db.session.execute(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if membership is not None:
        return member_out(membership).model_dump(mode="json")
    return {"user_id": user.id, "email": user.email, "name": user.name, "role": details.get("role"), "joined_at": None}


def _credit(grant: CreditGrant, tenant_id: str | None, details: dict) -> dict:
    return {
        "grant_id": grant.id,
        "amount": details.get("amount"),
        "currency": details.get("currency"),
        "expires_at": details.get("expires_at"),
        "reason": details.get("reason"),
    }


outbox.register("tenant", Tenant, lambda tenant, tenant_id, details: tenant_out(tenant).model_dump(mode="json"))
outbox.register("api_key", ApiKey, lambda key, tenant_id, details: api_key_out(key).model_dump(mode="json"))
outbox.register("invoice", Invoice, lambda invoice, tenant_id, details: invoice_out(invoice).model_dump(mode="json"))
outbox.register(
    "subscription", Subscription, lambda sub, tenant_id, details: subscription_out(sub).model_dump(mode="json")
)
outbox.register("user", User, _member)
outbox.register("credit_grant", CreditGrant, _credit)
EVENT_PAYLOADS.update(
    {
        "customer.": TenantOut,
        "subscription.": SubscriptionOut,
        "invoice.": InvoiceOut,
        "api_key.": ApiKeyOut,
        "member.": schemas.MemberEventData,
        "credit.": schemas.CreditEventData,
        "quota.": schemas.QuotaEventData,
        "pipeline.": schemas.PipelineEventData,
        "webhook.test": schemas.WebhookTestData,
    }
)


def webhook_out(endpoint: WebhookEndpoint) -> schemas.WebhookOut:
    return common.out(schemas.WebhookOut, endpoint, webhook_id=endpoint.id)


def delivery_out(delivery: WebhookDelivery) -> schemas.DeliveryOut:
    return common.out(
        schemas.DeliveryOut,
        delivery,
        delivery_id=delivery.id,
        webhook_id=delivery.endpoint_id,
        next_attempt_at=delivery.next_attempt_at if delivery.state == "pending" else None,
        payload=json.loads(delivery.event.body),
        attempts=[common.out(schemas.AttemptOut, attempt) for attempt in delivery.attempts],
    )


def _delivery_after_commit(delivery_id: str) -> schemas.DeliveryOut:
    """Commit, then the delivery as it stands: inline (embedded) the attempt has happened by
    then; with a worker it is queued."""
    commit()
    db.session.expire_all()
    return delivery_out(db.session.get(WebhookDelivery, delivery_id))


def _endpoint(tenant: Tenant, webhook_id: str) -> WebhookEndpoint:
    return get_for_tenant(WebhookEndpoint, webhook_id, tenant, "Webhook")


@webhook_operation(
    "POST",
    "/tenants/<tenant_id>/webhooks",
    status=201,
    errors=[409],
    links={
        name: {"webhook_id": "$response.body#/webhook_id"}
        for name in (
            "get_webhook",
            "update_webhook",
            "delete_webhook",
            "rotate_webhook_secret",
            "test_webhook",
            "list_webhook_deliveries",
        )
    },
)
def create_webhook(principal, tenant: Tenant, body: schemas.WebhookCreateIn) -> schemas.WebhookCreatedOut:
    """Add a webhook endpoint (its signing secret is in this response only)

    Deliveries are signed per the Standard Webhooks specification (headers webhook-id,
    webhook-timestamp, webhook-signature). At most 10 endpoints per tenant (409). In production the
    URL must be https:// and resolve to public addresses only.
    """
    endpoint, secret = webhooks.create_endpoint(
        principal.actor(), tenant, body.url, list(body.event_types), body.description
    )
    commit()
    return schemas.WebhookCreatedOut(
        **webhook_out(endpoint).model_dump(),
        secret=secret,
        message="Webhook endpoint created. Save the signing secret - it will only be shown once!",
    )


@webhook_operation("GET", "/tenants/<tenant_id>/webhooks")
def list_webhooks(principal, tenant: Tenant, query: common.PageQuery) -> schemas.WebhookListOut:
    """List the tenant's webhook endpoints (never their secrets)"""
    return common.page_out(schemas.WebhookListOut, webhooks.endpoints_query(tenant), query, webhook_out)


@webhook_operation("GET", "/tenants/<tenant_id>/webhooks/<webhook_id>")
def get_webhook(principal, tenant: Tenant, webhook_id: str) -> schemas.WebhookOut:
    """Get one webhook endpoint"""
    return webhook_out(_endpoint(tenant, webhook_id))


@webhook_operation("PATCH", "/tenants/<tenant_id>/webhooks/<webhook_id>")
def update_webhook(principal, tenant: Tenant, webhook_id: str, body: schemas.WebhookPatchIn) -> schemas.WebhookOut:
    """Change an endpoint's URL, events, description, or enable/disable it"""
    endpoint = _endpoint(tenant, webhook_id)
    webhooks.update_endpoint(
        principal.actor(),
        tenant,
        endpoint,
        url=body.url,
        event_types=list(body.event_types) if body.event_types is not None else None,
        description=body.description if "description" in body.model_fields_set else None,
        enabled=body.enabled,
    )
    commit()
    return webhook_out(endpoint)


@webhook_operation("DELETE", "/tenants/<tenant_id>/webhooks/<webhook_id>")
def delete_webhook(principal, tenant: Tenant, webhook_id: str) -> schemas.WebhookDeletedOut:
    """Delete a webhook endpoint and its delivery log"""
    endpoint = _endpoint(tenant, webhook_id)
    webhooks.delete_endpoint(principal.actor(), tenant, endpoint)
    commit()
    return schemas.WebhookDeletedOut(
        webhook_id=webhook_id, deleted=True, message="Webhook endpoint deleted; no more events go to it."
    )


@webhook_operation("POST", "/tenants/<tenant_id>/webhooks/<webhook_id>/rotate-secret")
def rotate_webhook_secret(principal, tenant: Tenant, webhook_id: str) -> schemas.WebhookSecretOut:
    """Replace the signing secret (the old one keeps signing alongside for 24 hours)"""
    endpoint = _endpoint(tenant, webhook_id)
    secret = webhooks.rotate_secret(principal.actor(), tenant, endpoint)
    commit()
    return schemas.WebhookSecretOut(
        webhook_id=endpoint.id,
        secret=secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        message="New signing secret created. Save it - it will only be shown once!",
    )


@webhook_operation(
    "POST",
    "/tenants/<tenant_id>/webhooks/<webhook_id>/test",
    status=202,
    links={
        "resend_webhook_delivery": {
            "webhook_id": "$response.body#/webhook_id",
            "delivery_id": "$response.body#/delivery_id",
        }
    },
)
def test_webhook(principal, tenant: Tenant, webhook_id: str) -> schemas.DeliveryOut:
    """Send a webhook.test event to this endpoint now"""
    endpoint = _endpoint(tenant, webhook_id)
    return _delivery_after_commit(webhooks.send_test(principal.actor(), tenant, endpoint).id)


@webhook_operation("GET", "/tenants/<tenant_id>/webhooks/<webhook_id>/deliveries")
def list_webhook_deliveries(
    principal, tenant: Tenant, webhook_id: str, query: schemas.DeliveryQuery
) -> schemas.DeliveryListOut:
    """The endpoint's deliveries, newest first, with every attempt"""
    endpoint = _endpoint(tenant, webhook_id)
    statement = webhooks.deliveries_query(endpoint, query.state)
    return common.page_out(schemas.DeliveryListOut, statement, query, delivery_out)


@webhook_operation("POST", "/tenants/<tenant_id>/webhooks/<webhook_id>/deliveries/<delivery_id>/resend", status=202)
def resend_webhook_delivery(principal, tenant: Tenant, webhook_id: str, delivery_id: str) -> schemas.DeliveryOut:
    """Attempt a delivery once more, now (same event id and body)"""
    endpoint = _endpoint(tenant, webhook_id)
    delivery = webhooks.get_delivery(endpoint, delivery_id)
    webhooks.resend(principal.actor(), tenant, delivery)
    return _delivery_after_commit(delivery.id)


@operation(
    "POST", "/tenants/<tenant_id>/events/pipeline", auth=OPERATOR, status=202, tags=TAGS, allowed_when_suspended=True
)
def report_pipeline_event(principal, tenant: Tenant, body: schemas.PipelineEventIn) -> schemas.PipelineEventOut:
    """Report a pipeline run's end; the tenant's endpoints get pipeline.completed or pipeline.failed"""
    extra = body.data or {}
    if len(json.dumps(extra, default=str)) > PIPELINE_DATA_LIMIT:
        raise ApiError(
            400, "VALIDATION_ERROR", "data: keep it under 16 KB.", [{"field": "data", "message": "too large"}]
        )
    data = {**extra, "pipeline_id": body.pipeline_id, "run_id": body.run_id}
    event_id = webhooks.report_pipeline(principal.actor(), tenant, body.event_type, data)
    count = db.session.scalar(select(db.func.count()).where(WebhookDelivery.event_id == event_id)) if event_id else 0
    commit()
    return schemas.PipelineEventOut(
        event_id=event_id, event_type=body.event_type, tenant_id=tenant.tenant_id, delivered_to=count
    )


@operation("GET", "/webhook-event-types", auth=PUBLIC, tags=TAGS)
def list_webhook_event_types(principal) -> schemas.EventTypeListOut:
    """The events a webhook endpoint can subscribe to"""
    return schemas.EventTypeListOut(
        event_types=[schemas.EventTypeOut(event_type=name, description=about) for name, about in EVENT_TYPES.items()]
    )
