"""Billing over the API: seed 000's subscription endpoints, seed 002's plans, resume and
scheduled-change revert, invoices with payment status (003) and the operator's mark-paid and
mark-uncollectible.

Every rule is the billing core's (``portal.billing``); these views parse, authorise, call one
service and shape seed 000's bodies. Minor units are authoritative; the seed's major-unit
numbers (``monthly_cost_usd``, ``prorated_charge``) are computed as exact decimals.
"""

from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from functools import partial

from flask import url_for
from sqlalchemy.orm import selectinload

from portal.api.registry import ApiError, not_found, operation, operator_operation
from portal.api.schemas import billing as schemas
from portal.api.schemas import common
from portal.billing import invoices, plans, subscriptions
from portal.billing.money import format_money, round_half_up, to_major
from portal.billing.pdf import pdf_download
from portal.billing.periods import ONE_SECOND
from portal.billing.pricing import feature_specs
from portal.errors import Conflict, NotFound, PermissionDenied, ServiceError, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, API_SCOPES, Invoice, Subscription, Tenant, utcnow
from portal.tenants import services as tenants

TAGS = ["billing"]
# A tenant's billing: open while the tenant is suspended (paying is how a suspension for non-payment ends).
tenant_billing = partial(operation, tags=TAGS, allowed_when_suspended=True)
# Reading billing needs billing:read where that scope exists; otherwise any key of the tenant
# reads it, as it reads the tenant itself.
READ_SCOPE = "billing:read" if "billing:read" in API_SCOPES else None
# Clocks differ a little; a payment recorded "now" by a machine slightly ahead is still now.
CLOCK_SKEW = timedelta(minutes=5)


def _subscription_or_404(tenant: Tenant) -> Subscription:
    subscription = subscriptions.subscription_of(tenant)
    if subscription is None:
        not_found("Subscription")
    return subscription


def _last_day(end):
    """Periods are half-open: the last day is the one holding the period's last second."""
    return (end - ONE_SECOND).date()


def subscription_out(subscription: Subscription) -> schemas.SubscriptionOut:
    version = subscription.plan_version
    quotas = version.quotas or {}
    scheduled = None
    if subscription.scheduled_plan_version_id is not None:
        upcoming = subscription.scheduled_plan_version
        scheduled = schemas.ScheduledChangeOut(
            plan=upcoming.key,
            plan_name=upcoming.name,
            effective_at=subscription.scheduled_change_at or subscription.current_period_end,
        )
    return schemas.SubscriptionOut(
        subscription_id=subscription.id,
        tenant_id=subscription.tenant_id,
        plan_name=version.key,
        monthly_pipeline_quota=quotas.get("monthly_pipeline_quota", 0),
        concurrent_pipeline_quota=quotas.get("concurrent_pipeline_quota", 0),
        storage_quota_gb=quotas.get("storage_quota_gb", 0),
        monthly_cost_usd=to_major(round_half_up(Fraction(version.price, version.months))),
        billing_cycle_start=subscription.current_period_start.date(),
        billing_cycle_end=_last_day(subscription.current_period_end),
        auto_renew=subscription.is_live and not subscription.cancel_at_period_end,
        stripe_subscription_id=subscription.stripe_subscription_id,
        created_at=subscription.created_at,
        status=subscription.status,
        currency=version.currency,
        interval=version.interval,
        price=version.price,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        trial_end=subscription.trial_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        scheduled_change=scheduled,
    )


