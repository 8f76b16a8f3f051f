"""Discounts over the API: the operator's coupons and promotion codes, and a tenant's discount
(the operator applies a coupon or a code; a tenant's own key applies a promotion code). The
rules are ``portal.billing.discounts``."""

from portal.api.registry import OPERATOR, operation
from portal.api.schemas import common
from portal.api.schemas import discounts as schemas
from portal.billing import discounts, subscriptions
from portal.errors import NotFound, PermissionDenied
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, Coupon, Discount, PromotionCode, Tenant

TAGS = ["discounts"]


def coupon_out(coupon: Coupon) -> schemas.CouponOut:
    return schemas.CouponOut(
        coupon_id=coupon.id,
        name=coupon.name,
        percent_off=coupon.percent_off.normalize() if coupon.percent_off is not None else None,
        amount_off=coupon.amount_off,
        currency=coupon.currency,
        duration=coupon.duration,
        duration_periods=coupon.duration_periods,
        plan_keys=list(coupon.plan_keys or []),
        redeem_by=coupon.redeem_by,
        max_redemptions=coupon.max_redemptions,
        times_redeemed=coupon.times_redeemed,
        active=coupon.active,
        terms=discounts.terms(coupon),
        created_at=coupon.created_at,
    )


def promotion_code_out(code: PromotionCode) -> schemas.PromotionCodeOut:
    return schemas.PromotionCodeOut(
        promotion_code_id=code.id,
        code=code.code,
        coupon_id=code.coupon_id,
        active=code.active,
        expires_at=code.expires_at,
        max_redemptions=code.max_redemptions,
        times_redeemed=code.times_redeemed,
        created_at=code.created_at,
    )


def discount_out(discount: Discount) -> schemas.DiscountOut:
    return schemas.DiscountOut(
        discount_id=discount.id,
        tenant_id=discount.tenant_id,
        subscription_id=discount.subscription_id,
        status=discount.status,
        coupon=coupon_out(discount.coupon),
        promotion_code=discount.promotion_code.code if discount.promotion_code else None,
        periods_remaining=discount.periods_remaining,
        ends_at=discounts.ends_on(discount, discount.subscription)
        if discount.status == "active"
        else discount.ended_at,
        invoices_discounted=discount.invoices_discounted,
        amount_discounted=discount.amount_discounted,
        currency=discount.currency,
        redeemed_at=discount.redeemed_at,
        ended_at=discount.ended_at,
    )


def _coupon(coupon_id: str) -> Coupon:
    try:
        return discounts.get_coupon(coupon_id)
    except NotFound:
        raise NotFound("Coupon not found") from None


@operation(
    "GET",
    "/coupons",
    auth=OPERATOR,
    response=schemas.CouponListOut,
    tags=TAGS,
    summary="Every coupon, newest first (paginated)",
    links={"list_promotion_codes": {"coupon_id": "$response.body#/coupons/0/coupon_id"}},
)
def list_coupons(principal, query: schemas.ListQuery):
    rows, pagination = common.page_of(discounts.coupons(), query)
    return schemas.CouponListOut(coupons=[coupon_out(coupon) for coupon in rows], pagination=pagination)


@operation(
    "POST",
    "/coupons",
    auth=OPERATOR,
    response=schemas.CouponOut,
    status=201,
    tags=TAGS,
    errors=[404],
    summary="Create a coupon: a percentage or an amount off, once, for N periods or for ever",
    description="Exactly one of `percent_off` or `amount_off` (minor units, with `currency`). "
    "`duration_periods` only for `repeating`. `redeem_by` in the future. A rule broken: 400 "
    "VALIDATION_ERROR naming the field; a plan key that names no plan: 404 RESOURCE_NOT_FOUND.",
    links={
        "create_promotion_code": {"coupon_id": "$response.body#/coupon_id"},
        "list_promotion_codes": {"coupon_id": "$response.body#/coupon_id"},
    },
)
def create_coupon(principal, body: schemas.CouponIn):
    coupon = discounts.create_coupon(
        principal.actor(),
        body.name,
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=body.currency,
        duration=body.duration,
        duration_periods=body.duration_periods,
        plan_keys=body.plan_keys,
        redeem_by=body.redeem_by,
        max_redemptions=body.max_redemptions,
    )
    commit()
    return coupon_out(coupon)


@operation(
    "GET",
    "/coupons/<coupon_id>/promotion-codes",
    auth=OPERATOR,
    response=schemas.PromotionCodeListOut,
    tags=TAGS,
    summary="The coupon's promotion codes, newest first (paginated)",
)
def list_promotion_codes(principal, coupon_id: str, query: schemas.ListQuery):
    coupon = _coupon(coupon_id)
    rows, pagination = common.page_of(discounts.codes_of(coupon), query)
    return schemas.PromotionCodeListOut(
        promotion_codes=[promotion_code_out(code) for code in rows], pagination=pagination
    )


@operation(
    "POST",
    "/coupons/<coupon_id>/promotion-codes",
    auth=OPERATOR,
    response=schemas.PromotionCodeOut,
    status=201,
    tags=TAGS,
    errors=[409],
    summary="Add a code customers type for the coupon",
    description="409 when the code exists already (whatever its case) or the coupon is deactivated.",
)
def create_promotion_code(principal, coupon_id: str, body: schemas.PromotionCodeIn):
    code = discounts.create_promotion_code(
        principal.actor(),
        _coupon(coupon_id),
        body.code,
        expires_at=body.expires_at,
        max_redemptions=body.max_redemptions,
    )
    commit()
    return promotion_code_out(code)


@operation(
    "POST",
    "/tenants/<tenant_id>/discount",
    scope=ADMIN_SCOPE,
    response=schemas.DiscountOut,
    status=201,
    tags=TAGS,
    allowed_when_suspended=True,
    errors=[409],
    summary="Apply a promotion code (or, for the operator, a coupon) to the tenant's subscription",
    description="Unknown code or coupon: 404 RESOURCE_NOT_FOUND. Expired, used up, deactivated, not for the "
    "tenant's plan or currency, already used by the tenant, or a discount already active without "
    "`replace: true`: 409 with the reason in words. A tenant key applies promotion codes only.",
)
def apply_discount(principal, tenant: Tenant, body: schemas.DiscountIn):
    subscription = subscriptions.subscription_of(tenant)
    if body.coupon_id is not None:
        if not principal.is_operator:
            raise PermissionDenied("Only the operator applies a coupon directly; send a promotion code.")
        code, coupon = None, _coupon(body.coupon_id)
    else:
        code = discounts.find_code(body.code)
        coupon = code.coupon
    if subscription is None:
        raise NotFound("Subscription not found")
    discount = discounts.apply(
        principal.actor(), subscription, coupon, code, replace=body.replace, by_operator=principal.is_operator
    )
    commit()
    return discount_out(discount)


@operation(
    "DELETE",
    "/tenants/<tenant_id>/discount",
    auth=OPERATOR,
    response=schemas.DiscountOut,
    tags=TAGS,
    allowed_when_suspended=True,
    summary="Remove the tenant's active discount: its next invoices are at full price",
    description="404 when the tenant has no active discount.",
)
def remove_discount(principal, tenant: Tenant):
    discount = discounts.remove(principal.actor(), subscriptions.subscription_of(tenant))
    commit()
    return discount_out(discount)
