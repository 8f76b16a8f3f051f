"""A tenant's subscription: start, change plan (with exact proration), cancel, resume, and the
one step the billing run takes for it (DESIGN §6).

Every function takes the instant it acts at (``at``), so tests and ``billing run --at`` can
travel in time; instants are truncated to whole seconds because proration is by the second.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import select, update

from portal import audit
from portal.access import Actor
from portal.billing import discounts, notices, plans
from portal.billing.invoices import BILLING, Line, issue, when_stored
from portal.billing.money import format_money, round_half_up
from portal.billing.periods import add_interval, period_bounds, remaining_fraction
from portal.billing.pricing import FeatureSpec, usage_charges
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.models import CANCELLATION_REASONS, Invoice, PlanVersion, Subscription, Tenant, UsageEvent, utcnow
from portal.usage.meters import meters_by_key
from portal.usage.services import plan_features, value_of, values_known
from portal.webhooks import outbox


def to_second(at: datetime | None) -> datetime:
    at = at or utcnow()
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    return at.astimezone(UTC).replace(microsecond=0)


def subscription_of(tenant: Tenant) -> Subscription | None:
    return db.session.execute(
        select(Subscription).where(Subscription.tenant_id == tenant.tenant_id)
    ).scalar_one_or_none()


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%b %-d, %Y} – {end:%b %-d, %Y}"


def _plan_line(version: PlanVersion, start: datetime, end: datetime) -> Line:
    return Line(
        type="plan",
        description=f"{version.name} plan ({version.interval}ly), {_span(start, end)}",
        amount=version.price,
        unit_amount=version.price,
        period_start=start,
        period_end=end,
    )


def usage_lines(subscription: Subscription, start: datetime, end: datetime) -> list[Line]:
    """Usage of a closed period, billed in arrears by the plan version of that period: one line
    (or one per tier) for each priced feature with billable usage, each rounded once."""
    version = subscription.plan_version
    priced = _priced(version)
    if not priced:
        return []
    meters = meters_by_key()
    lines = []
    for feature in priced:
        meter = meters.get(feature.key)
        if meter is None:
            continue
        quantity = value_of(meter, feature, subscription.tenant_id, start, end)
        for charge in usage_charges(feature, quantity, currency=version.currency):
            lines.append(
                Line(
                    type="usage",
                    description=charge.description[:300],
                    amount=charge.amount,
                    quantity=charge.quantity,
                    unit_amount=charge.unit_amount,
                    period_start=start,
                    period_end=end,
                )
            )
    return lines


def _priced(version: PlanVersion) -> list[FeatureSpec]:
    """The version's features that cost money beyond what is included (parsed once per process)."""
    return [feature for feature in plan_features(version.id) if feature.pricing != "included"]


@contextmanager
def prefetch_usage(subscriptions: list[Subscription], at: datetime) -> Iterator[None]:
    """Read at once the usage ``usage_lines`` will ask for: the closed period of each of these
    subscriptions that ``renew`` as of ``at`` settles first (a billing run's batch). Later
    periods of a subscription catching up are read one by one, as before."""
    meters = meters_by_key()
    windows = [
        (meters[feature.key], feature, subscription.tenant_id, subscription.current_period_start, boundary)
        for subscription in subscriptions
        if subscription.is_live and (boundary := subscription.current_period_end) <= at
        for feature in _priced(subscription.plan_version)
        if feature.key in meters
    ]
    with values_known(windows):
        yield


def _mark_invoiced(subscription: Subscription, start: datetime, end: datetime, invoice: Invoice) -> None:
    """The closed period's events now belong to an invoice: they can no longer be deleted (once
    the invoice's row is stored: at once, or with its billing run's batch)."""
    statement = (
        update(UsageEvent)
        .where(
            UsageEvent.tenant_id == subscription.tenant_id,
            UsageEvent.occurred_at >= start,
            UsageEvent.occurred_at < end,
            UsageEvent.invoice_id.is_(None),
        )
        .values(invoice_id=invoice.id)
        .execution_options(synchronize_session=False)
    )
    when_stored(invoice, lambda: db.session.execute(statement))


