"""Request and response bodies of the JSON API (pydantic); the OpenAPI document uses them."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from portal.infra.pagination import paginate
from portal.models import (
    API_SCOPES,
    CANCELLATION_REASONS,
    INVITABLE_ROLES,
    INVOICE_STATUSES,
    SUSPENSION_REASONS,
)
from portal.models.billing import SUBSCRIPTION_STATUSES
from portal.timezones import parse_instant

TenantIdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,50}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
PlanName = Literal["starter", "professional", "enterprise"]
SuspensionReason = Literal[tuple(SUSPENSION_REASONS)]  # type: ignore[valid-type]


class Body(BaseModel):
    """Request bodies: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query strings arrive as text, so numbers are parsed (leniently) from it."""

    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Pagination(Out):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool


class PageQuery(Query):
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(50, ge=1, le=100)


class Message(Out):
    message: str


# --- tenants -----------------------------------------------------------------------------


class OnboardIn(Body):
    tenant_id: TenantIdStr
    company_name: Name
    contact_email: EmailStr
    subscription_plan: PlanName = "starter"
    # Seed 000's BigQuery switches: accepted only as false, refused with a clear message.
    force_recreate_dataset: bool = False
    force_recreate_tables: bool = False


class InvitationSummary(Out):
    invitation_id: str
    invited_email: str
    role: str
    expires_at: datetime
    status: str


class OnboardOut(Out):
    tenant_id: str
    company_name: str
    subscription_plan: str
    api_key_id: str
    api_key: str
    owner_invitation: InvitationSummary
    message: str


class TenantOut(Out):
    tenant_id: str
    company_name: str
    contact_email: str
    subscription_plan: str
    status: str
    suspension_reason: str | None = None
    suspended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str]


class TenantPatchIn(Body):
    company_name: Name | None = None
    contact_email: EmailStr | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=50)


class TenantListItem(Out):
    tenant_id: str
    company_name: str
    subscription_plan: str
    status: str
    created_at: datetime


class TenantListOut(Out):
    tenants: list[TenantListItem]
    pagination: Pagination


class TenantListQuery(PageQuery):
    status: Literal["active", "suspended", "cancelled", "all"] = "all"
    subscription_plan: Literal["starter", "professional", "enterprise", "all"] = "all"
    search: Annotated[str, StringConstraints(max_length=100)] | None = None


class SuspendIn(Body):
    reason: SuspensionReason
    notify_customer: bool = True
    suspension_note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class SuspendOut(Out):
    tenant_id: str
    status: str
    suspended_at: datetime
    suspension_reason: str
    message: str


class ActivateIn(Body):
    notify_customer: bool = False
    activation_note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class ActivateOut(Out):
    tenant_id: str
    status: str
    activated_at: datetime
    message: str


def page_of(statement, query: PageQuery) -> tuple[list, Pagination]:
    """One page of ``statement`` (paged in SQL) and seed 000's pagination block for it."""
    page = paginate(statement, query.page, query.page_size)
    return page.items, Pagination(
        page=page.page,
        page_size=page.per_page,
        total_items=page.total,
        total_pages=max(page.pages, 1),
        has_next=page.has_next,
        has_previous=page.has_prev,
    )


# --- API keys ------------------------------------------------------------------------------

ScopeName = Literal[tuple(API_SCOPES)]  # type: ignore[valid-type]
InvitableRole = Literal[tuple(INVITABLE_ROLES)]  # type: ignore[valid-type]


class ApiKeyCreateIn(Body):
    key_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    scopes: list[ScopeName] | None = Field(None, max_length=len(API_SCOPES) * 2)
    # null = never expires (seed 000); omitted = 90 days.
    expires_in_days: int | None = Field(90, ge=1, le=3650)


class ApiKeyCreateOut(Out):
    api_key_id: str
    api_key: str
    key_name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime
    message: str


class ApiKeyOut(Out):
    api_key_id: str
    key_name: str
    prefix: str
    scopes: list[str]
    is_active: bool
    status: Literal["active", "expired", "revoked"]
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyListOut(Out):
    api_keys: list[ApiKeyOut]
    pagination: Pagination


class ApiKeyRevokeIn(Body):
    revocation_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class ApiKeyRevokeOut(Out):
    api_key_id: str
    is_active: bool
    revoked_at: datetime
    message: str


# --- invitations ---------------------------------------------------------------------------


class InvitationCreateIn(Body):
    invited_email: EmailStr
    role: InvitableRole
    # Omitted: the default (7 days, seed 000).
    expires_in_days: int | None = Field(None, ge=1, le=30)


class InvitationCreateOut(Out):
    invitation_id: str
    invited_email: str
    role: str
    invitation_token: str
    invitation_url: str
    expires_at: datetime
    status: str


