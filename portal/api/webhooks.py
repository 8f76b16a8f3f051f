"""Outbound webhooks: a tenant's endpoints, their deliveries, test events and resends; the
operator's pipeline events; the event catalog. Also where the API tells the outbox how each
kind of object looks in an event's ``data`` (the same shape the API returns)."""

import json

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
    return schemas.WebhookOut(
        webhook_id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        secret_hint=endpoint.secret_hint,
        last_delivery_at=endpoint.last_delivery_at,
        last_status_code=endpoint.last_status_code,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def delivery_out(delivery: WebhookDelivery) -> schemas.DeliveryOut:
    return schemas.DeliveryOut(
        delivery_id=delivery.id,
        webhook_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        state=delivery.state,
        attempt_count=delivery.attempt_count,
        last_status_code=delivery.last_status_code,
        last_latency_ms=delivery.last_latency_ms,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if delivery.state == "pending" else None,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        payload=json.loads(delivery.event.body),
        attempts=[
            schemas.AttemptOut(
                number=attempt.number,
                attempted_at=attempt.attempted_at,
                status_code=attempt.status_code,
                latency_ms=attempt.latency_ms,
                response_excerpt=attempt.response_excerpt,
                error=attempt.error,
                trigger=attempt.trigger,
            )
            for attempt in delivery.attempts
        ],
    )


def _delivery_after_commit(delivery_id: str) -> schemas.DeliveryOut:
    """Commit, then the delivery as it stands: inline (embedded) the attempt has happened by
    then; with a worker it is queued."""
    commit()
    db.session.expire_all()
    return delivery_out(db.session.get(WebhookDelivery, delivery_id))


def _endpoint(tenant: Tenant, webhook_id: str) -> WebhookEndpoint:
    return get_for_tenant(WebhookEndpoint, webhook_id, tenant, "Webhook")


@operation(
    "POST",
    "/tenants/<tenant_id>/webhooks",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookCreatedOut,
    status=201,
    tags=TAGS,
    errors=[409],
    summary="Add a webhook endpoint (its signing secret is in this response only)",
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
    description="Deliveries are signed per the Standard Webhooks specification (headers webhook-id, "
    "webhook-timestamp, webhook-signature). At most 10 endpoints per tenant (409). In production the URL "
    "must be https:// and resolve to public addresses only.",
)
def create_webhook(principal, tenant: Tenant, body: schemas.WebhookCreateIn):
    endpoint, secret = webhooks.create_endpoint(
        principal.actor(), tenant, body.url, list(body.event_types), body.description
    )
    commit()
    return schemas.WebhookCreatedOut(
        **webhook_out(endpoint).model_dump(),
        secret=secret,
        message="Webhook endpoint created. Save the signing secret - it will only be shown once!",
    )


@operation(
    "GET",
    "/tenants/<tenant_id>/webhooks",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookListOut,
    tags=TAGS,
    summary="List the tenant's webhook endpoints (never their secrets)",
)
def list_webhooks(principal, tenant: Tenant, query: common.PageQuery):
    page, pagination = common.page_of(webhooks.endpoints_query(tenant), query)
    return schemas.WebhookListOut(webhooks=[webhook_out(e) for e in page], pagination=pagination)


@operation(
    "GET",
    "/tenants/<tenant_id>/webhooks/<webhook_id>",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookOut,
    tags=TAGS,
    summary="Get one webhook endpoint",
)
def get_webhook(principal, tenant: Tenant, webhook_id: str):
    return webhook_out(_endpoint(tenant, webhook_id))


@operation(
    "PATCH",
    "/tenants/<tenant_id>/webhooks/<webhook_id>",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookOut,
    tags=TAGS,
    summary="Change an endpoint's URL, events, description, or enable/disable it",
)
def update_webhook(principal, tenant: Tenant, webhook_id: str, body: schemas.WebhookPatchIn):
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


@operation(
    "DELETE",
    "/tenants/<tenant_id>/webhooks/<webhook_id>",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookDeletedOut,
    tags=TAGS,
    summary="Delete a webhook endpoint and its delivery log",
)
def delete_webhook(principal, tenant: Tenant, webhook_id: str):
    endpoint = _endpoint(tenant, webhook_id)
    webhooks.delete_endpoint(principal.actor(), tenant, endpoint)
    commit()
    return schemas.WebhookDeletedOut(
        webhook_id=webhook_id, deleted=True, message="Webhook endpoint deleted; no more events go to it."
    )


@operation(
    "POST",
    "/tenants/<tenant_id>/webhooks/<webhook_id>/rotate-secret",
    scope=ADMIN_SCOPE,
    response=schemas.WebhookSecretOut,
    tags=TAGS,
    summary="Replace the signing secret (the old one keeps signing alongside for 24 hours)",
)
def rotate_webhook_secret(principal, tenant: Tenant, webhook_id: str):
    endpoint = _endpoint(tenant, webhook_id)
    secret = webhooks.rotate_secret(principal.actor(), tenant, endpoint)
    commit()
    return schemas.WebhookSecretOut(
        webhook_id=endpoint.id,
        secret=secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        message="New signing secret created. Save it - it will only be shown once!",
    )


@operation(
    "POST",
    "/tenants/<tenant_id>/webhooks/<webhook_id>/test",
    scope=ADMIN_SCOPE,
    response=schemas.DeliveryOut,
    status=202,
    tags=TAGS,
    summary="Send a webhook.test event to this endpoint now",
    links={
        "resend_webhook_delivery": {
            "webhook_id": "$response.body#/webhook_id",
            "delivery_id": "$response.body#/delivery_id",
        }
    },
)
def test_webhook(principal, tenant: Tenant, webhook_id: str):
    endpoint = _endpoint(tenant, webhook_id)
    return _delivery_after_commit(webhooks.send_test(principal.actor(), tenant, endpoint).id)


@operation(
    "GET",
    "/tenants/<tenant_id>/webhooks/<webhook_id>/deliveries",
    scope=ADMIN_SCOPE,
    response=schemas.DeliveryListOut,
    tags=TAGS,
    summary="The endpoint's deliveries, newest first, with every attempt",
)
def list_webhook_deliveries(principal, tenant: Tenant, webhook_id: str, query: schemas.DeliveryQuery):
    endpoint = _endpoint(tenant, webhook_id)
    page, pagination = common.page_of(webhooks.deliveries_query(endpoint, query.state), query)
    return schemas.DeliveryListOut(deliveries=[delivery_out(d) for d in page], pagination=pagination)


@operation(
    "POST",
    "/tenants/<tenant_id>/webhooks/<webhook_id>/deliveries/<delivery_id>/resend",
    scope=ADMIN_SCOPE,
    response=schemas.DeliveryOut,
    status=202,
    tags=TAGS,
    summary="Attempt a delivery once more, now (same event id and body)",
)
def resend_webhook_delivery(principal, tenant: Tenant, webhook_id: str, delivery_id: str):
    endpoint = _endpoint(tenant, webhook_id)
    delivery = webhooks.get_delivery(endpoint, delivery_id)
    webhooks.resend(principal.actor(), tenant, delivery)
    return _delivery_after_commit(delivery.id)


@operation(
    "POST",
    "/tenants/<tenant_id>/events/pipeline",
    auth=OPERATOR,
    response=schemas.PipelineEventOut,
    status=202,
    tags=TAGS,
    allowed_when_suspended=True,
    summary="Report a pipeline run's end; the tenant's endpoints get pipeline.completed or pipeline.failed",
)
def report_pipeline_event(principal, tenant: Tenant, body: schemas.PipelineEventIn):
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


@operation(
    "GET",
    "/webhook-event-types",
    auth=PUBLIC,
    response=schemas.EventTypeListOut,
    tags=TAGS,
    summary="The events a webhook endpoint can subscribe to",
)
def list_webhook_event_types(principal):
    return schemas.EventTypeListOut(
        event_types=[schemas.EventTypeOut(event_type=name, description=about) for name, about in EVENT_TYPES.items()]
    )