def _issue_period_invoice(
    subscription: Subscription,
    start: datetime,
    end: datetime,
    at: datetime,
    extra: list[Line] = (),
    actor: Actor = BILLING,
    run_id: str | None = None,
) -> Invoice:
    lines = [_plan_line(subscription.plan_version, start, end), *extra]
    return issue(subscription, "period", start, end, lines, at, actor, billing_run_id=run_id)


def _set_plan(subscription: Subscription, version: PlanVersion) -> None:
    subscription.plan_version = version
    subscription.plan_version_id = version.id
    # The tenant row carries the plan key too: rate limits and seed 000's tenant body read it.
    subscription.tenant.subscription_plan = version.key


MAX_TRIAL_DAYS = 365


def _first_period(version: PlanVersion, begins: datetime, trial_days: int) -> tuple[datetime, datetime]:
    """The trial, or else the first billing period, of a subscription beginning at ``begins``."""
    if trial_days:
        return begins, begins + timedelta(days=trial_days)
    return period_bounds(begins, version.interval, 0)


def _check_start_date(subscription: Subscription | None, begins: datetime, at: datetime) -> None:
    """A start dated back is in the past, after the previous subscription ended."""
    if begins > at:
        raise ValidationFailed(
            "start_date is in the future; a subscription starts at once, or on an earlier day of its first period.",
            field="start_date",
        )
    if subscription is not None and subscription.ended_at is not None and begins < subscription.ended_at:
        raise ValidationFailed(
            f"start_date is before the previous subscription ended ({subscription.ended_at:%Y-%m-%d %H:%M} UTC), "
            "whose usage up to then is billed already; leave start_date out to start now.",
            field="start_date",
        )


def start(
    actor: Actor,
    tenant: Tenant,
    plan_key: str,
    at: datetime | None = None,
    *,
    trial_days: int | None = None,
    starts_at: datetime | None = None,
) -> Subscription:
    """Sign-up, onboarding, and subscribing again after a subscription ended (the plan cards,
    POST /tenants/{id}/subscription): a trial when the plan has trial days (``trial_days``
    overrides them; 0: none), else the first period invoiced in advance at once. ``starts_at``
    dates the start back (the billing anchor), as long as that first period is still running."""
    at = to_second(at)
    version = plans.current_version(plan_key)
    subscription = subscription_of(tenant)
    if tenant.status == "cancelled":
        raise Conflict(f"{tenant.tenant_id} is deleted; a deleted account cannot subscribe.")
    if subscription is not None and subscription.status != "canceled":
        raise Conflict(f"{tenant.tenant_id} already has a subscription.")
    trial_days = version.trial_days if trial_days is None else trial_days
    if not 0 <= trial_days <= MAX_TRIAL_DAYS:
        raise ValidationFailed(f"trial_days must be between 0 and {MAX_TRIAL_DAYS}.", field="trial_days")
    begins = at if starts_at is None else to_second(starts_at)
    if starts_at is not None:
        _check_start_date(subscription, begins, at)
    first_start, first_end = _first_period(version, begins, trial_days)
    if first_end <= at:
        raise ValidationFailed(
            "start_date is so far back that its first period has already ended; choose a later day.",
            field="start_date",
        )
    if subscription is None:
        subscription = Subscription(tenant=tenant, tenant_id=tenant.tenant_id, created_at=at)
    else:
        # Subscribing again after an ended subscription: the same row starts afresh (its old
        # invoices keep pointing at it).
        subscription.trial_end = subscription.ended_at = subscription.cancel_requested_at = None
        subscription.cancel_reason = subscription.cancel_feedback = None
        subscription.cancel_at_period_end = False
    _set_plan(subscription, version)
    if trial_days:
        subscription.status, subscription.trial_end = "trialing", first_end
        subscription.billing_anchor, subscription.period_index = first_end, -1
    else:
        subscription.status, subscription.billing_anchor, subscription.period_index = "active", begins, 0
    subscription.current_period_start, subscription.current_period_end = first_start, first_end
    db.session.add(subscription)
    db.session.flush()
    if subscription.status == "active":
        _issue_period_invoice(
            subscription, subscription.current_period_start, subscription.current_period_end, at, actor=actor
        )
    audit.record(
        actor,
        "subscription.started",
        tenant,
        "subscription",
        subscription.id,
        plan=version.key,
        status=subscription.status,
    )
    return subscription


