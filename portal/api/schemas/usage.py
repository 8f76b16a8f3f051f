"""Bodies of the usage routes (``portal/api/usage.py``): usage events, the monthly usage
report and entitlements."""

from datetime import datetime
from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StringConstraints, WithJsonSchema

from portal.api.schemas.common import (
    INSTANT_SCHEMA,
    Body,
    ExactNumber,
    Out,
    PageQuery,
    Pagination,
    Query,
    QueryInstant,
    QuotasOut,
    names,
)
from portal.usage import ingest

# --- usage events (seeds 001, 002, 003) ----------------------------------------------------


def _alias(description: str):
    # Checked by the ingestion service, which gives every event its own reason; here only named.
    return Field(None, description=description)


def _text(limit: int) -> dict:
    # Stripped, then non-empty, at most ``limit`` long and without NUL (portal.usage.ingest._text).
    return {"type": "string", "maxLength": limit, "pattern": "^[^\\u0000]*\\S[^\\u0000]*$"}


_EVENT_FIELD_SCHEMAS = {
    "tenant": _text(100),
    "key": _text(ingest.MAX_KEY),
    "name": _text(ingest.MAX_NAME),
    "occurred_at": INSTANT_SCHEMA,
    "quantity": {"type": "number", "minimum": 0, "exclusiveMaximum": float(ingest.MAX_QUANTITY)},
    "properties": {"type": "object"},
}


def _event_rules(schema: dict) -> None:
    """The document of what portal.usage.ingest.draft checks: each field's type, and each field
    under one of its names only (the tenant and the name required)."""
    rules = []
    for what, aliases in ingest.ALIASES.items():
        required = what in ("tenant", "name")
        # An optional field sent as null is left out; a required one must be there.
        field_schema = (
            _EVENT_FIELD_SCHEMAS[what] if required else {"anyOf": [_EVENT_FIELD_SCHEMAS[what], {"type": "null"}]}
        )
        for name in aliases:
            schema["properties"][name].update(field_schema)
        if required:
            rules.append({"oneOf": [{"required": [name]} for name in aliases]})
        else:
            rules.append({"not": {"anyOf": [{"required": [a, b]} for a, b in combinations(aliases, 2)]}})
    schema["allOf"] = rules


class EventIn(Body):
    """One usage event. Each field may be sent under any of the seeds' names (one of them)."""

    model_config = ConfigDict(extra="forbid", strict=False, json_schema_extra=_event_rules)

    tenant_id: Any = _alias("The tenant: its tenant_id or external id. Alias: customerReferenceId, customerAlias.")
    customerReferenceId: Any = _alias("Seed 002's name for tenant_id.")
    customerAlias: Any = _alias("Seed 003's name for tenant_id.")
    eventIdempotencyKey: Any = _alias(
        "Unique per tenant (at most 200 characters); a repeat is a duplicate. "
        "Alias: eventId, idempotency_key, ref. Omitted: never de-duplicated."
    )
    eventId: Any = _alias("Seed 001's name for eventIdempotencyKey.")
    idempotency_key: Any = _alias("Alias of eventIdempotencyKey.")
    ref: Any = _alias("Seed 003's name for eventIdempotencyKey.")
    eventName: Any = _alias(
        "The event's name (at most 128 characters), e.g. pipeline_run. Alias: event_name, name, metric."
    )
    event_name: Any = _alias("Alias of eventName.")
    name: Any = _alias("Seed 003's name for eventName.")
    metric: Any = _alias("Seed 001's name for eventName.")
    occurredAt: Any = _alias(
        "ISO 8601 with timezone; not more than 5 minutes ahead, not before the tenant's "
        "oldest open billing period. Omitted: now. Alias: occurred_at, timestamp."
    )
    occurred_at: Any = _alias("Alias of occurredAt.")
    timestamp: Any = _alias("Seed 003's name for occurredAt.")
    quantity: Any = _alias("A finite number >= 0 (default 1). Alias: usageUnits.")
    usageUnits: Any = _alias("Seed 002's name for quantity.")
    properties: Any = _alias("A JSON object of at most 8 KB. Alias: meta, metadata, data.")
    meta: Any = _alias("Seed 002's name for properties.")
    metadata: Any = _alias("Seed 001's name for properties.")
    data: Any = _alias("Seed 003's name for properties.")
    flowId: Any = _alias("Accepted and ignored (seed 002).")
    featureKey: Any = _alias("Accepted and ignored (seed 002).")
    featureId: Any = _alias("Accepted and ignored (seed 002).")
    costAmount: Any = _alias("Accepted and ignored (seed 002).")
    subscriptionId: Any = _alias("Accepted and ignored (seed 001/002).")
    entitlementId: Any = _alias("Accepted and ignored (seed 002).")
    customerId: Any = _alias("Accepted and ignored (seed 002).")
    enforce: StrictBool = Field(
        False,
        description="true: refuse the event (429 QUOTA_EXCEEDED, nothing stored) when it would take a "
        "feature with a hard limit in the tenant's plan past that limit.",
    )


