"""Bodies of the billing routes (``portal/api/billing.py``): subscriptions, plans, invoices
and payments."""

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from portal.api.schemas.common import Body, ExactNumber, IsoInstant, Out, PageQuery, Pagination, QuotasOut
from portal.billing.invoices import INVOICE_FILTERS, REASON_MAX
from portal.models import CANCELLATION_REASONS, INVOICE_STATUSES, PAYMENT_ATTEMPT_STATUSES
from portal.models.billing import SUBSCRIPTION_STATUSES


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


class SubscribeIn(Body):
    plan: PlanKey = Field(description="The plan's key (GET /plans).")
    trial_days: int | None = Field(
        None,
        ge=0,
        le=365,
        description="Days of trial; omitted: the plan's own (0: none). A tenant key may shorten the "
        "plan's trial, not lengthen it.",
    )
    start_date: IsoDate | None = Field(
        None,
        description="YYYY-MM-DD: date the start back to that day, 00:00 UTC (the billing anchor), while its "
        "first period (or trial) is still running and not before the previous subscription ended. Omitted: now.",
    )


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
    credits_applied: int = Field(description="The invoice's credit given to this line (in proportion to its amount).")
    tax_name: str | None = Field(description="The tax rate as it was when issued; null: no tax.")
    tax_percentage: ExactNumber | None
    tax_inclusive: bool = Field(description="The amount already holds the tax (else the tax is added to it).")
    tax: int = Field(description="This line's tax in minor units, rounded once, half up; negative on a credit line.")


class TaxLineOut(Out):
    """One rate's share of an invoice."""

    name: str
    percentage: ExactNumber | None
    inclusive: bool
    label: str = Field(description='As printed: "VAT 19%".')
    taxable: int = Field(description="What it taxed, before tax, after credit (minor units).")
    amount: int


class BuyerTaxIdOut(Out):
    type: str
    value: str


class BuyerOut(Out):
    """The buyer's billing profile as it was when the invoice was issued."""

    legal_name: str
    address_line1: str
    address_line2: str
    city: str
    postal_code: str
    region: str
    country: str | None
    tax_ids: list[BuyerTaxIdOut]
    po_number: str


class InvoiceOut(Out):
    """An invoice; amounts in minor units, ``*_major`` in major units."""

    invoice_id: str
    number: str
    status: InvoiceStatus
    currency: str
    plan_name: str
    subtotal: int = Field(
        description="The lines before the discount (plan, proration, usage), minor units; tax not added."
    )
    discount: int = Field(description="What the discount line took off (minor units, positive; 0 without one).")
    credits_applied: int
    tax: int = Field(description="Every line's tax, added or included.")
    total: int = Field(description="subtotal - discount - credits_applied + the tax not included in the lines.")
    tax_lines: list[TaxLineOut] = Field(description="The tax per rate.")
    tax_note: str | None = Field(description="A legal mention the tax requires (the EU reverse charge).")
    billing_name: str
    billing_email: str
    buyer: BuyerOut | None = Field(description="The billing profile when issued; null: the tenant had none.")
    amount_paid: int
    amount_due: int
    total_major: ExactNumber
    amount_due_major: ExactNumber
    pdf_url: str = Field(description="The invoice as a PDF: this API path, with the same credentials.")
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    due_at: datetime
    paid_at: datetime | None
    overdue: bool = Field(description="Open and past `due_at` (seed 003's Overdue).")
    payment_failed: bool = Field(description="Open, and its last payment attempt failed (seed 001's failed).")
    line_items: list[InvoiceLineOut]


class SubscriptionStartedOut(SubscriptionOut):
    invoice: InvoiceOut | None = Field(description="The first period's invoice (none during a trial).")
    message: str


class InvoiceListOut(Out):
    invoices: list[InvoiceOut]
    pagination: Pagination


class InvoiceListQuery(PageQuery):
    status: Literal[(*INVOICE_FILTERS, "all")] = Field(  # type: ignore[valid-type]
        "all",
        description="An invoice status, or `overdue` (open and past its due date) or `failed` (open, and its "
        "last payment attempt failed); `all` (the default) lists every invoice.",
    )


class AccountInvoiceListQuery(PageQuery):
    tenant_id: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="Only this tenant's invoices (its tenant_id or external id)."
    )
    status: Literal[(*INVOICE_FILTERS, "all")] = Field(  # type: ignore[valid-type]
        "all", description="As on a tenant's invoice list: a status, `overdue` or `failed`; `all` by default."
    )
    period_start: IsoDate | None = Field(
        None, description="YYYY-MM-DD: invoices for periods starting on or after this day (00:00 UTC)."
    )
    period_end: IsoDate | None = Field(
        None,
        description="YYYY-MM-DD: invoices for periods ending on or before this day (its last day); "
        "one before period_start matches none.",
    )


class AccountInvoiceOut(InvoiceOut):
    tenant_id: str


class AccountInvoiceListOut(Out):
    invoices: list[AccountInvoiceOut]
    pagination: Pagination


class PaymentAttemptOut(Out):
    number: int = Field(description="1 for the first attempt at collecting this invoice, then 2, 3, ...")
    attempted_at: datetime
    amount: int = Field(description="Minor units (cents).")
    currency: str
    outcome: Literal[PAYMENT_ATTEMPT_STATUSES] = Field(  # type: ignore[valid-type]
        description="`succeeded` or `failed`; `pending`, `requires_action` (the customer's bank asks them to "
        "confirm) or `processing` while the outcome is not known yet."
    )
    automatic: bool = Field(description="Charged without the customer (a billing run, a retry, a card just saved).")
    failure_reason: str | None = Field(description="Why it failed, as the bank or Stripe said it.")


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
    overdue: bool = Field(description="Open and past `due_at` (seed 003's Overdue).")
    payment_failed: bool = Field(description="Open, and its last payment attempt failed (seed 001's failed).")
    next_payment_attempt_at: datetime | None = Field(description="When a failed payment is tried again.")
    attempts: list[PaymentAttemptOut]


class MarkUncollectibleIn(Body):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX)]


class MarkPaidIn(Body):
    reference: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    paid_at: IsoInstant | None = Field(
        None,
        description="When the payment arrived (ISO 8601 with a timezone). Not in the future: JSON Schema has "
        "no keyword for that, and a later instant is a 400 naming paid_at. Omitted: now.",
    )