@dataclass
class ChangePreview:
    """What a plan change will do, shown to the user before they confirm it."""

    old: PlanVersion
    new: PlanVersion
    direction: str  # "upgrade" | "downgrade"
    effective_at: datetime
    immediate: bool
    prorate: bool
    lines: list[Line] = field(default_factory=list)

    @property
    def credit(self) -> int:
        return -sum(line.amount for line in self.lines if line.amount < 0 and line.type != "discount")

    @property
    def discount(self) -> int:
        return -sum(line.amount for line in self.lines if line.type == "discount")

    @property
    def charge(self) -> int:
        return sum(line.amount for line in self.lines if line.amount > 0)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    def money(self, cents: int) -> str:
        return format_money(cents, self.new.currency)


def _require_live(subscription: Subscription | None) -> Subscription:
    if subscription is None:
        raise ValidationFailed("This account has no subscription.")
    if not subscription.is_live:
        raise Conflict(f"The subscription is {subscription.status}; it cannot be changed.")
    return subscription


def _effective_instant(effective_date: date | datetime | None, at: datetime) -> datetime:
    if effective_date is None:
        return at
    if isinstance(effective_date, datetime):
        instant = to_second(effective_date)
    else:
        instant = datetime.combine(effective_date, time(0, 0), tzinfo=UTC)
    if instant < at - timedelta(days=1):
        raise ValidationFailed(
            "effective_date is in the past; leave it out to change the plan now.", field="effective_date"
        )
    return max(instant, at)


def _paid_time_left(subscription: Subscription, at: datetime) -> Fraction:
    """Periods' worth of time paid for and still to come at ``at``: the rest of the current
    period, by the second. A current period that starts after ``at`` (a billing run as of a
    future instant used to move periods on early) has the periods before it paid for too, so
    those count as well, the one under way by the second and each one after it whole."""
    start, end = subscription.current_period_start, subscription.current_period_end
    if at >= start:
        return remaining_fraction(start, end, at)
    interval, left, index = subscription.plan_version.interval, Fraction(1), subscription.period_index
    # Back through the periods counted from the anchor. Before it (index -1) was a trial or a
    # period on another interval, not paid at this price: it adds nothing.
    while index > 0:
        index -= 1
        start, end = period_bounds(subscription.billing_anchor, interval, index)
        if at >= start:
            return left + remaining_fraction(start, end, at)
        left += 1
    return left


def _proration_lines(subscription: Subscription, new: PlanVersion, at: datetime, prorate: bool) -> list[Line]:
    """Unused time of the old price credited, remaining time of the new price charged, each by
    the second and rounded once. A change of interval starts a new period at ``at`` instead."""
    old = subscription.plan_version
    end = subscription.current_period_end
    fraction = _paid_time_left(subscription, at)
    credit = round_half_up(old.price * fraction) if prorate and subscription.status != "trialing" else 0
    lines = []
    if credit:
        lines.append(
            Line(
                type="proration",
                description=f"Unused time on {old.name}, {_span(at, end)}",
                amount=-credit,
                unit_amount=-credit,
                period_start=at,
                period_end=end,
            )
        )
    if new.interval != old.interval:
        new_end = add_interval(at, new.interval, 1)
        lines.insert(0, _plan_line(new, at, new_end))
    elif prorate:
        charge = round_half_up(new.price * fraction)
        if charge:
            lines.append(
                Line(
                    type="proration",
                    description=f"Remaining time on {new.name}, {_span(at, end)}",
                    amount=charge,
                    unit_amount=charge,
                    period_start=at,
                    period_end=end,
                )
            )
    return lines