def invoice_out(invoice: Invoice, payment_failed: bool | None = None) -> schemas.InvoiceOut:
    """``payment_failed``: when the caller has looked it up for a whole page at once."""
    if payment_failed is None:
        payment_failed = invoice.id in invoices.failed_among([invoice])
    return schemas.InvoiceOut(
        invoice_id=invoice.id,
        number=invoice.number,
        status=invoice.status,
        currency=invoice.currency,
        plan_name=invoice.plan_name,
        subtotal=invoice.subtotal,
        discount=invoice.discount,
        credits_applied=invoice.credits_applied,
        tax=invoice.tax,
        total=invoice.total,
        tax_lines=[
            schemas.TaxLineOut(
                name=rate.name,
                percentage=rate.percentage.normalize() if rate.percentage is not None else None,
                inclusive=rate.inclusive,
                label=rate.label,
                taxable=rate.taxable,
                amount=rate.amount,
            )
            for rate in invoice.tax_lines
        ],
        tax_note=invoice.tax_note,
        billing_name=invoice.billing_name,
        billing_email=invoice.billing_email,
        buyer=_buyer_out(invoice.buyer),
        amount_paid=invoice.amount_paid,
        amount_due=invoice.amount_due,
        total_major=to_major(invoice.total),
        amount_due_major=to_major(invoice.amount_due),
        pdf_url=url_for("api.get_invoice_pdf", tenant_id=invoice.tenant_id, invoice_id=invoice.id),
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        overdue=invoice.overdue,
        payment_failed=payment_failed,
        line_items=[
            schemas.InvoiceLineOut(
                type=line.type,
                description=line.description,
                # Numeric(20, 6) comes back as 1.000000; the client wants 1.
                quantity=line.quantity.normalize(),
                unit_amount=line.unit_amount.normalize(),
                amount=line.amount,
                period_start=line.period_start,
                period_end=line.period_end,
                credits_applied=line.credit_allocated,
                tax_name=line.tax_name,
                tax_percentage=line.tax_percentage.normalize() if line.tax_percentage is not None else None,
                tax_inclusive=line.tax_inclusive,
                tax=line.tax_amount,
            )
            for line in invoice.lines
        ],
    )


def _buyer_out(buyer: dict | None) -> schemas.BuyerOut | None:
    if not buyer:
        return None
    return schemas.BuyerOut(
        **{name: buyer.get(name) or "" for name in ("legal_name", "address_line1", "address_line2", "city")},
        **{name: buyer.get(name) or "" for name in ("postal_code", "region", "po_number")},
        country=buyer.get("country") or None,
        tax_ids=[schemas.BuyerTaxIdOut(**tax_id) for tax_id in buyer.get("tax_ids", [])],
    )


def _as_new_plan_error(error: ServiceError) -> ApiError:
    """The core names the plan field ``plan``; in this body it is ``new_plan`` (same status and code)."""
    field = "new_plan" if error.field in (None, "plan") else error.field
    return ApiError(error.status_code, error.error_code, error.message, [{"field": field, "message": error.message}])


# --- subscription --------------------------------------------------------------------------


@tenant_billing("GET", "/tenants/<tenant_id>/subscription", scope=READ_SCOPE)
def get_subscription(principal, tenant: Tenant) -> schemas.SubscriptionOut:
    """Get the tenant's subscription (plan, quotas, price, billing cycle)"""
    return subscription_out(_subscription_or_404(tenant))


def _subscribable_version(principal, plan_key: str):
    """The plan's current version; a private plan is the operator's to give (to a tenant key it
    does not exist)."""
    version = plans.current_version(plan_key)
    if not version.plan.public and not principal.is_operator:
        public = ", ".join(plan.key for plan in plans.list_plans(public_only=True))
        raise NotFound(f"Unknown plan {plan_key!r}. Plans: {public}.", field="plan")
    return version


@tenant_billing("POST", "/tenants/<tenant_id>/subscription", scope=ADMIN_SCOPE, status=201, errors=[409])
def start_subscription(principal, tenant: Tenant, body: schemas.SubscribeIn) -> schemas.SubscriptionStartedOut:
    """Subscribe to a plan when no subscription is live (a first one, or again after a cancellation)

    Seeds 001/002: a trial when the plan has trial days (`trial_days` overrides them), else the
    first period is invoiced at once (`invoice`). 409 while a subscription is live: change its plan
    with `/subscription/upgrade` instead. An operator may give a private plan or a longer trial.
    """
    current = subscriptions.subscription_of(tenant)
    if current is not None and current.status != "canceled":
        hint = (
            "resume it with POST …/subscription/resume, or change its plan with POST …/subscription/upgrade"
            if current.cancel_at_period_end
            else "change its plan with POST …/subscription/upgrade, or cancel it first"
        )
        raise Conflict(
            f"{tenant.tenant_id} already has a subscription ({current.plan_version.key}, {current.status}); {hint}."
        )
    version = _subscribable_version(principal, body.plan)
    if body.trial_days is not None and body.trial_days > version.trial_days and not principal.is_operator:
        raise PermissionDenied(
            f"{version.name} comes with {version.trial_days} trial days; a longer trial is the operator's to give."
        )
    starts_at = datetime.combine(body.start_date, time(0), tzinfo=UTC) if body.start_date is not None else None
    subscription = subscriptions.start(
        principal.actor(), tenant, version.key, trial_days=body.trial_days, starts_at=starts_at
    )
    invoice = None
    if subscription.status == "active":
        latest = db.session.execute(invoices.for_tenant(tenant).limit(1)).scalar_one_or_none()
        if latest is not None and (latest.subscription_id, latest.period_start) == (
            subscription.id,
            subscription.current_period_start,
        ):
            invoice = latest
    commit()
    if invoice is not None:
        message = f"Subscribed to {version.name}. Invoice {invoice.number} was issued for {format_money(invoice.total, invoice.currency)}."
    elif subscription.trial_end is not None:
        message = f"Subscribed to {version.name}, on trial until {subscription.trial_end:%Y-%m-%d}; the first invoice comes then."
    else:
        message = f"Subscribed to {version.name}."
    return schemas.SubscriptionStartedOut(
        **subscription_out(subscription).model_dump(),
        invoice=invoice_out(invoice) if invoice is not None else None,
        message=message,
    )


