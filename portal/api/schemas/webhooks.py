"""Bodies of the webhook routes (``portal/api/webhooks.py``)."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, Out, PageQuery, Pagination
from portal.api.schemas.members import MemberOut
from portal.errors import ValidationFailed
from portal.models import DELIVERY_STATES
from portal.webhooks import urls
from portal.webhooks.catalog import EVENT_TYPES, PIPELINE_EVENT_TYPES

EventTypeName = Literal[tuple([*EVENT_TYPES, "*"])]  # type: ignore[valid-type]
# What the server parses as an http(s) URL with a host (and a valid port); whether that host
# resolves, and to a public address, is only known at run time (the description says so).
_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
)
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
URL_PATTERN = rf"^https?://{_HOST}{_PORT}(?:[/?#][^\s]*)?$"
URL_DESCRIPTION = (
    "An http(s) URL. In production: https:// only, and its host must resolve, when saved and at every "
    "delivery, to addresses reachable from the internet (never loopback, private, link-local or metadata "
    "addresses); otherwise 400."
)


def _url_shape(value: str) -> str:
    """The service's own words for a malformed URL, then the shape the document states."""
    try:
        urls.parse(value, require_https=False)
    except ValidationFailed as error:
        raise ValueError(error.message) from None
    if not re.fullmatch(URL_PATTERN, value):
        raise ValueError("Enter a full URL starting with https://, e.g. https://example.com/webhooks.")
    return value


Url = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048),
    AfterValidator(_url_shape),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": URL_PATTERN, "description": URL_DESCRIPTION}
    ),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
EVENT_TYPES_HELP = 'The events to send, or ["*"] for all of them. ' + " ".join(
    f"`{name}`: {about}" for name, about in EVENT_TYPES.items()
)


class WebhookCreateIn(Body):
    url: Url
    event_types: list[EventTypeName] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1, description=EVENT_TYPES_HELP
    )
    description: Description | None = None


class WebhookPatchIn(Body):
    # Omitted: unchanged. Only the description may be null (no description).
    url: Url = None
    event_types: list[EventTypeName] = Field(None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: Description | None = None
    enabled: bool = Field(None, description="false stops deliveries; true resumes them (and resets the failure count).")


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


# The ``data`` of the events that carry no API object (the others carry the object as the API
# returns it: see ``EVENT_PAYLOADS`` in portal/api/webhooks.py).
class MemberEventData(MemberOut):
    joined_at: datetime | None = Field(description="null in `member.removed`: the membership is gone.")


class CreditEventData(Out):
    grant_id: str
    amount: int | None = Field(description="Minor units of `currency`.")
    currency: str | None
    expires_at: str | None = Field(description="RFC 3339, or null when the credit never expires.")
    reason: str | None


class QuotaEventData(Out):
    feature: str
    usage_percentage: float
    used: float
    quota: float
    unit: str
    period_start: str = Field(description="RFC 3339: the start of the quota period.")
    period_end: str = Field(description="RFC 3339: when the quota resets.")


class PipelineEventData(Out):
    model_config = ConfigDict(extra="allow")
    pipeline_id: str
    run_id: str | None
    # The operator's `data`, if any, is merged in beside these two.


class WebhookTestData(Out):
    webhook_id: str
    message: str