def change_direction(old: PlanVersion, new: PlanVersion) -> str:
    """Up or down by the price of a month on each. Moving to a longer interval (monthly to
    yearly) is an upgrade too when the new period costs at least the current one: a yearly plan
    is cheaper by the month, but the commitment is paid now, the unused time credited, and the
    year's price always covers that credit. A longer interval for less (Enterprise monthly to
    Starter yearly) stays a downgrade, at the end of the period."""
    if new.monthly_price >= old.monthly_price:
        return "upgrade"
    if new.months > old.months and new.price >= old.price:
        return "upgrade"
    return "downgrade"


def preview_change(
    subscription: Subscription | None,
    plan_key: str,
    at: datetime | None = None,
    prorate: bool = True,
    effective_date: date | datetime | None = None,
) -> ChangePreview:
    at = to_second(at)
    subscription = _require_live(subscription)
    new = plans.current_version(plan_key)
    old = subscription.plan_version
    if new.plan_id == old.plan_id:
        raise Conflict(f"You are already on the {old.name} plan.", field="plan")
    if new.currency != old.currency:
        raise Conflict("Plans in another currency cannot be switched to; contact support.", field="plan")
    direction = change_direction(old, new)
    effective_at = _effective_instant(effective_date, at)
    if subscription.status == "trialing":
        # No money has changed hands during a trial: any change applies at once, free, unless
        # an upgrade is dated (seed 000's effective_date), which the billing run then honours.
        if direction == "upgrade" and effective_at > at:
            return ChangePreview(old, new, direction, effective_at, False, prorate)
        return ChangePreview(old, new, direction, at, True, prorate)
    if direction == "downgrade" or new.months < old.months:
        # A shorter interval (yearly to monthly) waits for the paid-for period to end too: its
        # unused credit can exceed the new plan's first period, and there is no balance to carry it.
        return ChangePreview(old, new, direction, subscription.current_period_end, False, prorate)
    if effective_at > at:
        return ChangePreview(old, new, direction, effective_at, False, prorate)
    if new.interval == old.interval and not prorate:
        return ChangePreview(old, new, direction, at, True, prorate)
    lines = _proration_lines(subscription, new, at, prorate)
    # The invoice the change issues gets the subscription's discount as any invoice does.
    starts_period = new.interval != old.interval
    applied = discounts.for_invoice(subscription, lines, at, starts_period, close=False, version=new)
    if applied:
        lines.append(Line(type="discount", description=applied.description, amount=-applied.amount))
    return ChangePreview(old, new, direction, at, True, prorate, lines)


def _apply_now(
    subscription: Subscription,
    new: PlanVersion,
    at: datetime,
    prorate: bool,
    actor: Actor = BILLING,
    run_id: str | None = None,
) -> Invoice | None:
    old = subscription.plan_version
    lines = _proration_lines(subscription, new, at, prorate) if subscription.status != "trialing" else []
    _set_plan(subscription, new)
    subscription.scheduled_plan_version_id = None
    subscription.scheduled_change_at = None
    if subscription.status == "trialing":
        return None
    if new.interval != old.interval:
        # A new interval starts a new billing cycle today, anchored here.
        subscription.billing_anchor, subscription.period_index = at, 0
        subscription.current_period_start, subscription.current_period_end = period_bounds(at, new.interval, 0)
        return issue(
            subscription, "period", at, subscription.current_period_end, lines, at, actor, billing_run_id=run_id
        )
    if not lines:
        return None
    return issue(
        subscription, "proration", at, subscription.current_period_end, lines, at, actor, billing_run_id=run_id
    )