class InvitationOut(Out):
    invitation_id: str
    invited_email: str
    role: str
    status: Literal["pending", "accepted", "revoked", "expired"]
    expires_at: datetime
    created_at: datetime


class InvitationListOut(Out):
    invitations: list[InvitationOut]
    pagination: Pagination


class InvitationAcceptIn(Body):
    user_name: Name
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class InvitationAcceptOut(Out):
    invitation_id: str
    tenant_id: str
    user_email: str
    role: str
    message: str


# --- members -------------------------------------------------------------------------------


class MemberOut(Out):
    user_id: str
    email: str
    name: str
    role: Literal["owner", "admin", "developer", "viewer"]
    joined_at: datetime


class MemberListOut(Out):
    members: list[MemberOut]
    pagination: Pagination


class MemberPatchIn(Body):
    role: InvitableRole


class MemberRemovedOut(Out):
    user_id: str
    message: str


# --- cloud credentials ---------------------------------------------------------------------

ProviderName = Literal["gcp", "aws", "azure"]
SecretFieldName = Annotated[str, StringConstraints(max_length=100)]


class CredentialCreateIn(Body):
    provider: ProviderName
    # Optional: each provider has one type today (gcp service_account, aws access_key,
    # azure service_principal); another value gets INVALID_CREDENTIALS.
    credential_type: Annotated[str, StringConstraints(max_length=40)] | None = None
    # Checked by the vault (non-blank, at most 100 characters) with the secret's fields.
    credential_name: Annotated[str, StringConstraints(max_length=200)]
    # The provider's secret; write-only: it is validated, encrypted and never returned.
    credentials: dict[SecretFieldName, Any] = Field(
        json_schema_extra={"writeOnly": True},
        description="The provider's secret (GCP key file object; AWS key id, secret, region, optional role_arn; "
        "Azure tenant_id, client_id, subscription_id, client_secret). Never returned.",
    )
    # Seed 000 sends these with GCP keys; accepted, not stored (the vault keeps no scopes yet).
    scopes: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(None, max_length=50)


class CredentialCreateOut(Out):
    credential_id: str
    tenant_id: str
    provider: str
    credential_type: str
    credential_name: str
    identity: str
    fingerprint: str
    is_active: bool
    last_validated_at: datetime | None
    created_at: datetime
    message: str


class CredentialOut(Out):
    credential_id: str
    provider: str
    credential_type: str
    credential_name: str
    identity: str
    fingerprint: str
    is_active: bool
    created_at: datetime
    last_validated_at: datetime | None


class CredentialListOut(Out):
    credentials: list[CredentialOut]
    pagination: Pagination


class CredentialListQuery(PageQuery):
    provider: Literal["gcp", "aws", "azure", "all"] = "all"


class CredentialDeletedOut(Out):
    credential_id: str
    message: str


class CredentialFieldError(Out):
    field: str
    message: str


class CredentialValidateOut(Out):
    credential_id: str
    valid: bool
    is_active: bool
    last_validated_at: datetime | None
    errors: list[CredentialFieldError]
    message: str


# --- billing -------------------------------------------------------------------------------

# Seed 000 writes money in major units as JSON numbers (``"monthly_cost_usd": 499.00``), and unit
# prices can be sub-cent. The services keep them as exact Decimals; on the wire they are JSON
# numbers, whose shortest form (499.0, 0.065) is exact for every amount this API can produce
# (far fewer than 15 significant digits).
ExactNumber = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]


def _iso_date(value: Any) -> Any:
    # Strict bodies take no JSON date type, so the ISO text is parsed here, and only that text:
    # a number is not a date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("use a date written as YYYY-MM-DD, e.g. 2025-12-01")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a calendar date") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
IsoInstant = Annotated[datetime, BeforeValidator(parse_instant)]
PlanKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CancellationReason = Literal[tuple(CANCELLATION_REASONS)]  # type: ignore[valid-type]
InvoiceStatus = Literal[tuple(INVOICE_STATUSES)]  # type: ignore[valid-type]


class ScheduledChangeOut(Out):
    plan: str
    plan_name: str
    effective_at: datetime


class SubscriptionOut(Out):
    """Seed 000's subscription body, then what the billing core adds."""

    subscription_id: str
    tenant_id: str
    plan_name: str = Field(description="The plan's key (seed 000: starter, professional, enterprise).")
    monthly_pipeline_quota: int
    concurrent_pipeline_quota: int
    storage_quota_gb: int
    monthly_cost_usd: ExactNumber = Field(description="Price per month in major units (a yearly plan: a twelfth).")
    billing_cycle_start: date
    billing_cycle_end: date = Field(description="The last day of the current period.")
    auto_renew: bool
    stripe_subscription_id: str | None
    created_at: datetime
    status: Literal[tuple(SUBSCRIPTION_STATUSES)]  # type: ignore[valid-type]
    currency: str
    interval: Literal["month", "year"]
    price: int = Field(description="Price per interval in minor units (cents).")
    current_period_start: datetime
    current_period_end: datetime = Field(description="The instant the period ends (exclusive).")
    trial_end: datetime | None
    cancel_at_period_end: bool
    scheduled_change: ScheduledChangeOut | None


