"""Discounts over the API: the operator's coupons and promotion codes, and a tenant's discount
(the operator applies a coupon or a code; a tenant's own key applies a promotion code). The
rules are ``portal.billing.discounts``."""

from functools import partial

from portal.api.registry import OPERATOR, operation
from portal.api.schemas import common
from portal.api.schemas import discounts as schemas
from portal.billing import discounts, subscriptions
from portal.errors import NotFound, PermissionDenied
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, Coupon, Discount, PromotionCode, Tenant

TAGS = ["discounts"]
operator_discounts = partial(operation, auth=OPERATOR, tags=TAGS)


def coupon_out(coupon: Coupon) -> schemas.CouponOut:
    return common.out(
        schemas.CouponOut,
        coupon,
        coupon_id=coupon.id,
        percent_off=coupon.percent_off.normalize() if coupon.percent_off is not None else None,
        plan_keys=list(coupon.plan_keys or []),
        terms=discounts.terms(coupon),
    )


def promotion_code_out(code: PromotionCode) -> schemas.PromotionCodeOut:
    return common.out(schemas.PromotionCodeOut, code, promotion_code_id=code.id)


def discount_out(discount: Discount) -> schemas.DiscountOut:
    return common.out(
        schemas.DiscountOut,
        discount,
        discount_id=discount.id,
        coupon=coupon_out(discount.coupon),
        promotion_code=discount.promotion_code.code if discount.promotion_code else None,
        ends_at=discounts.ends_on(discount, discount.subscription)
        if discount.status == "active"
        else discount.ended_at,
    )


def _coupon(coupon_id: str) -> Coupon:
    try:
        return discounts.get_coupon(coupon_id)
    except NotFound:
        raise NotFound("Coupon not found") from None


@operator_discounts(
    "GET", "/coupons", links={"list_promotion_codes": {"coupon_id": "$response.body#/coupons/0/coupon_id"}}
)
def list_coupons(principal, query: schemas.ListQuery) -> schemas.CouponListOut:
    """Every coupon, newest first (paginated)"""
    return common.page_out(schemas.CouponListOut, discounts.coupons(), query, coupon_out)


@operator_discounts(
    "POST",
    "/coupons",
    status=201,
    errors=[404],
    links={
        "create_promotion_code": {"coupon_id": "$response.body#/coupon_id"},
        "list_promotion_codes": {"coupon_id": "$response.body#/coupon_id"},
    },
)
def create_coupon(principal, body: schemas.CouponIn) -> schemas.CouponOut:
    """Create a coupon: a percentage or an amount off, once, for N periods or for ever

    Exactly one of `percent_off` or `amount_off` (minor units, with `currency`). `duration_periods`
    only for `repeating`. `redeem_by` in the future. A rule broken: 400 VALIDATION_ERROR naming the
    field; a plan key that names no plan: 404 RESOURCE_NOT_FOUND.
    """
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


@operator_discounts("GET", "/coupons/<coupon_id>/promotion-codes")
def list_promotion_codes(principal, coupon_id: str, query: schemas.ListQuery) -> schemas.PromotionCodeListOut:
    """The coupon's promotion codes, newest first (paginated)"""
    coupon = _coupon(coupon_id)
    return common.page_out(schemas.PromotionCodeListOut, discounts.codes_of(coupon), query, promotion_code_out)


@operator_discounts("POST", "/coupons/<coupon_id>/promotion-codes", status=201, errors=[409])
def create_promotion_code(principal, coupon_id: str, body: schemas.PromotionCodeIn) -> schemas.PromotionCodeOut:
    """Add a code customers type for the coupon

    409 when the code exists already (whatever its case) or the coupon is deactivated.
    """
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
    status=201,
    tags=TAGS,
    allowed_when_suspended=True,
    errors=[409],
)
def apply_discount(principal, tenant: Tenant, body: schemas.DiscountIn) -> schemas.DiscountOut:
    """Apply a promotion code (or, for the operator, a coupon) to the tenant's subscription

    Unknown code or coupon: 404 RESOURCE_NOT_FOUND. Expired, used up, deactivated, not for the
    tenant's plan or currency, already used by the tenant, or a discount already active without
    `replace: true`: 409 with the reason in words. A tenant key applies promotion codes only.
    """
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


@operator_discounts("DELETE", "/tenants/<tenant_id>/discount", allowed_when_suspended=True)
def remove_discount(principal, tenant: Tenant) -> schemas.DiscountOut:
    """Remove the tenant's active discount: its next invoices are at full price

    404 when the tenant has no active discount.
    """
    discount = discounts.remove(principal.actor(), subscriptions.subscription_of(tenant))
    commit()
    return discount_out(discount)
