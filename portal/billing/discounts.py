"""Discounts (issue 19): coupons and promotion codes, redeemed by a subscription, taken off its
invoices as a line of kind ``discount``.

The rules, in one place:

- A coupon is ``percent_off`` (up to two decimals, more than 0 and at most 100) or ``amount_off``
  minor units of one ``currency``; for ``once`` (one billing period), ``repeating``
  (``duration_periods`` billing periods) or ``forever``; optionally only for some plans, only
  until ``redeem_by``, and only ``max_redemptions`` times. A promotion code is a word customers
  type for a coupon, with its own expiry and maximum.
- A subscription carries at most one active discount; applying another replaces it (the portal
  asks first, the API wants ``replace: true``).
- Each invoice issued while the discount is in effect gets one discount line: a percentage of
  the invoice's subtotal (plan, proration and usage lines alike, as Stripe applies a coupon to
  the whole subtotal), or the fixed amount but never more than that subtotal; rounded once,
  half-up. No line when the plan is not one the coupon is for, or its currency is not the
  invoice's. The invoice's ``discount`` column holds what the line took off, and its total is
  subtotal - discount - credits.
- Duration counts period invoices (those with a plan line, which open a billing period): each
  uses up one period. Proration invoices (a mid-period upgrade) are discounted while the
  discount is in effect and use up nothing: up to the end of the last discounted period.
- Redemptions are counted with a conditional UPDATE (``times_redeemed < max_redemptions``), so
  two requests racing for the last redemption cannot both have it; the subscription's row is
  locked while a discount is applied, so one tenant's double submit applies it once.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.access import Actor
from portal.billing.money import format_money, round_ratio
from portal.billing.periods import period_bounds
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.models import COUPON_DURATIONS, Coupon, Discount, Plan, PromotionCode, Subscription, utcnow
from portal.timezones import format_local

NAME_MAX = 100
CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,39}$")
MAX_PERIODS = 120
MAX_REDEMPTIONS = 1_000_000
# A billion in major units, as for credit: more is a typo.
MAX_AMOUNT = 100_000_000_000


# --- coupons and promotion codes (the operator's) ----------------------------------------------


def _name(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise ValidationFailed(f"Give the coupon a name (1 to {NAME_MAX} characters).", field="name")
    return name


def _percent(value) -> Decimal:
    try:
        percent = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed("Give the percentage off as a number, e.g. 20.", field="percent_off") from None
    if not percent.is_finite() or percent <= 0 or percent > 100:
        raise ValidationFailed("The percentage off must be more than 0 and at most 100.", field="percent_off")
    if percent != percent.quantize(Decimal("0.01")):
        raise ValidationFailed("Use at most two decimal places for the percentage off.", field="percent_off")
    return percent.quantize(Decimal("0.01"))


def _currency(currency: str | None) -> str:
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValidationFailed(
            "An amount off needs its currency, as a three-letter code such as USD.", field="currency"
        )
    return code


def _positive(value, field: str, most: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValidationFailed(f"{what} must be a whole number from 1 to {most:,}.", field=field)
    return value


def _plan_keys(keys) -> list[str]:
    wanted = sorted({(key or "").strip() for key in keys or () if (key or "").strip()})
    if not wanted:
        return []
    known = set(db.session.execute(select(Plan.key)).scalars())
    if unknown := [key for key in wanted if key not in known]:
        # Like any key that names nothing (plans.current_version): not found.
        raise NotFound(f"Unknown plan {', '.join(unknown)}; plans are {', '.join(sorted(known))}.", field="plan_keys")
    return wanted


def _future(value: datetime | None, at: datetime, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationFailed("Give the date with its timezone (UTC).", field=field)
    if value <= at:
        raise ValidationFailed("Choose a moment in the future.", field=field)
    return value


def create_coupon(
    actor: Actor,
    name: str,
    *,
    percent_off=None,
    amount_off: int | None = None,
    currency: str | None = None,
    duration: str = "once",
    duration_periods: int | None = None,
    plan_keys=(),
    redeem_by: datetime | None = None,
    max_redemptions: int | None = None,
    at: datetime | None = None,
) -> Coupon:
    """A new coupon, after every rule is checked (each refusal names its field)."""
    at = at or utcnow()
    name = _name(name)
    if (percent_off is None) == (amount_off is None):
        raise ValidationFailed(
            "Give either a percentage off or an amount off (not both).",
            field="amount_off" if amount_off is not None else "percent_off",
        )
    if percent_off is not None:
        percent_off = _percent(percent_off)
        if (currency or "").strip():
            raise ValidationFailed("A percentage off fits any currency; leave the currency out.", field="currency")
        currency = None
    else:
        amount_off = _positive(amount_off, "amount_off", MAX_AMOUNT, "The amount off (in cents)")
        currency = _currency(currency)
    if duration not in COUPON_DURATIONS:
        raise ValidationFailed(f"The duration is one of {', '.join(COUPON_DURATIONS)}.", field="duration")
    if duration == "repeating":
        if duration_periods is None:
            raise ValidationFailed(
                f"Say for how many billing periods (1 to {MAX_PERIODS}) a repeating coupon applies.",
                field="duration_periods",
            )
        duration_periods = _positive(duration_periods, "duration_periods", MAX_PERIODS, "The number of periods")
    elif duration_periods is not None:
        raise ValidationFailed(
            f"Only a repeating coupon has a number of periods; a coupon for {duration} has none.",
            field="duration_periods",
        )
    if max_redemptions is not None:
        max_redemptions = _positive(max_redemptions, "max_redemptions", MAX_REDEMPTIONS, "The maximum redemptions")
    coupon = Coupon(
        name=name,
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency,
        duration=duration,
        duration_periods=duration_periods,
        plan_keys=_plan_keys(plan_keys),
        redeem_by=_future(redeem_by, at, "redeem_by"),
        max_redemptions=max_redemptions,
        times_redeemed=0,
        active=True,
        created_by=actor.name[:254],
        created_at=at,
    )
    db.session.add(coupon)
    db.session.flush()
    audit.record(actor, "coupon.created", None, "coupon", coupon.id, name=name, terms=terms(coupon))
    return coupon


def deactivate_coupon(actor: Actor, coupon: Coupon, at: datetime | None = None) -> Coupon:
    """No new redemptions of it (nor of its codes); discounts already applied run their course."""
    if not coupon.active:
        raise Conflict(f"The coupon {coupon.name} is already deactivated.")
    coupon.active, coupon.deactivated_at = False, at or utcnow()
    audit.record(actor, "coupon.deactivated", None, "coupon", coupon.id, name=coupon.name)
    return coupon


def normalized_code(code: str | None) -> str:
    return (code or "").strip().upper()


def create_promotion_code(
    actor: Actor,
    coupon: Coupon,
    code: str,
    expires_at: datetime | None = None,
    max_redemptions: int | None = None,
    at: datetime | None = None,
) -> PromotionCode:
    """A code customers type for ``coupon``: 3 to 40 letters, digits, - or _, any case."""
    at = at or utcnow()
    code = normalized_code(code)
    if not CODE_PATTERN.match(code):
        raise ValidationFailed(
            "Use 3 to 40 letters, digits, - or _ for the code, starting with a letter or digit.", field="code"
        )
    if not coupon.active:
        raise Conflict(f"The coupon {coupon.name} is deactivated; codes can only be added to an active coupon.")
    if max_redemptions is not None:
        max_redemptions = _positive(max_redemptions, "max_redemptions", MAX_REDEMPTIONS, "The maximum redemptions")
    taken = Conflict(f"The code {code} exists already; choose another.", field="code")
    if db.session.execute(select(exists().where(PromotionCode.code == code))).scalar():
        raise taken
    promotion_code = PromotionCode(
        code=code,
        coupon=coupon,
        coupon_id=coupon.id,
        active=True,
        expires_at=_future(expires_at, at, "expires_at"),
        max_redemptions=max_redemptions,
        times_redeemed=0,
        created_by=actor.name[:254],
        created_at=at,
    )
    try:
        with db.session.begin_nested():
            db.session.add(promotion_code)
    except IntegrityError:  # the same code created at the same moment by another request
        raise taken from None
    audit.record(
        actor, "promotion_code.created", None, "promotion_code", promotion_code.id, code=code, coupon=coupon.id
    )
    return promotion_code


def deactivate_promotion_code(actor: Actor, promotion_code: PromotionCode, at: datetime | None = None) -> PromotionCode:
    if not promotion_code.active:
        raise Conflict(f"The code {promotion_code.code} is already deactivated.")
    promotion_code.active, promotion_code.deactivated_at = False, at or utcnow()
    audit.record(
        actor, "promotion_code.deactivated", None, "promotion_code", promotion_code.id, code=promotion_code.code
    )
    return promotion_code


def get_coupon(coupon_id: str) -> Coupon:
    coupon = db.session.get(Coupon, (coupon_id or "")[:32])
    if coupon is None:
        raise NotFound("There is no such coupon.", field="coupon_id")
    return coupon


def get_promotion_code(promotion_code_id: str) -> PromotionCode:
    promotion_code = db.session.get(PromotionCode, (promotion_code_id or "")[:32])
    if promotion_code is None:
        raise NotFound("There is no such promotion code.", field="promotion_code_id")
    return promotion_code


def find_code(code: str | None) -> PromotionCode:
    """The promotion code a customer typed, whatever its case; unknown: NotFound in their words."""
    typed = normalized_code(code)
    if not typed:
        raise ValidationFailed("Type the promotion code.", field="code")
    found = None
    if len(typed) <= 40:
        found = db.session.execute(select(PromotionCode).where(PromotionCode.code == typed)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"There is no promotion code {typed[:40]}. Check the spelling.", field="code")
    return found


def coupons():
    """The statement listing every coupon, newest first (callers paginate it)."""
    return select(Coupon).order_by(Coupon.created_at.desc(), Coupon.id)


def redeemable_coupons() -> list[Coupon]:
    """Active coupons not past their redeem-by date nor used up, newest first."""
    now = utcnow()
    statement = coupons().where(
        Coupon.active.is_(True),
        (Coupon.redeem_by.is_(None)) | (Coupon.redeem_by > now),
        (Coupon.max_redemptions.is_(None)) | (Coupon.times_redeemed < Coupon.max_redemptions),
    )
    return list(db.session.execute(statement).scalars())


def codes_of(coupon: Coupon | None = None):
    """The statement listing promotion codes (of ``coupon``), newest first."""
    statement = select(PromotionCode)
    if coupon is not None:
        statement = statement.where(PromotionCode.coupon_id == coupon.id)
    return statement.order_by(PromotionCode.created_at.desc(), PromotionCode.code)


def redemptions(coupon: Coupon | None = None, tenant_id: str | None = None):
    """The statement listing discounts applied (of ``coupon``, to ``tenant_id``), newest first."""
    statement = select(Discount)
    if coupon is not None:
        statement = statement.where(Discount.coupon_id == coupon.id)
    if tenant_id is not None:
        statement = statement.where(Discount.tenant_id == tenant_id)
    return statement.order_by(Discount.redeemed_at.desc(), Discount.id)


# --- how a coupon reads --------------------------------------------------------------------------


def _percent_text(percent: Decimal) -> str:
    text = f"{percent:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def off_text(coupon: Coupon) -> str:
    """ "20% off", "$10.00 off"."""
    if coupon.percent_off is not None:
        return f"{_percent_text(coupon.percent_off)}% off"
    return f"{format_money(coupon.amount_off, coupon.currency)} off"


def duration_text(coupon: Coupon) -> str:
    if coupon.duration == "forever":
        return "for ever"
    if coupon.duration == "once":
        return "for one billing period"
    return f"for {coupon.duration_periods} billing periods"


def terms(coupon: Coupon) -> str:
    """ "20% off for 3 billing periods, Professional plan only"."""
    text = f"{off_text(coupon)} {duration_text(coupon)}"
    if coupon.plan_keys:
        text += f", {', '.join(coupon.plan_keys)} plan{'s' if len(coupon.plan_keys) > 1 else ''} only"
    return text


def periods_for(coupon: Coupon) -> int | None:
    """How many period invoices a new discount of ``coupon`` covers (None: for ever)."""
    return {"once": 1, "repeating": coupon.duration_periods, "forever": None}[coupon.duration]


# --- what a discount takes off -------------------------------------------------------------------


def amount_off(coupon: Coupon, base: int) -> int:
    """What ``coupon`` takes off a subtotal of ``base`` minor units: a percentage rounded once,
    half-up, or the fixed amount; never more than ``base``, nothing off nothing."""
    if base <= 0:
        return 0
    if coupon.percent_off is not None:
        top, bottom = coupon.percent_off.as_integer_ratio()  # exact: a Decimal is a ratio of integers
        return min(round_ratio(base * top, 100 * bottom), base)
    return min(coupon.amount_off, base)


def fits(coupon: Coupon, plan_key: str, currency: str) -> bool:
    """Whether ``coupon`` discounts an invoice of this plan in this currency."""
    if coupon.plan_keys and plan_key not in coupon.plan_keys:
        return False
    return coupon.currency is None or coupon.currency == currency


def active_discount(subscription: Subscription | None) -> Discount | None:
    if subscription is None or subscription.id is None:
        return None
    return db.session.execute(
        select(Discount).where(Discount.active_subscription_id == subscription.id)
    ).scalar_one_or_none()


def active_discounts(subscription_ids: list[str]) -> dict[str, Discount]:
    """The active discount of each of those subscriptions that has one (one query)."""
    if not subscription_ids:
        return {}
    found = db.session.execute(select(Discount).where(Discount.active_subscription_id.in_(subscription_ids)))
    return {discount.active_subscription_id: discount for discount in found.scalars()}


_LOOK_UP = object()


def current(
    subscription: Subscription | None, at: datetime | None = None, *, among: list[Discount] | None = None
) -> Discount | None:
    """The discount to show for ``subscription``: its active one while still in effect (one whose
    last period is over is closed by the next invoice; until then it is no longer shown).
    ``among``: discounts already loaded that hold the active one if there is one (the tenant's
    newest), instead of a look-up."""
    if among is not None:
        found = [d for d in among if subscription is not None and d.active_subscription_id == subscription.id]
        discount = found[0] if found else None
    else:
        discount = active_discount(subscription)
    return discount if discount is not None and in_effect(discount, at or utcnow(), False) else None


def in_effect(discount: Discount, at: datetime, starts_period: bool) -> bool:
    """Whether an invoice issued at ``at`` is discounted: one that opens a billing period while
    periods remain, any other until the end of the last discounted period."""
    if discount.status != "active":
        return False
    if discount.periods_remaining is None or discount.periods_remaining > 0:
        return True
    return not starts_period and discount.ends_at is not None and at < discount.ends_at


@dataclass(frozen=True)
class Applied:
    """The discount line an invoice gets: ``amount`` is positive (the line is its negative)."""

    discount: Discount
    amount: int
    description: str


def line_description(coupon: Coupon, promotion_code: PromotionCode | None = None) -> str:
    code = f", code {promotion_code.code}" if promotion_code is not None else ""
    return f"Discount: {coupon.name} ({off_text(coupon)}{code})"[:300]


def for_invoice(
    subscription: Subscription,
    lines,
    at: datetime,
    starts_period: bool,
    close: bool = True,
    version=None,
    discount=_LOOK_UP,
) -> Applied | None:
    """The discount line for an invoice of ``subscription`` with ``lines`` (objects with ``type``
    and ``amount``), issued at ``at``; None when no discount is in effect or it does not fit.
    A discount whose last period is over is closed here (in the invoice's transaction), unless
    ``close`` is false: a preview changes nothing. ``version``: the plan version the invoice is
    for, when a preview looks at a plan the subscription is not on yet. ``discount``: the
    subscription's active discount (or None) when already read (``active_discounts``)."""
    if discount is _LOOK_UP:
        discount = active_discount(subscription)
    if discount is None:
        return None
    if not in_effect(discount, at, starts_period):
        if close and discount.periods_remaining == 0 and (discount.ends_at is None or at >= discount.ends_at):
            _close(discount, "ended", discount.ends_at or at)
        return None
    version = version or subscription.plan_version
    if not fits(discount.coupon, version.key, version.currency):
        return None
    amount = amount_off(discount.coupon, sum(line.amount for line in lines if line.type != "discount"))
    if amount <= 0:
        return None
    return Applied(discount, amount, line_description(discount.coupon, discount.promotion_code))


def record_use(applied: Applied, starts_period: bool, period_end: datetime) -> None:
    """The invoice with ``applied``'s line is issued: count it, and use up a period when the
    invoice opens one (the last one sets when the discount ends)."""
    discount = applied.discount
    discount.invoices_discounted = (discount.invoices_discounted or 0) + 1
    discount.amount_discounted = (discount.amount_discounted or 0) + applied.amount
    if starts_period and discount.periods_remaining is not None:
        discount.periods_remaining -= 1
        if discount.periods_remaining == 0:
            discount.ends_at = period_end


def _close(discount: Discount, status: str, at: datetime) -> None:
    discount.status, discount.ended_at, discount.active_subscription_id = status, at, None


# --- applying, replacing and removing --------------------------------------------------------


def _live(subscription: Subscription | None) -> Subscription:
    if subscription is None:
        raise ValidationFailed("This account has no subscription; choose a plan first.", field="code")
    if not subscription.is_live:
        raise Conflict(
            f"The subscription is {subscription.status.replace('_', ' ')}; a discount applies to a live one.",
            field="code",
        )
    return subscription


def _label(coupon: Coupon, promotion_code: PromotionCode | None) -> str:
    return f"The code {promotion_code.code}" if promotion_code is not None else f"The coupon {coupon.name}"


def check(coupon: Coupon, promotion_code: PromotionCode | None, subscription: Subscription, at: datetime) -> None:
    """Refuse, in the customer's words, a coupon or code that cannot be redeemed by
    ``subscription`` at ``at``: deactivated, expired, used up, not for its plan or currency."""
    what = _label(coupon, promotion_code)
    if promotion_code is not None:
        if not promotion_code.active:
            raise Conflict(f"{what} is no longer valid.", field="code")
        if promotion_code.expires_at is not None and promotion_code.expires_at <= at:
            raise Conflict(f"{what} expired on {format_local(promotion_code.expires_at, 'day')}.", field="code")
        if (
            promotion_code.max_redemptions is not None
            and promotion_code.times_redeemed >= promotion_code.max_redemptions
        ):
            raise Conflict(f"{what} has been used up.", field="code")
    if not coupon.active:
        raise Conflict(f"{what} is no longer valid.", field="code")
    if coupon.redeem_by is not None and coupon.redeem_by <= at:
        raise Conflict(f"{what} expired on {format_local(coupon.redeem_by, 'day')}.", field="code")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise Conflict(f"{what} has been used up.", field="code")
    version = subscription.plan_version
    if coupon.plan_keys and version.key not in coupon.plan_keys:
        names = ", ".join(
            db.session.execute(select(Plan.name).where(Plan.key.in_(coupon.plan_keys)).order_by(Plan.sort_order))
            .scalars()
            .all()
        )
        raise Conflict(f"{what} is not valid for the {version.name} plan; it is for {names}.", field="code")
    if coupon.currency is not None and coupon.currency != version.currency:
        raise Conflict(
            f"{what} takes an amount in {coupon.currency} off, but your plan is billed in {version.currency}.",
            field="code",
        )


@dataclass(frozen=True)
class Quote:
    """What a coupon would do to the next renewal invoice, shown before it is applied."""

    coupon: Coupon
    promotion_code: PromotionCode | None
    currency: str
    renews_at: datetime | None  # None: no renewal invoice is coming (the subscription ends)
    before: int
    discount: int
    replaces: Discount | None

    @property
    def after(self) -> int:
        return self.before - self.discount

    def money(self, cents: int) -> str:
        return format_money(cents, self.currency)


def quote(
    subscription: Subscription | None,
    coupon: Coupon,
    promotion_code: PromotionCode | None,
    renewal: tuple[datetime, int, str] | None,
    at: datetime | None = None,
) -> Quote:
    """Check ``coupon`` (or its ``promotion_code``) for ``subscription`` and say what the next
    renewal invoice, ``renewal`` = (date, plan fee, plan name) as the subscription estimates it,
    would cost with it. Nothing changes."""
    at = at or utcnow()
    subscription = _live(subscription)
    check(coupon, promotion_code, subscription, at)
    before = renewal[1] if renewal else 0
    return Quote(
        coupon=coupon,
        promotion_code=promotion_code,
        currency=subscription.plan_version.currency,
        renews_at=renewal[0] if renewal else None,
        before=before,
        discount=amount_off(coupon, before),
        replaces=active_discount(subscription),
    )


def _count_redemption(model, row_id: str, what: str) -> None:
    """One more redemption, unless the maximum is reached: the condition is evaluated by the
    database on the row as committed, so the last redemption goes to one request only."""
    table = model.__table__
    counted = db.session.execute(
        update(table)
        .where(
            table.c.id == row_id,
            (table.c.max_redemptions.is_(None)) | (table.c.times_redeemed < table.c.max_redemptions),
        )
        .values(times_redeemed=table.c.times_redeemed + 1)
    ).rowcount
    if counted != 1:
        raise Conflict(f"{what} has been used up.", field="code")


def apply(
    actor: Actor,
    subscription: Subscription | None,
    coupon: Coupon,
    promotion_code: PromotionCode | None = None,
    *,
    replace: bool = False,
    by_operator: bool = False,
    at: datetime | None = None,
) -> Discount:
    """Redeem ``coupon`` (through ``promotion_code``, when a customer typed one) for
    ``subscription``. An active discount is replaced only with ``replace``. A customer redeems
    each coupon once; the operator may apply it again."""
    at = at or utcnow()
    subscription = _live(subscription)
    # Serialise applications to one subscription: a double submit finds the first one applied.
    db.session.execute(select(Subscription.id).where(Subscription.id == subscription.id).with_for_update()).first()
    for row in (coupon, promotion_code):
        if row is not None:
            db.session.refresh(row)
    check(coupon, promotion_code, subscription, at)
    what = _label(coupon, promotion_code)
    current = active_discount(subscription)
    if current is not None and not in_effect(current, at, False):
        # Its last period is over and no invoice has closed it yet: it is over, not replaced.
        _close(current, "ended", current.ends_at or at)
        db.session.flush()
        current = None
    if current is not None and current.coupon_id == coupon.id:
        raise Conflict(f"{what} is already applied to this subscription.", field="code")
    if current is not None and not replace:
        raise Conflict(
            f"This subscription already has a discount ({current.coupon.name}, {off_text(current.coupon)}); "
            "confirm that the new one replaces it.",
            field="replace",
        )
    if not by_operator:
        used = db.session.execute(
            select(exists().where(Discount.tenant_id == subscription.tenant_id, Discount.coupon_id == coupon.id))
        ).scalar()
        if used:
            raise Conflict(f"{what} has already been used by this account.", field="code")
    _count_redemption(Coupon, coupon.id, what)
    if promotion_code is not None:
        _count_redemption(PromotionCode, promotion_code.id, what)
    db.session.expire(coupon, ["times_redeemed"])
    if promotion_code is not None:
        db.session.expire(promotion_code, ["times_redeemed"])
    if current is not None:
        _close(current, "replaced", at)
        db.session.flush()  # free the subscription's one active slot before the new row takes it
    discount = Discount(
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.id,
        active_subscription_id=subscription.id,
        coupon=coupon,
        coupon_id=coupon.id,
        promotion_code=promotion_code,
        promotion_code_id=promotion_code.id if promotion_code else None,
        status="active",
        periods_remaining=periods_for(coupon),
        invoices_discounted=0,
        amount_discounted=0,
        redeemed_by=actor.name[:254],
        redeemed_at=at,
    )
    db.session.add(discount)
    db.session.flush()
    audit.record(
        actor,
        "discount.applied",
        subscription.tenant,
        "discount",
        discount.id,
        coupon=coupon.name,
        code=promotion_code.code if promotion_code else None,
        terms=terms(coupon),
        replaced=current.coupon.name if current is not None else None,
    )
    return discount


def remove(actor: Actor, subscription: Subscription | None, at: datetime | None = None) -> Discount:
    """Take the active discount off: invoices from now on are not discounted."""
    current = active_discount(subscription)
    if current is None:
        raise NotFound("This subscription has no active discount.")
    _close(current, "removed", at or utcnow())
    audit.record(actor, "discount.removed", subscription.tenant, "discount", current.id, coupon=current.coupon.name)
    return current


def renewal_discount(
    subscription: Subscription | None,
    renewal: tuple[datetime, int, str] | None,
    version,
    *,
    active: Discount | None | bool = True,
) -> int:
    """What the active discount takes off the next renewal invoice's plan fee: ``renewal`` =
    (date, plan fee, plan name) and ``version`` (the plan version it bills) as the subscription
    estimates them; 0 when none applies. ``active``: the subscription's active discount when the
    caller has it already (None: it has none); True: look it up."""
    discount = active_discount(subscription) if active is True else active
    if renewal is None or discount is None or not in_effect(discount, renewal[0], True):
        return 0
    if not fits(discount.coupon, version.key, version.currency):
        return 0
    return amount_off(discount.coupon, renewal[1])


def ends_on(discount: Discount, subscription: Subscription) -> datetime | None:
    """When ``discount`` stops discounting: the end of its last period (None: for ever). With
    periods still to invoice, that is the end of the period the last of them opens."""
    if discount.periods_remaining is None:
        return None
    if discount.periods_remaining == 0:
        return discount.ends_at
    version = subscription.plan_version
    return period_bounds(
        subscription.billing_anchor, version.interval, subscription.period_index + discount.periods_remaining
    )[1]
