"""Console: grant or deduct a tenant's credit, after a confirmation step, from the tenant's page
(its credit panel and ledger are drawn by ``tenants.detail_page``)."""

from flask import flash

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp, load_tenant
from portal.admin.forms import CreditForm, CreditGrantForm
from portal.admin.tenants import detail_page
from portal.billing import credits as billing_credits
from portal.billing.money import format_money
from portal.errors import ServiceError
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.models import Tenant
from portal.web import form_errors_status, redirect_to, render


def _credit_change(tenant: Tenant, form: CreditForm, kind: str):
    """Validate, ask for confirmation, then grant or deduct; a refusal re-shows the form."""
    forms = {"grant_form": form} if kind == "grant" else {"deduct_form": form}
    if not form.validate_on_submit():
        return detail_page(tenant, status=form_errors_status(), **forms)
    if form.confirmed.data != "yes":
        return render(
            "admin/credit_confirm.html",
            tenant=tenant,
            form=form,
            kind=kind,
            amount=format_money(form.cents, form.currency.data.upper()),
        )
    actor = current_actor()
    try:
        if kind == "grant":
            billing_credits.grant(
                actor,
                tenant,
                form.cents,
                currency=form.currency.data,
                expires_at=form.expires_at.data,
                reason=form.reason.data,
            )
        else:
            billing_credits.deduct(actor, tenant, form.cents, currency=form.currency.data, reason=form.reason.data)
        commit()
    except ServiceError as error:
        rollback()
        apply_service_error(form, error)
        form.confirmed.data = ""
        return detail_page(tenant, status=form_errors_status(), **forms)
    verb = "granted to" if kind == "grant" else "deducted from"
    flash(f"{format_money(form.cents, form.currency.data.upper())} of credit {verb} {tenant.company_name}.", "success")
    return redirect_to("admin.tenant_detail", tenant_id=tenant.tenant_id)


@bp.post("/tenants/<tenant_id>/credits/grant")
@operator_required
def grant_credit(tenant_id: str):
    """Give the tenant credit (after a confirmation step); billing runs apply it to invoices."""
    return _credit_change(load_tenant(tenant_id), CreditGrantForm(prefix="grant"), "grant")


@bp.post("/tenants/<tenant_id>/credits/deduct")
@operator_required
def deduct_credit(tenant_id: str):
    """Take credit away (after a confirmation step); never more than the balance."""
    return _credit_change(load_tenant(tenant_id), CreditForm(prefix="deduct"), "deduct")
