"""Bodies of the webhook routes (``portal/api/webhooks.py``)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from portal.api.schemas.common import Body, Out, PageQuery, Pagination
from portal.models import DELIVERY_STATES
from portal.webhooks.catalog import EVENT_TYPES, PIPELINE_EVENT_TYPES

EventTypeName = Literal[tuple([*EVENT_TYPES, "*"])]  # type: ignore[valid-type]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
EVENT_TYPES_HELP = 'The events to send, or ["*"] for all of them. ' + " ".join(
    f"`{name}`: {about}" for name, about in EVENT_TYPES.items()
)


class WebhookCreateIn(Body):
    url: Url = Field(description="Where to POST events: https:// (plain http:// only outside production).")
    event_types: list[EventTypeName] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1, description=EVENT_TYPES_HELP
    )
    description: Description | None = None


class WebhookPatchIn(Body):
    url: Url | None = None
    event_types: list[EventTypeName] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: Description | None = None
    enabled: bool | None = Field(
        None, description="false stops deliveries; true resumes them (and resets the failure count)."
    )


class WebhookOut(Out):
    webhook_id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    secret_hint: str = Field(description="The last four characters of the signing secret.")
    last_delivery_at: datetime | None
    last_status_code: int | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...), shown in this response only.")
    message: str


class WebhookListOut(Out):
    webhooks: list[WebhookOut]
    pagination: Pagination


class WebhookSecretOut(Out):
    webhook_id: str
    secret: str = Field(description="The new signing secret, shown in this response only.")
    previous_secret_expires_at: datetime = Field(
        description="Until then every delivery is signed with both secrets (two v1 signatures)."
    )
    message: str


class WebhookDeletedOut(Out):
    webhook_id: str
    deleted: bool
    message: str


class AttemptOut(Out):
    number: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    error: str | None
    trigger: Literal["automatic", "manual"]


class DeliveryOut(Out):
    delivery_id: str
    webhook_id: str
    event_id: str = Field(description="Also the webhook-id header: receivers dedupe on it.")
    event_type: str
    state: Literal[tuple(DELIVERY_STATES)]  # type: ignore[valid-type]
    attempt_count: int
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = Field(description="The request body as sent.")
    attempts: list[AttemptOut]


class DeliveryListOut(Out):
    deliveries: list[DeliveryOut]
    pagination: Pagination


class DeliveryQuery(PageQuery):
    state: Literal[tuple(DELIVERY_STATES)] | None = None  # type: ignore[valid-type]


class PipelineEventIn(Body):
    event_type: Literal[tuple(PIPELINE_EVENT_TYPES)]  # type: ignore[valid-type]
    pipeline_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    run_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    data: dict[str, Any] | None = Field(None, description="Anything else the receivers should get (at most 16 KB).")


class PipelineEventOut(Out):
    event_id: str | None = Field(description="null when none of the tenant's endpoints subscribes to it.")
    event_type: str
    tenant_id: str
    delivered_to: int = Field(description="How many endpoints the event is on its way to.")


class EventTypeOut(Out):
    event_type: str
    description: str


class EventTypeListOut(Out):
    event_types: list[EventTypeOut]