class LimitNoticeOut(Out):
    """Seed 002's ``data`` of an ingestion."""

    usageLimitExceeded: bool
    message: str | None


class EventIngestOut(Out):
    success: bool
    event_id: str
    usageEventId: str = Field(description="Seed 001's name for event_id.")
    duplicate: bool
    tenant_id: str
    ref: str = Field(description="The event's idempotency key.")
    usageLimitExceeded: bool = Field(
        description="The event took a feature with a hard limit in the tenant's plan to that limit or past "
        "it (seed 002); the event is recorded. Further use of the feature is denied by entitlement checks."
    )
    message: str | None = Field(description="Which feature, and its usage against the limit.")
    data: LimitNoticeOut = Field(description="Seed 002's place for usageLimitExceeded and message.")


class EventBatchIn(Body):
    events: list[Any] = Field(
        min_length=1, max_length=1000, description="Up to 1,000 events, each shaped like POST /events' body."
    )


class EventResultOut(Out):
    index: int
    status: Literal["accepted", "duplicate", "rejected", "valid"]
    event_id: str | None
    tenant_id: str | None
    ref: str | None
    reason: str | None
    field: str | None


class EventBatchResultOut(EventResultOut):
    usageLimitExceeded: bool = Field(
        description="After this request the event's hard-limited feature is at or past its limit (seed 002)."
    )
    message: str | None


class EventBatchOut(Out):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventBatchResultOut]


class MeterValueOut(Out):
    key: str
    value: ExactNumber | None = Field(description="This event's contribution (its quantity or property).")


class DryRunResultOut(EventResultOut):
    meters: list[MeterValueOut]


class EventDryRunOut(Out):
    valid: int
    rejected: int
    results: list[DryRunResultOut]


class EventOut(Out):
    event_id: str
    ref: str
    tenant_id: str
    event_name: str
    occurred_at: datetime
    received_at: datetime
    quantity: ExactNumber
    properties: dict[str, Any]
    invoiced: bool
    invoice_id: str | None


class EventListQuery(PageQuery):
    """Also under seed 003's names (its queryEvents): startTime, endTime, eventName,
    customerAlias, limit and cursor."""

    start_time: QueryInstant = Field(
        None, validation_alias=names("start_time", "startTime"), description="ISO 8601 instant; events at or after it."
    )
    end_time: QueryInstant = Field(
        None,
        validation_alias=names("end_time", "endTime"),
        description="ISO 8601 instant; events before it (one not after start_time matches none).",
    )
    event_name: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        None, validation_alias=names("event_name", "eventName"), description="Only events of this name."
    )
    # Seed 003's customerAlias is the customer's id as events carry it, which ingestion maps
    # to a tenant by tenant_id or external id: the same lookup as here.
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None,
        validation_alias=names("tenant_id", "customerAlias"),
        description="Only this tenant's events: its tenant_id or external id. Unknown: 404.",
    )


class EventListOut(Out):
    events: list[EventOut]
    pagination: Pagination


