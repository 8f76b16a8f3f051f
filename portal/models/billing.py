"""Plans and their versions, subscriptions, invoices and billing runs.

Every money column is an integer in the currency's minor units (cents). Unit prices that need
sub-cent precision (usage lines) are ``Numeric`` and only ever multiplied, then rounded once.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "unpaid", "paused", "canceled", "incomplete")
# A subscription in one of these still renews and is billed by the billing run.
BILLABLE_STATUSES = ("trialing", "active", "past_due")
# Issued open (there are no drafts: an invoice is final when issued); then paid, void (never
# owed) or uncollectible (written off by the operator; a later payment still marks it paid).
INVOICE_STATUSES = ("open", "paid", "void", "uncollectible")
LINE_TYPES = ("plan", "proration", "usage", "credit", "adjustment", "discount")
# The kinds of tax ID a billing profile can hold (validated in portal.billing.tax_ids).
TAX_ID_TYPES = ("eu_vat", "gb_vat", "ch_vat", "no_vat", "us_ein", "au_abn", "in_gst")
# One invoice per subscription, period and kind (a unique constraint below).
INVOICE_KINDS = ("period", "proration")
CANCELLATION_REASONS = {
    "too_expensive": "Too expensive",
    "missing_features": "Missing features",
    "switching_to_competitor": "Switching to a competitor",
    "unused": "Not using it enough",
    "technical_issues": "Technical issues",
    "other": "Other",
}


class Plan(db.Model):
    """A plan of the operator's catalog; what it costs lives in its versions."""

    __tablename__ = "plans"

    id: Mapped[str] = id_column("plan")
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list["PlanVersion"]] = relationship(
        back_populates="plan", order_by="PlanVersion.version", cascade="all, delete-orphan"
    )

    @property
    def current_version(self) -> "PlanVersion":
        return self.versions[-1]

    def __repr__(self) -> str:
        return f"<Plan {self.key}>"


class PlanVersion(db.Model):
    """What a plan costs and grants from one catalog change to the next. Never edited: a price
    change is a new version, and subscriptions keep the version they signed up for."""

    __tablename__ = "plan_versions"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    id: Mapped[str] = id_column("planv")
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    interval: Mapped[str] = mapped_column(String(10), default="month")
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    quotas: Mapped[dict] = mapped_column(JSON, default=dict)
    rate_limits: Mapped[dict] = mapped_column(JSON, default=dict)
    features: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    plan: Mapped[Plan] = relationship(back_populates="versions", lazy="joined")

    @property
    def key(self) -> str:
        return self.plan.key

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def months(self) -> int:
        return 12 if self.interval == "year" else 1

    @property
    def monthly_price(self) -> Fraction:
        """For telling an upgrade from a downgrade across monthly and yearly plans."""
        return Fraction(self.price, self.months)

    def __repr__(self) -> str:
        return f"<PlanVersion {self.plan_id} v{self.version} {self.price} {self.currency}/{self.interval}>"


class Subscription(db.Model):
    """A tenant's one current subscription. Periods are counted from ``billing_anchor``
    (index 0 starts at the anchor; -1 is a trial before it), so month ends never drift."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = id_column("sub")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), unique=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("plan_versions.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    billing_anchor: Mapped[datetime] = mapped_column(UTCDateTime)
    period_index: Mapped[int] = mapped_column(Integer, default=0)
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    cancel_feedback: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_plan_version_id: Mapped[str | None] = mapped_column(ForeignKey("plan_versions.id"))
    scheduled_change_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_change_prorate: Mapped[bool] = mapped_column(Boolean, default=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped["Tenant"] = relationship()  # noqa: F821
    plan_version: Mapped[PlanVersion] = relationship(foreign_keys=[plan_version_id], lazy="joined")
    scheduled_plan_version: Mapped[PlanVersion | None] = relationship(foreign_keys=[scheduled_plan_version_id])

    @property
    def is_live(self) -> bool:
        return self.status in BILLABLE_STATUSES

    def __repr__(self) -> str:
        return f"<Subscription {self.id} {self.tenant_id} {self.status}>"


class Invoice(db.Model):
    __tablename__ = "invoices"
    __table_args__ = (
        # A crashed, repeated or concurrent billing run can never bill a period twice.
        UniqueConstraint("subscription_id", "kind", "period_start"),
        # The operator's list of every tenant's invoices, newest first, a page at a time.
        Index("ix_invoices_issued_at_number", "issued_at", "number"),
    )

    id: Mapped[str] = id_column("inv")
    number: Mapped[str] = mapped_column(String(20), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(Integer, default=0)
    credits_applied: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    amount_paid: Mapped[int] = mapped_column(Integer, default=0)
    amount_refunded: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_reference: Mapped[str | None] = mapped_column(String(200))
    # Dunning (DESIGN §6): when a payment first failed, how many failed, when to try again.
    payment_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_payment_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text)
    uncollectible_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    uncollectible_reason: Mapped[str | None] = mapped_column(Text)
    # The buyer as they were when the invoice was issued: an invoice never changes afterwards.
    billing_name: Mapped[str] = mapped_column(String(200))
    billing_email: Mapped[str] = mapped_column(String(254))
    # ...and their billing profile then (legal name, address, tax IDs, PO number); None: no profile.
    buyer: Mapped[dict | None] = mapped_column(JSON)
    # Negative ``discount`` lines, as a positive amount; ``subtotal`` is the lines before them.
    # total = subtotal - discount - credits_applied + the tax not included in line amounts.
    discount: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tax: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A legal mention the tax treatment requires (reverse charge), printed on the invoice.
    tax_note: Mapped[str | None] = mapped_column(Text)
    plan_name: Mapped[str] = mapped_column(String(100), default="")
    # The billing run that issued it (none for sign-ups and plan changes): a run resumed after
    # its process died counts what it had billed from here.
    billing_run_id: Mapped[str | None] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list["InvoiceLine"]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )
    tenant: Mapped["Tenant"] = relationship()  # noqa: F821
    subscription: Mapped[Subscription] = relationship()

    @property
    def amount_due(self) -> int:
        return max(self.total - self.amount_paid, 0) if self.status == "open" else 0

    @property
    def overdue(self) -> bool:
        """Seed 003's Overdue: open, and past its due date."""
        return self.status == "open" and self.due_at < utcnow()

    @property
    def tax_lines(self) -> list["TaxSummary"]:
        """The tax per rate, in the order the rates first appear on the lines (for display)."""
        summaries: dict[tuple, TaxSummary] = {}
        for line in self.lines:
            if line.tax_name is None:
                continue
            key = (line.tax_name, line.tax_percentage, line.tax_inclusive)
            summary = summaries.setdefault(key, TaxSummary(line.tax_name, line.tax_percentage, line.tax_inclusive))
            tax = line.tax_amount or 0
            summary.taxable += line.amount - (line.credit_allocated or 0) - (tax if line.tax_inclusive else 0)
            summary.amount += tax
        return list(summaries.values())

    def __repr__(self) -> str:
        return f"<Invoice {self.number} {self.status} {self.total} {self.currency}>"