class UpgradeIn(Body):
    new_plan: PlanKey
    # Omitted: at once. A future date schedules the change (an upgrade) for that day, 00:00 UTC.
    effective_date: IsoDate | None = None
    prorate: bool = True


class UpgradeOut(Out):
    subscription_id: str
    previous_plan: str
    new_plan: str
    effective_date: date
    prorated_charge: ExactNumber = Field(description="What the change costs now, in major units (0 if nothing).")
    message: str
    direction: Literal["upgrade", "downgrade"]
    scheduled: bool
    currency: str
    invoice_id: str | None
    invoice_number: str | None


class CancelIn(Body):
    cancel_at_period_end: bool = True
    cancellation_reason: CancellationReason | None = None
    feedback: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CancelOut(Out):
    subscription_id: str
    status: Literal["cancelled"]
    cancelled_at: datetime
    billing_cycle_end: date
    message: str
    cancel_at_period_end: bool
    ends_at: datetime = Field(description="When the service stops: the period end, or now for an immediate cancel.")


class QuotasOut(Out):
    monthly_pipeline_quota: int
    concurrent_pipeline_quota: int
    storage_quota_gb: int


class RateLimitsOut(Out):
    per_minute: int
    per_hour: int


class PriceTierOut(Out):
    up_to: ExactNumber | None = Field(description="Upper bound in billable units; null: unbounded.")
    unit_price: ExactNumber = Field(description="Minor units per unit; may be fractional.")
    flat_fee: int


class FeatureOut(Out):
    key: str
    name: str
    description: str
    unit_label: str
    pricing: Literal["included", "per_unit", "graduated", "volume", "package"]
    included_units: ExactNumber
    limit: ExactNumber | None
    reset_mode: Literal["reset", "accumulate"]
    unit_price: ExactNumber | None = Field(description="Minor units per unit; may be fractional.")
    tiers: list[PriceTierOut]
    package_size: int | None
    package_price: int | None


class PlanOut(Out):
    id: str
    key: str
    name: str
    description: str
    price: int = Field(description="Price per interval in minor units (cents).")
    price_amount: ExactNumber = Field(description="The same price in major units.")
    currency: str
    interval: Literal["month", "year"]
    interval_months: int
    trial_days: int
    quotas: QuotasOut
    rate_limits: RateLimitsOut
    features: list[FeatureOut]


class PlanListOut(Out):
    plans: list[PlanOut]


class InvoiceLineOut(Out):
    type: str
    description: str
    quantity: ExactNumber
    unit_amount: ExactNumber = Field(description="Minor units; may be fractional.")
    amount: int
    period_start: datetime | None
    period_end: datetime | None


class InvoiceOut(Out):
    """An invoice; amounts in minor units, ``*_major`` in major units."""

    invoice_id: str
    number: str
    status: InvoiceStatus
    currency: str
    plan_name: str
    subtotal: int
    credits_applied: int
    total: int
    amount_paid: int
    amount_due: int
    total_major: ExactNumber
    amount_due_major: ExactNumber
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    due_at: datetime
    paid_at: datetime | None
    line_items: list[InvoiceLineOut]


class InvoiceListOut(Out):
    invoices: list[InvoiceOut]
    pagination: Pagination


class InvoiceListQuery(PageQuery):
    status: Literal[(*INVOICE_STATUSES, "all")] = "all"  # type: ignore[valid-type]


class PaymentAttemptOut(Out):
    attempted_at: datetime
    outcome: Literal["succeeded", "failed"]
    amount: int
    failure_reason: str | None


class PaymentStatusOut(Out):
    invoice_id: str
    number: str
    status: InvoiceStatus
    currency: str
    total: int
    amount_due: int
    amount_paid: int
    due_at: datetime
    paid_at: datetime | None
    payment_reference: str | None
    attempts: list[PaymentAttemptOut]


class MarkPaidIn(Body):
    reference: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    # Omitted: now. Never in the future.
    paid_at: IsoInstant | None = None


# --- credits -------------------------------------------------------------------------------


def _major_amount(value: Any) -> Any:
    # Seed 003's creditAmount is a JSON number of major units; exact cents only (10.005 is refused).
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("give creditAmount as a number of major units, e.g. 25.50")
    amount = Decimal(str(value))
    if not amount.is_finite() or amount <= 0:
        raise ValueError("creditAmount must be more than zero")
    if amount > Decimal(1_000_000_000):
        raise ValueError("creditAmount can be at most 1,000,000,000")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError("creditAmount has more than two decimal places (cents)")
    return amount