class EventRefQuery(Query):
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None,
        description="The tenant (tenant_id or external id) whose event ref names; needed only when a key "
        "names events of more than one tenant.",
    )


class DeleteByRefsIn(Body):
    refs: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(min_length=1, max_length=1000)
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="Only this tenant's events (tenant_id or external id)."
    )


class DeleteByRefsOut(Out):
    deleted: list[EventOut]
    invoiced: list[str] = Field(description="Refs of invoiced events: kept.")
    not_found: list[str]
    ambiguous: list[str] = Field(
        description="Idempotency keys of events of more than one tenant: kept; send them again with tenant_id."
    )


class EventDeletedOut(Out):
    event: EventOut
    message: str


# --- usage (seed 000) ----------------------------------------------------------------------


# portal.usage.periods.month_start's rule: YYYY-MM from 2000-01; empty means the default.
Month = Annotated[
    str,
    StringConstraints(max_length=20),
    WithJsonSchema({"type": "string", "pattern": "^(?:[2-9][0-9]{3}-(?:0[1-9]|1[0-2]))?$"}),
]


class UsageQuery(Query):
    month: Month | None = Field(None, description="YYYY-MM; default: now.")


class UsagePercentagesOut(Out):
    pipelines: float
    concurrent: float
    storage: float


class FeatureUsageOut(Out):
    key: str
    name: str
    unit_label: str
    used: ExactNumber
    quota: ExactNumber | None
    percent: float | None
    hard_limit: bool


class UsageOut(Out):
    tenant_id: str
    usage_month: str
    pipelines_run_count: int
    pipelines_running_count: int
    storage_used_gb: ExactNumber
    compute_hours: ExactNumber
    api_requests_count: int
    last_pipeline_run_at: datetime | None
    quota_reset_at: datetime
    quotas: QuotasOut
    usage_percentages: UsagePercentagesOut
    features: list[FeatureUsageOut] = Field(description="Every metered feature of the plan in that month.")


class UsageHistoryQuery(Query):
    start_month: Month | None = Field(
        None,
        description="YYYY-MM; default: five months before end_month. After end_month: no months; more "
        "than 35 months before it: the newest 36 months.",
    )
    end_month: Month | None = Field(None, description="YYYY-MM; default: this month.")


class UsageHistoryMonthOut(Out):
    month: str
    pipelines_run: int
    storage_used_gb: ExactNumber
    compute_hours: ExactNumber
    api_requests: int


class UsageHistoryOut(Out):
    tenant_id: str
    history: list[UsageHistoryMonthOut]


# --- entitlements (seed 002) ---------------------------------------------------------------


class TrackIn(Body):
    model_config = ConfigDict(extra="forbid", strict=False)

    eventName: Annotated[str, StringConstraints(max_length=128)] | None = None
    usageUnits: float = Field(1, ge=0, le=1e14, allow_inf_nan=False)
    meta: dict[str, Any] | None = None


class RequestContextIn(Body):
    idempotencyKey: Annotated[str, StringConstraints(max_length=128)] | None = None
    flowId: Annotated[str, StringConstraints(max_length=128)] | None = None


class EntitlementIn(Body):
    customerReferenceId: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    featureKey: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    track: TrackIn | None = None
    context: RequestContextIn | None = None


class ReasonOut(Out):
    code: str
    description: str


class EntitlementMetaOut(Out):
    reason: ReasonOut | None


class EntitlementUsageOut(Out):
    used: ExactNumber
    limit: ExactNumber | None
    remaining: ExactNumber | None


class SimulationOut(Out):
    requestedUsage: ExactNumber
    projectedUsage: ExactNumber
    projectedRemaining: ExactNumber | None
    wouldExceedLimit: bool


class EntitlementOut(Out):
    referenceCustomerId: str
    featureKey: str
    isAllowed: bool
    flowId: str | None = None
    meta: EntitlementMetaOut | None = None
    usage: EntitlementUsageOut | None = None
    simulation: SimulationOut | None = None


class EntitlementEnvelopeOut(Out):
    success: bool
    data: EntitlementOut