class InvoiceLine(db.Model):
    __tablename__ = "invoice_lines"

    id: Mapped[str] = id_column("il")
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6), default=1)
    unit_amount: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    amount: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The invoice's credit given to this line (a share in proportion to its amount): tax is on
    # what is left. The tax rate as it was (name and percentage), None when no tax applies.
    credit_allocated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tax_name: Mapped[str | None] = mapped_column(String(100))
    tax_percentage: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    # Inclusive: the amount already holds the tax; exclusive: the tax is added to it.
    tax_inclusive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    tax_amount: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


@dataclass
class TaxSummary:
    """One rate's share of an invoice: what it taxed (before tax) and the tax."""

    name: str
    percentage: Decimal | None
    inclusive: bool
    taxable: int = 0
    amount: int = 0

    @property
    def label(self) -> str:
        """ "VAT 19%", "GST 10% (included)", "Reverse charge"."""
        if self.percentage is None:
            return self.name
        percent = f"{Decimal(self.percentage).normalize():f}"
        return f"{self.name} {percent}%" + (" (included)" if self.inclusive else "")


class TaxRate(db.Model):
    """A tax rate of the catalog (``[[tax_rates]]``), synced by ``flask catalog sync``. Invoice
    lines copy its name and percentage, so a later change never alters an issued invoice."""

    __tablename__ = "tax_rates"

    id: Mapped[str] = id_column("txr")
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    percentage: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    country: Mapped[str] = mapped_column(String(2), index=True)
    region: Mapped[str] = mapped_column(String(100), default="")
    inclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    # A rate taken out of the catalog stays for the invoices that name it, inactive.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class BillingProfile(db.Model):
    """Who a tenant's invoices are made out to: legal name, address, tax IDs, where they go.
    One per tenant; each invoice copies it as it is when issued (``Invoice.buyer``)."""

    __tablename__ = "billing_profiles"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), primary_key=True)
    legal_name: Mapped[str] = mapped_column(String(200), default="")
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    region: Mapped[str] = mapped_column(String(100), default="")
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166-1 alpha-2; "" not given
    billing_email: Mapped[str] = mapped_column(String(254), default="")
    extra_recipients: Mapped[list] = mapped_column(JSON, default=list)
    # [{"type": "eu_vat", "value": "FR40303265045"}], normalised and validated.
    tax_ids: Mapped[list] = mapped_column(JSON, default=list)
    po_number: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class InvoiceCounter(db.Model):
    """The last invoice number of each year. Taken and bumped inside the invoice's own
    transaction, so a rolled-back invoice gives its number back: numbers have no gaps."""

    __tablename__ = "invoice_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class BillingRun(db.Model):
    __tablename__ = "billing_runs"

    id: Mapped[str] = id_column("run")
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|completed|failed
    # As of a future instant (without BILLING_TEST_CLOCK): what would be billed, nothing billed.
    preview: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    triggered_by: Mapped[str] = mapped_column(String(254), default="")
    subscriptions_due: Mapped[int] = mapped_column(Integer, default=0)
    subscriptions_done: Mapped[int] = mapped_column(Integer, default=0)
    subscriptions_billed: Mapped[int] = mapped_column(Integer, default=0)
    invoices_created: Mapped[int] = mapped_column(Integer, default=0)
    totals: Mapped[dict] = mapped_column(JSON, default=dict)  # currency -> minor units invoiced
    errors: Mapped[list] = mapped_column(JSON, default=list)
    # A preview's first subscriptions and what each would be invoiced (a real run's are invoices).
    preview_items: Mapped[list | None] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Written as the run goes (every few subscriptions or seconds): a running run whose heartbeat
    # has stopped lost its process, and is shown as stalled and can be resumed.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


class BillingRunShard(db.Model):
    """A slice of a billing run's due subscriptions, billed by one job on the queue (any worker,
    any host). A job claims its shard (``status`` pending, or running with a stale heartbeat) before
    it bills anything, so a shard delivered twice is billed once; the last shard to end closes the run.
    """

    __tablename__ = "billing_run_shards"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[str] = id_column("shd")
    run_id: Mapped[str] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    subscription_ids: Mapped[list] = mapped_column(JSON, default=list)
    # pending | running | done | failed | abandoned (a resumed run re-cuts what is still due)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # The worker that took it ("host:pid"): the console and the tests see who billed what.
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