MajorAmount = Annotated[
    Decimal, BeforeValidator(_major_amount), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
CustomerRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
CreditReason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class CreditChangeIn(Body):
    """Whose credit and how much: our names, or seed 003's (``customerId``, ``creditAmount``) and
    seed 002's ``customerReferenceId``. A customer id matches a tenant id or an external id."""

    tenant_id: CustomerRef | None = None
    customerId: CustomerRef | None = None  # noqa: N815 (seed 003's name)
    customerReferenceId: CustomerRef | None = None  # noqa: N815 (seed 002's name)
    amount: int | None = Field(None, gt=0, le=100_000_000_000, description="Minor units (cents).")
    creditAmount: MajorAmount | None = Field(None, description="Major units (seed 003), e.g. 25.5.")  # noqa: N815
    currency: CurrencyCode | None = Field(None, description="Defaults to the tenant's billing currency.")
    reason: CreditReason = ""

    @model_validator(mode="after")
    def _one_of_each(self):
        given = [name for name in ("tenant_id", "customerId", "customerReferenceId") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("name the tenant with exactly one of tenant_id, customerId, customerReferenceId")
        if (self.amount is None) == (self.creditAmount is None):
            raise ValueError("give exactly one of amount (minor units) or creditAmount (major units)")
        return self

    @property
    def customer(self) -> str:
        return self.tenant_id or self.customerId or self.customerReferenceId

    @property
    def minor_units(self) -> int:
        return self.amount if self.amount is not None else int(self.creditAmount * 100)


class CreditGrantIn(CreditChangeIn):
    expires_at: IsoInstant | None = Field(None, description="Omitted: the credit never expires.")


class CreditEntryOut(Out):
    entry_id: str
    type: Literal["grant", "deduction", "application", "expiry"]
    amount: int = Field(description="Minor units; negative when credit was taken away.")
    balance_after: int
    currency: str
    description: str
    invoice_id: str | None
    grant_id: str | None
    expires_at: datetime | None = Field(description="A grant's expiry.")
    created_by: str
    occurred_at: datetime


class CreditGrantOut(Out):
    grant_id: str
    tenant_id: str
    currency: str
    amount: int
    remaining: int
    expires_at: datetime | None
    reason: str
    balance: int
    entry: CreditEntryOut


class CreditDeductOut(Out):
    tenant_id: str
    currency: str
    amount: int
    balance: int
    entry: CreditEntryOut


class CreditsOut(Out):
    """Seed 002's credit pool totals (camelCase there), in minor units, and the ledger."""

    tenant_id: str
    currency: str
    balance: int
    total_granted: int
    total_used: int
    total_expired: int
    balance_major: ExactNumber
    entries: list[CreditEntryOut]
    pagination: Pagination


class CreditsQuery(PageQuery):
    currency: CurrencyCode | None = None


# --- usage events (seeds 001, 002, 003) ----------------------------------------------------


def _alias(description: str):
    # Checked by the ingestion service, which gives every event its own reason; here only named.
    return Field(None, description=description)


class EventIn(Body):
    """One usage event. Each field may be sent under any of the seeds' names (one of them)."""

    model_config = ConfigDict(extra="forbid", strict=False)

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


class EventIngestOut(Out):
    success: bool
    event_id: str
    usageEventId: str = Field(description="Seed 001's name for event_id.")
    duplicate: bool
    tenant_id: str
    ref: str = Field(description="The event's idempotency key.")


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


class EventBatchOut(Out):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultOut]


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
    start_time: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        None, description="ISO 8601 instant; events at or after it."
    )
    end_time: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        None, description="ISO 8601 instant; events before it."
    )
    event_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = None


class EventListOut(Out):
    events: list[EventOut]
    pagination: Pagination


class EventRefQuery(Query):
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="With it, ref may also be the event's idempotency key."
    )


class DeleteByRefsIn(Body):
    refs: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(min_length=1, max_length=1000)
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="With it, refs may also be idempotency keys."
    )


class DeleteByRefsOut(Out):
    deleted: list[EventOut]
    invoiced: list[str] = Field(description="Refs of invoiced events: kept.")
    not_found: list[str]


# --- usage (seed 000) ----------------------------------------------------------------------


class UsageQuery(Query):
    month: Annotated[str, StringConstraints(max_length=20)] | None = Field(None, description="YYYY-MM; default: now.")


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
    start_month: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        None, description="YYYY-MM; default: five months before end_month."
    )
    end_month: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        None, description="YYYY-MM; default: this month."
    )


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