@tenant_billing("POST", "/tenants/<tenant_id>/subscription/upgrade", scope=ADMIN_SCOPE, errors=[409])
def upgrade_subscription(principal, tenant: Tenant, body: schemas.UpgradeIn) -> schemas.UpgradeOut:
    """Change plan: upgrade now (prorated, invoiced at once) or on effective_date; downgrade at period end

    `prorated_charge` is what is invoiced now, in major units; `invoice_id` names that invoice. A
    plan that costs less per month is a downgrade, scheduled for the end of the current period
    (`scheduled` true). The current plan or an unknown one: 400 on `new_plan`.
    """
    subscription = _subscription_or_404(tenant)
    try:
        target = plans.current_version(body.new_plan)
        if not target.plan.public and not principal.is_operator:
            # A private plan is the operator's to give; to a tenant it does not exist.
            public = ", ".join(plan.key for plan in plans.list_plans(public_only=True))
            raise NotFound(f"Unknown plan {body.new_plan!r}. Plans: {public}.", field="plan")
        previous = subscription.plan_version
        preview, invoice = subscriptions.change_plan(
            principal.actor(), subscription, target.key, prorate=body.prorate, effective_date=body.effective_date
        )
    except (ValidationFailed, NotFound, Conflict) as error:
        if error.field == "plan" or (isinstance(error, ValidationFailed) and error.field is None):
            raise _as_new_plan_error(error) from None
        raise
    commit()
    when = preview.effective_at.date().isoformat()
    if preview.immediate:
        verb = "upgraded" if preview.direction == "upgrade" else "downgraded"
        message = f"Subscription {verb} successfully to {preview.new.name}."
        if invoice is not None:
            message += f" Invoice {invoice.number} was issued for {preview.money(invoice.total)}."
    elif preview.direction == "downgrade":
        message = (
            f"Downgrade to {preview.new.name} scheduled for {when}, the end of the current billing period; "
            f"{previous.name} stays in effect until then."
        )
    else:
        message = f"Upgrade to {preview.new.name} scheduled for {when}."
    return schemas.UpgradeOut(
        subscription_id=subscription.id,
        previous_plan=previous.key,
        new_plan=preview.new.key,
        effective_date=preview.effective_at.date(),
        prorated_charge=to_major(preview.total),
        message=message,
        direction=preview.direction,
        scheduled=not preview.immediate,
        currency=preview.new.currency,
        invoice_id=invoice.id if invoice else None,
        invoice_number=invoice.number if invoice else None,
    )


@tenant_billing("POST", "/tenants/<tenant_id>/subscription/cancel", scope=ADMIN_SCOPE, errors=[409])
def cancel_subscription(principal, tenant: Tenant, body: schemas.CancelIn) -> schemas.CancelOut:
    """Cancel the subscription at the end of the period (default) or at once

    At period end it can be resumed until then (`/subscription/resume`). 409 when it has already
    ended or is already set to end.
    """
    subscription = _subscription_or_404(tenant)
    subscriptions.cancel(
        principal.actor(),
        subscription,
        at_period_end=body.cancel_at_period_end,
        reason=body.cancellation_reason,
        feedback=body.feedback or "",
    )
    commit()
    if body.cancel_at_period_end:
        ends_at = subscription.current_period_end
        message = "Subscription will be cancelled at end of billing period"
    else:
        ends_at = subscription.ended_at
        message = "Subscription cancelled immediately"
    return schemas.CancelOut(
        subscription_id=subscription.id,
        status="cancelled",
        cancelled_at=subscription.cancel_requested_at,
        billing_cycle_end=_last_day(ends_at) if body.cancel_at_period_end else ends_at.date(),
        message=message,
        cancel_at_period_end=body.cancel_at_period_end,
        ends_at=ends_at,
    )