def change_plan(
    actor: Actor,
    subscription: Subscription | None,
    plan_key: str,
    at: datetime | None = None,
    prorate: bool = True,
    effective_date: date | datetime | None = None,
) -> tuple[ChangePreview, Invoice | None]:
    """Upgrade at once (or on ``effective_date``), downgrade at the period's end."""
    at = to_second(at)
    preview = preview_change(subscription, plan_key, at, prorate, effective_date)
    invoice = None
    if preview.immediate:
        invoice = _apply_now(subscription, preview.new, at, prorate, actor)
    else:
        subscription.scheduled_plan_version_id = preview.new.id
        subscription.scheduled_plan_version = preview.new
        subscription.scheduled_change_at = preview.effective_at
        subscription.scheduled_change_prorate = prorate
    # A plan change (immediate or scheduled) replaces a pending cancellation: the user has decided to stay.
    subscription.cancel_at_period_end = False
    audit.record(
        actor,
        f"subscription.{preview.direction}{'' if preview.immediate else '_scheduled'}",
        subscription.tenant,
        "subscription",
        subscription.id,
        old_plan=preview.old.key,
        new_plan=preview.new.key,
        effective_at=preview.effective_at.isoformat(),
        invoice=invoice.number if invoice else None,
    )
    notices.plan_changed(subscription, preview.old, preview.new, preview.effective_at, preview.immediate, invoice, at)
    return preview, invoice


def cancel_scheduled_change(actor: Actor, subscription: Subscription | None) -> Subscription:
    subscription = _require_live(subscription)
    if subscription.scheduled_plan_version_id is None:
        raise Conflict("There is no scheduled plan change to cancel.")
    plan = subscription.scheduled_plan_version.key
    subscription.scheduled_plan_version_id = None
    subscription.scheduled_plan_version = None
    subscription.scheduled_change_at = None
    audit.record(
        actor,
        "subscription.scheduled_change_cancelled",
        subscription.tenant,
        "subscription",
        subscription.id,
        plan=plan,
    )
    return subscription


def cancel(
    actor: Actor,
    subscription: Subscription | None,
    at_period_end: bool = True,
    reason: str | None = None,
    feedback: str = "",
    at: datetime | None = None,
) -> Subscription:
    at = to_second(at)
    subscription = _require_live(subscription)
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > 40:
        known = ", ".join(CANCELLATION_REASONS)
        raise ValidationFailed(
            f"Keep the cancellation reason under 40 characters, e.g. one of {known}.", field="reason"
        )
    feedback = (feedback or "").strip()
    if len(feedback) > 2000:
        raise ValidationFailed("Keep the feedback under 2,000 characters.", field="feedback")
    if at_period_end and subscription.cancel_at_period_end:
        raise Conflict("The subscription is already set to end at the end of this period.")
    subscription.cancel_requested_at = at
    subscription.cancel_reason, subscription.cancel_feedback = reason, feedback or None
    subscription.scheduled_plan_version_id = None
    subscription.scheduled_change_at = None
    if at_period_end:
        subscription.cancel_at_period_end = True
    else:
        subscription.status, subscription.ended_at = "canceled", at
        subscription.cancel_at_period_end = False
    audit.record(
        actor,
        "subscription.cancel_scheduled" if at_period_end else "subscription.canceled",
        subscription.tenant,
        "subscription",
        subscription.id,
        reason=reason,
    )
    notices.cancellation_confirmed(subscription, at)
    return subscription


def resume(actor: Actor, subscription: Subscription | None, at: datetime | None = None) -> Subscription:
    at = to_second(at)
    if subscription is not None and subscription.status == "canceled":
        raise Conflict("The subscription has already ended; choose a plan to subscribe again.")
    subscription = _require_live(subscription)
    if not subscription.cancel_at_period_end:
        raise Conflict("The subscription is not set to cancel, so there is nothing to resume.")
    if at >= subscription.current_period_end:
        raise Conflict("The period has already ended; choose a plan to subscribe again.")
    subscription.cancel_at_period_end = False
    subscription.cancel_requested_at = None
    audit.record(actor, "subscription.resumed", subscription.tenant, "subscription", subscription.id)
    return subscription


