"""Console: coupons and their promotion codes (list, create, deactivate), who redeemed them, and
applying or removing a tenant's discount from its page. The rules are ``portal.billing.discounts``."""

from flask import abort, flash, request
from wtforms.fields.choices import SelectChoice

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp, load_tenant
from portal.admin.forms import ApplyDiscountForm, CouponForm, PromotionCodeForm
from portal.admin.tenants import detail_page
from portal.billing import discounts
from portal.billing.plans import list_plans
from portal.billing.subscriptions import subscription_of
from portal.errors import NotFound, ServiceError, ValidationFailed
from portal.extensions import db
from portal.forms import apply_service_error
from portal.infra.pagination import paginate
from portal.infra.transactions import commit, rollback
from portal.web import act, form_errors_status, redirect_to, render, save_form

COUPONS_PER_PAGE = 20
REDEMPTIONS_PER_PAGE = 20
RECENT_REDEMPTIONS = 10


def _coupon_form(formdata=None) -> CouponForm:
    form = CouponForm() if formdata else CouponForm(formdata=None)
    form.plan_keys.choices = [SelectChoice(plan.key, plan.name) for plan in list_plans()]
    return form


def _coupons_page(form: CouponForm, status: int = 200):
    return render(
        "admin/coupons.html",
        status=status,
        form=form,
        coupons=paginate(discounts.coupons(), request.args.get("page", 1, type=int), COUPONS_PER_PAGE),
        recent=paginate(discounts.redemptions(), 1, RECENT_REDEMPTIONS),
        terms=discounts.terms,
    )


@bp.get("/coupons")
@operator_required
def coupons():
    """Every coupon with its terms and redemptions, the latest redemptions, and a form for a new one."""
    return _coupons_page(_coupon_form())


@bp.post("/coupons")
@operator_required
def create_coupon():
    """Create a coupon; a refused rule is shown beside its field, with what was typed."""
    form = _coupon_form(formdata=True)
    coupon = save_form(
        form,
        lambda: discounts.create_coupon(
            current_actor(),
            form.name.data,
            percent_off=form.percent_off.data,
            amount_off=form.amount_cents,
            currency=form.currency.data,
            duration=form.duration.data,
            duration_periods=form.duration_periods.data,
            plan_keys=form.plan_keys.data,
            redeem_by=form.redeem_by.data,
            max_redemptions=form.max_redemptions.data,
        ),
    )
    if coupon is None:
        return _coupons_page(form, form_errors_status())
    flash(
        f"Coupon {coupon.name} created: {discounts.terms(coupon)}. Add a promotion code for customers to type.",
        "success",
    )
    return redirect_to("admin.coupon", coupon_id=coupon.id)


def _or_404(load, item_id: str):
    """``load(item_id)``, or the 404 page where it finds nothing."""
    try:
        return load(item_id)
    except NotFound:
        abort(404)


def _coupon_or_404(coupon_id: str):
    return _or_404(discounts.get_coupon, coupon_id)


def _deactivate(service, item, done: str, coupon_id: str):
    """``service(actor, item)``, then back to the coupon's page saying ``done``."""

    def run() -> str:
        service(current_actor(), item)
        return done

    return act(run, "admin.coupon", coupon_id=coupon_id)


def _coupon_page(coupon, code_form: PromotionCodeForm | None = None, status: int = 200):
    return render(
        "admin/coupon.html",
        status=status,
        coupon=coupon,
        terms=discounts.terms(coupon),
        codes=db.session.execute(discounts.codes_of(coupon)).scalars().all(),
        redemptions=paginate(
            discounts.redemptions(coupon), request.args.get("page", 1, type=int), REDEMPTIONS_PER_PAGE
        ),
        code_form=code_form or PromotionCodeForm(formdata=None),
    )


@bp.get("/coupons/<coupon_id>")
@operator_required
def coupon(coupon_id: str):
    """One coupon: its terms, its promotion codes and every redemption."""
    return _coupon_page(_coupon_or_404(coupon_id))


@bp.post("/coupons/<coupon_id>/deactivate")
@operator_required
def deactivate_coupon(coupon_id: str):
    """No new redemptions; discounts already applied run their course."""
    coupon = _coupon_or_404(coupon_id)
    done = f"Coupon {coupon.name} deactivated: it and its codes can no longer be redeemed."
    return _deactivate(discounts.deactivate_coupon, coupon, done, coupon.id)


@bp.post("/coupons/<coupon_id>/codes")
@operator_required
def create_promotion_code(coupon_id: str):
    """Add a code customers type for this coupon."""
    coupon = _coupon_or_404(coupon_id)
    form = PromotionCodeForm()
    code = save_form(
        form,
        lambda: discounts.create_promotion_code(
            current_actor(),
            coupon,
            form.code.data,
            expires_at=form.expires_at.data,
            max_redemptions=form.max_redemptions.data,
        ),
    )
    if code is None:
        return _coupon_page(coupon, form, form_errors_status())
    flash(f"Promotion code {code.code} created.", "success")
    return redirect_to("admin.coupon", coupon_id=coupon.id)


@bp.post("/promotion-codes/<promotion_code_id>/deactivate")
@operator_required
def deactivate_promotion_code(promotion_code_id: str):
    """Customers can no longer type this code; discounts it gave stay."""
    code = _or_404(discounts.get_promotion_code, promotion_code_id)
    done = f"Promotion code {code.code} deactivated."
    return _deactivate(discounts.deactivate_promotion_code, code, done, code.coupon_id)


# --- a tenant's discount (on the tenant's page) -----------------------------------------------


@bp.post("/tenants/<tenant_id>/discount")
@operator_required
def apply_discount(tenant_id: str):
    """Apply a coupon or a promotion code to the tenant's subscription; replacing its current
    discount needs the box ticked."""
    tenant = load_tenant(tenant_id)
    form = ApplyDiscountForm()
    if not form.validate_on_submit():
        return detail_page(tenant, status=form_errors_status(), discount_form=form)
    try:
        typed = (form.code.data or "").strip()
        if typed:
            code = discounts.find_code(typed)
            coupon = code.coupon
        elif form.coupon_id.data:
            code, coupon = None, discounts.get_coupon(form.coupon_id.data)
        else:
            raise ValidationFailed("Choose a coupon or type a promotion code.", field="coupon_id")
        discount = discounts.apply(
            current_actor(), subscription_of(tenant), coupon, code, replace=form.replace.data, by_operator=True
        )
        commit()
    except ServiceError as error:
        rollback()
        apply_service_error(form, error)
        if error.field == "replace":
            form.replace.errors = [error.message]
        return detail_page(tenant, status=form_errors_status(), discount_form=form)
    flash(f"{discount.coupon.name} ({discounts.terms(discount.coupon)}) applied to {tenant.company_name}.", "success")
    return redirect_to("admin.tenant_detail", tenant_id=tenant.tenant_id, _anchor="discount")


@bp.post("/tenants/<tenant_id>/discount/remove")
@operator_required
def remove_discount(tenant_id: str):
    """Take the tenant's discount off: its next invoices are at full price."""
    tenant = load_tenant(tenant_id)

    def remove() -> str:
        discount = discounts.remove(current_actor(), subscription_of(tenant))
        return f"{discount.coupon.name} removed from {tenant.company_name}; its next invoices are at full price."

    return act(remove, "admin.tenant_detail", tenant_id=tenant.tenant_id)