@tenant_billing("POST", "/tenants/<tenant_id>/subscription/resume", scope=ADMIN_SCOPE, errors=[409])
def resume_subscription(principal, tenant: Tenant) -> schemas.SubscriptionOut:
    """Resume a subscription set to cancel at period end

    409 when it is not set to cancel, or has already ended.
    """
    subscription = subscriptions.resume(principal.actor(), _subscription_or_404(tenant))
    commit()
    return subscription_out(subscription)


@tenant_billing("DELETE", "/tenants/<tenant_id>/subscription/scheduled-change", scope=ADMIN_SCOPE, errors=[409])
def cancel_scheduled_change(principal, tenant: Tenant) -> schemas.SubscriptionOut:
    """Cancel the scheduled plan change (a pending downgrade or dated upgrade)

    409 when no change is scheduled.
    """
    subscription = subscriptions.cancel_scheduled_change(principal.actor(), _subscription_or_404(tenant))
    commit()
    return subscription_out(subscription)


# --- plans ---------------------------------------------------------------------------------


def plan_out(plan) -> schemas.PlanOut:
    version = plan.current_version
    return schemas.PlanOut(
        id=plan.id,
        key=plan.key,
        name=plan.name,
        description=plan.description,
        price=version.price,
        price_amount=to_major(version.price),
        currency=version.currency,
        interval=version.interval,
        interval_months=version.months,
        trial_days=version.trial_days,
        quotas=common.QuotasOut.model_validate(version.quotas),
        rate_limits=schemas.RateLimitsOut.model_validate(version.rate_limits),
        features=[schemas.FeatureOut.model_validate(feature) for feature in feature_specs(version)],
    )


@operation("GET", "/plans", tags=TAGS)
def list_plans(principal) -> schemas.PlanListOut:
    """The public plan catalog: prices, quotas, rate limits, features and their pricing

    Any tenant key or operator token. Prices are in minor units (`price`, `unit_price`,
    `package_price`, `flat_fee`) with `price_amount` in major units.
    """
    return schemas.PlanListOut(
        plans=[plan_out(plan) for plan in plans.list_plans(public_only=True) if plan.versions],
    )


# --- invoices ------------------------------------------------------------------------------


@tenant_billing(
    "GET",
    "/tenants/<tenant_id>/invoices",
    scope=READ_SCOPE,
    links={
        target: {"invoice_id": "$response.body#/invoices/0/invoice_id"}
        for target in (
            "get_invoice",
            "get_invoice_pdf",
            "invoice_payment_status",
            "mark_invoice_paid",
            "mark_invoice_uncollectible",
        )
    },
)
def list_invoices(principal, tenant: Tenant, query: schemas.InvoiceListQuery) -> schemas.InvoiceListOut:
    """List the tenant's invoices, newest first (filter by status, paginate)

    `status`: `open`, `paid`, `void` or `uncollectible`; or `overdue` (open and past its due date)
    or `failed` (open, and its last payment attempt failed), which are open invoices too.
    """
    statement = invoices.for_tenant(tenant, None if query.status == "all" else query.status)
    rows, pagination = common.page_of(statement.options(selectinload(Invoice.lines)), query)
    failed = invoices.failed_among(rows)
    return schemas.InvoiceListOut(
        invoices=[invoice_out(invoice, invoice.id in failed) for invoice in rows], pagination=pagination
    )


@operator_operation("GET", "/invoices", errors=[404])
def list_account_invoices(principal, query: schemas.AccountInvoiceListQuery) -> schemas.AccountInvoiceListOut:
    """List the invoices of every tenant, newest first (filter by tenant, status and period; paginate)

    Seed 003's account-wide list. `period_start`/`period_end` keep the invoices whose period lies
    within those days (a period ends on the day holding its last second). An unknown `tenant_id`:
    404.
    """
    tenant_id = None
    if query.tenant_id is not None:
        tenant = tenants.find_by_reference(query.tenant_id)
        if tenant is None:
            not_found("Customer")
        tenant_id = tenant.tenant_id
    statement = invoices.search(
        tenant_id,
        None if query.status == "all" else query.status,
        _day_start(query.period_start),
        _day_after(query.period_end),
    )
    return common.page_out(
        schemas.AccountInvoiceListOut,
        statement.options(selectinload(Invoice.lines)),
        query,
        lambda invoice: schemas.AccountInvoiceOut(**invoice_out(invoice).model_dump(), tenant_id=invoice.tenant_id),
    )