def renew(subscription: Subscription, at: datetime, run_id: str | None = None) -> list[Invoice]:
    """The billing run's step for one subscription, as of ``at``: every boundary that has
    passed is settled in order (a run that was down for months catches up). ``run_id``: the
    run doing it, recorded on each invoice."""
    at = to_second(at)
    issued: list[Invoice] = []
    system = BILLING
    while subscription.is_live:
        boundary = subscription.current_period_end
        change_at = subscription.scheduled_change_at
        if (
            change_at is not None
            and change_at < boundary
            and change_at <= at
            and not (
                subscription.status != "trialing"
                and subscription.scheduled_plan_version.months < subscription.plan_version.months
            )
        ):
            # An upgrade dated inside the period (seed 000's effective_date). One to a shorter
            # interval waits for the boundary instead, like in preview_change.
            new = subscription.scheduled_plan_version
            invoice = _apply_now(subscription, new, change_at, subscription.scheduled_change_prorate, run_id=run_id)
            issued += [invoice] if invoice else []
            audit.record(
                system, "subscription.upgraded", subscription.tenant, "subscription", subscription.id, new_plan=new.key
            )
            continue
        if boundary > at:
            break
        closed_start, old_version = subscription.current_period_start, subscription.plan_version
        arrears = usage_lines(subscription, closed_start, boundary)
        if subscription.cancel_at_period_end:
            subscription.status, subscription.ended_at = "canceled", boundary
            subscription.cancel_at_period_end = False
            if arrears:
                issued.append(
                    issue(subscription, "period", boundary, boundary, arrears, boundary, billing_run_id=run_id)
                )
                _mark_invoiced(subscription, closed_start, boundary, issued[-1])
            audit.record(
                system,
                "subscription.canceled",
                subscription.tenant,
                "subscription",
                subscription.id,
                plan=old_version.key,
            )
            break
        if subscription.scheduled_plan_version_id is not None and (change_at is None or change_at <= boundary):
            _set_plan(subscription, subscription.scheduled_plan_version)
            subscription.scheduled_plan_version_id = None
            subscription.scheduled_plan_version = None
            subscription.scheduled_change_at = None
            audit.record(
                system,
                "subscription.downgraded",
                subscription.tenant,
                "subscription",
                subscription.id,
                old_plan=old_version.key,
                new_plan=subscription.plan_version.key,
            )
        if subscription.plan_version.interval != old_version.interval:
            # Monthly to yearly or back: the new cycle is anchored at this boundary.
            subscription.billing_anchor, subscription.period_index = boundary, -1
        if subscription.status == "trialing":
            subscription.status = "active"
        version = subscription.plan_version
        subscription.period_index += 1
        start, end = period_bounds(subscription.billing_anchor, version.interval, subscription.period_index)
        subscription.current_period_start, subscription.current_period_end = start, end
        issued.append(_issue_period_invoice(subscription, start, end, boundary, arrears, run_id=run_id))
        if arrears:
            _mark_invoiced(subscription, closed_start, boundary, issued[-1])
        outbox.emit_about(subscription.tenant_id, "subscription.renewed", "subscription", subscription.id)
    return issued


def next_invoice_estimate(subscription: Subscription) -> tuple[datetime, int, str] | None:
    """(date, amount, plan name) of the next renewal invoice, or None when none will come."""
    if not subscription.is_live or subscription.cancel_at_period_end:
        return None
    version = renewal_version(subscription)
    return subscription.current_period_end, version.price, version.name


def renewal_version(subscription: Subscription) -> PlanVersion:
    """The plan version the next renewal invoice bills: a downgrade scheduled for the period's
    end takes effect then; a change dated inside the period has already happened by then."""
    version = subscription.scheduled_plan_version or subscription.plan_version
    if subscription.scheduled_change_at and subscription.scheduled_change_at < subscription.current_period_end:
        version = subscription.plan_version
    return version
