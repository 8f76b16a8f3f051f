"""Bodies of the discount routes (``portal/api/discounts.py``): coupons, promotion codes and a
tenant's discount. The rules are ``portal.billing.discounts``; what JSON Schema can say of them
is said here too (one of percent or amount, a currency with an amount, periods only when
repeating)."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, ExactNumber, IsoInstant, Out, PageQuery, Pagination
from portal.models import COUPON_DURATIONS, DISCOUNT_STATUSES


def _percent(value: Any) -> Any:
    # A JSON number; kept exact (20.5 is 20.5, not a binary fraction).
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("give percent_off as a number, e.g. 20")
    return Decimal(str(value))


PercentOff = Annotated[
    Decimal,
    BeforeValidator(_percent),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 100, "multipleOf": 0.01}),
]
CouponName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,39}$")]
TypedCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
PlanKeyItem = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Duration = Literal[tuple(COUPON_DURATIONS)]  # type: ignore[valid-type]


class CouponIn(Body):
    """A coupon: ``percent_off`` or ``amount_off`` (minor units, with its ``currency``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {"oneOf": [{"required": ["percent_off"]}, {"required": ["amount_off"]}]},
                # An amount comes with its currency, and only an amount has one.
                {"dependentRequired": {"amount_off": ["currency"], "currency": ["amount_off"]}},
                # A repeating coupon says for how many periods; the others have none.
                {
                    "if": {"properties": {"duration": {"const": "repeating"}}, "required": ["duration"]},
                    "then": {"required": ["duration_periods"]},
                    "else": {"not": {"required": ["duration_periods"]}},
                },
            ]
        }
    )

    name: CouponName
    percent_off: PercentOff = Field(None, description="Percentage off, more than 0 and at most 100, two decimals.")
    amount_off: int = Field(None, ge=1, le=100_000_000_000, description="Minor units (cents) off; needs currency.")
    currency: CurrencyCode = Field(None, description="The currency of amount_off.")
    duration: Duration = Field("once", description="once: one billing period; repeating: duration_periods; forever.")
    duration_periods: int = Field(None, ge=1, le=120, description="Billing periods of a repeating coupon.")
    plan_keys: list[PlanKeyItem] = Field(
        default_factory=list, max_length=20, description="Plan keys it is good for (GET /plans); empty: every plan."
    )
    redeem_by: IsoInstant | None = Field(None, description="Last instant it can be redeemed; in the future.")
    max_redemptions: int | None = Field(None, ge=1, le=1_000_000, description="Redemptions over every tenant.")


class CouponOut(Out):
    coupon_id: str
    name: str
    percent_off: ExactNumber | None
    amount_off: int | None
    currency: str | None
    duration: Duration
    duration_periods: int | None
    plan_keys: list[str]
    redeem_by: datetime | None
    max_redemptions: int | None
    times_redeemed: int
    active: bool
    terms: str = Field(description="The terms in words, e.g. “20% off for 3 billing periods”.")
    created_at: datetime


class CouponListOut(Out):
    coupons: list[CouponOut]
    pagination: Pagination


class PromotionCodeIn(Body):
    code: Code = Field(description="3 to 40 letters, digits, - or _; stored upper-case, matched in any case.")
    expires_at: IsoInstant | None = Field(None, description="In the future; omitted: the coupon's expiry only.")
    max_redemptions: int | None = Field(None, ge=1, le=1_000_000)


class PromotionCodeOut(Out):
    promotion_code_id: str
    code: str
    coupon_id: str
    active: bool
    expires_at: datetime | None
    max_redemptions: int | None
    times_redeemed: int
    created_at: datetime


class PromotionCodeListOut(Out):
    promotion_codes: list[PromotionCodeOut]
    pagination: Pagination


class DiscountIn(Body):
    """A promotion code (a tenant key or the operator) or a coupon id (the operator only)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["code"]}, {"required": ["coupon_id"]}]})

    code: TypedCode = Field(None, description="A promotion code, as customers type it.")
    coupon_id: TypedCode = Field(None, description="A coupon (operator tokens only).")
    replace: bool = Field(False, description="Replace the subscription's active discount; without it, 409.")


class DiscountOut(Out):
    discount_id: str
    tenant_id: str
    subscription_id: str
    status: Literal[tuple(DISCOUNT_STATUSES)]  # type: ignore[valid-type]
    coupon: CouponOut
    promotion_code: str | None
    periods_remaining: int | None = Field(description="Period invoices still to discount; null: for ever.")
    ends_at: datetime | None = Field(description="When it stops discounting; null: never (or not yet known).")
    invoices_discounted: int
    amount_discounted: int = Field(description="Minor units taken off so far, in the subscription's currency.")
    currency: str
    redeemed_at: datetime
    ended_at: datetime | None


class ListQuery(PageQuery):
    pass
