"""Discounts (issue 19): the operator's coupons, the promotion codes customers type, and the one
discount a subscription carries at a time.

A coupon takes a percentage (``percent_off``) or an amount in one currency (``amount_off`` minor
units of ``currency``) off an invoice, for one billing period (``once``), ``duration_periods``
periods (``repeating``) or for ever (``forever``). A discount is a coupon redeemed by a
subscription; its ``periods_remaining`` counts the period invoices still to discount.
"""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

COUPON_DURATIONS = ("once", "repeating", "forever")
# active: discounts invoices; ended: its periods are used up; removed: the operator took it off;
# replaced: another discount took its place.
DISCOUNT_STATUSES = ("active", "ended", "removed", "replaced")


class Coupon(db.Model):
    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint("(percent_off IS NULL) <> (amount_off IS NULL)", name="percent_or_amount"),
        CheckConstraint("times_redeemed >= 0", name="times_redeemed_not_negative"),
    )

    id: Mapped[str] = id_column("cpn")
    name: Mapped[str] = mapped_column(String(100))
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    amount_off: Mapped[int | None] = mapped_column(Integer)
    # The currency of amount_off; none for a percentage, which fits any currency.
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[str] = mapped_column(String(10))
    duration_periods: Mapped[int | None] = mapped_column(Integer)
    # Plan keys it is good for; empty: every plan.
    plan_keys: Mapped[list] = mapped_column(JSON, default=list)
    redeem_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Coupon {self.id} {self.name}>"


class PromotionCode(db.Model):
    """A code customers type (stored upper-case: codes are matched whatever the case)."""

    __tablename__ = "promotion_codes"
    __table_args__ = (CheckConstraint("times_redeemed >= 0", name="times_redeemed_not_negative"),)

    id: Mapped[str] = id_column("promo")
    code: Mapped[str] = mapped_column(String(40), unique=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    coupon: Mapped[Coupon] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<PromotionCode {self.code}>"


class Discount(db.Model):
    """A coupon redeemed by a subscription (a redemption). ``active_subscription_id`` is the
    subscription while the discount is active and NULL afterwards: its unique constraint lets a
    subscription carry one active discount, whatever races."""

    __tablename__ = "discounts"

    id: Mapped[str] = id_column("disc")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    active_subscription_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    coupon_id: Mapped[str] = mapped_column(ForeignKey("coupons.id"), index=True)
    promotion_code_id: Mapped[str | None] = mapped_column(ForeignKey("promotion_codes.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    # Period invoices still to discount; None: for ever.
    periods_remaining: Mapped[int | None] = mapped_column(Integer)
    # Set when the last period is invoiced: prorations up to the end of that period are discounted.
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    invoices_discounted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    amount_discounted: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    redeemed_by: Mapped[str] = mapped_column(String(254), default="")
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    coupon: Mapped[Coupon] = relationship(lazy="joined")
    promotion_code: Mapped[PromotionCode | None] = relationship(lazy="joined")
    subscription: Mapped["Subscription"] = relationship()  # noqa: F821

    @property
    def currency(self) -> str:
        """What it takes off is in the subscription's currency (a plan change keeps it)."""
        return self.subscription.plan_version.currency

    def __repr__(self) -> str:
        return f"<Discount {self.id} {self.tenant_id} {self.status}>"