def _day_start(day: date | None) -> datetime | None:
    return datetime.combine(day, time(0), tzinfo=UTC) if day is not None else None


def _day_after(day: date | None) -> datetime | None:
    """The end of ``day`` (periods are half-open); the last day there is bounds nothing."""
    return _day_start(day + timedelta(days=1)) if day is not None and day < date.max else None


@tenant_billing("GET", "/tenants/<tenant_id>/invoices/<invoice_id>", scope=READ_SCOPE)
def get_invoice(principal, tenant: Tenant, invoice_id: str) -> schemas.InvoiceOut:
    """Get one invoice with its lines"""
    return invoice_out(invoices.get_for_tenant(tenant, invoice_id))


@tenant_billing("GET", "/tenants/<tenant_id>/invoices/<invoice_id>/pdf", scope=READ_SCOPE, media_type="application/pdf")
def get_invoice_pdf(principal, tenant: Tenant, invoice_id: str):
    """The invoice as a PDF (the same document as the portal's download)

    `pdf_url` of an invoice points here. The file is named after the invoice number.
    """
    return pdf_download(invoices.get_for_tenant(tenant, invoice_id))


@tenant_billing("GET", "/tenants/<tenant_id>/invoices/<invoice_id>/payment-status", scope=READ_SCOPE)
def invoice_payment_status(principal, tenant: Tenant, invoice_id: str) -> schemas.PaymentStatusOut:
    """Whether an invoice is paid: amounts due and paid, when, and the payment attempts

    `attempts`: every card payment tried, oldest first, with its outcome and, when it failed, why.
    `overdue` and `payment_failed` are the states of an open invoice that the list filters by.
    """
    invoice = invoices.get_for_tenant(tenant, invoice_id)
    attempts = invoices.attempts_of(invoice)
    return schemas.PaymentStatusOut(
        invoice_id=invoice.id,
        number=invoice.number,
        status=invoice.status,
        currency=invoice.currency,
        total=invoice.total,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        payment_reference=invoice.payment_reference,
        overdue=invoice.overdue,
        payment_failed=invoice.id in invoices.failed_among([invoice]),
        next_payment_attempt_at=invoice.next_payment_attempt_at if invoice.status == "open" else None,
        attempts=[
            schemas.PaymentAttemptOut(
                number=attempt.number,
                attempted_at=attempt.created_at,
                amount=attempt.amount,
                currency=attempt.currency,
                outcome=attempt.status,
                automatic=attempt.off_session,
                failure_reason=attempt.failure_message if attempt.status == "failed" else None,
            )
            for attempt in attempts
        ],
    )


@operator_operation("POST", "/tenants/<tenant_id>/invoices/<invoice_id>/mark-paid", errors=[409])
def mark_invoice_paid(principal, tenant: Tenant, invoice_id: str, body: schemas.MarkPaidIn) -> schemas.InvoiceOut:
    """Record a payment made outside Stripe (a bank transfer) on an open invoice

    `paid_at` defaults to now and cannot be in the future. Like any payment, it ends the dunning the
    invoice caused: a past-due or unpaid subscription is active again, and a suspension for
    `payment_failed` is lifted, once no other invoice is failing. An uncollectible invoice can be
    marked paid too. 409 when the invoice is already paid, or void.
    """
    invoice = invoices.get_for_tenant(tenant, invoice_id)
    now = utcnow()
    if body.paid_at is not None and body.paid_at > now + CLOCK_SKEW:
        raise ValidationFailed(
            "paid_at is in the future; give the day the payment arrived, or leave it out.", field="paid_at"
        )
    invoices.mark_paid(principal.actor(), invoice, body.reference, subscriptions.to_second(body.paid_at or now))
    commit()
    return invoice_out(invoice)


@operator_operation("POST", "/tenants/<tenant_id>/invoices/<invoice_id>/mark-uncollectible", errors=[409])
def mark_invoice_uncollectible(
    principal, tenant: Tenant, invoice_id: str, body: schemas.MarkUncollectibleIn
) -> schemas.InvoiceOut:
    """Write an open invoice off as bad debt (uncollectible), with the reason

    It is no longer charged or retried, and the dunning it caused ends as when it is paid. A payment
    that arrives later still marks it paid. 409 unless the invoice is open.
    """
    invoice = invoices.get_for_tenant(tenant, invoice_id)
    invoices.mark_uncollectible(principal.actor(), invoice, body.reason, subscriptions.to_second(utcnow()))
    commit()
    return invoice_out(invoice)
