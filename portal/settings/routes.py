from flask import Blueprint, flash, g
from flask_login import logout_user

from portal.access import current_actor, tenant_required
from portal.errors import ServiceError
from portal.infra.transactions import commit, rollback
from portal.settings.forms import BLANK_METADATA_ROWS, DeleteTenantForm, ProfileForm, TwoFactorPolicyForm
from portal.tenants import services as tenants
from portal.web import form_errors_status, page_view, redirect_to, render, submit

bp = Blueprint("settings", __name__, url_prefix="/settings")


def _profile_form_for(tenant) -> ProfileForm:
    form = ProfileForm(formdata=None, company_name=tenant.company_name, contact_email=tenant.contact_email)
    for key, value in sorted((tenant.metadata_json or {}).items()):
        form.metadata.append_entry({"key": key, "value": value})
    return form


def _with_blank_rows(form: ProfileForm) -> ProfileForm:
    for _ in range(BLANK_METADATA_ROWS):
        form.metadata.append_entry()
    return form


@page_view(bp, "", "index", tenant_required())
def _page(profile_form=None, delete_form=None, status=200, fragment=None, two_factor_form=None):
    """Company profile and metadata; the danger zone for the owner."""
    return render(
        "settings/index.html",
        fragment,
        status=status,
        form=profile_form or _with_blank_rows(_profile_form_for(g.tenant)),
        delete_form=delete_form or DeleteTenantForm(formdata=None),
        two_factor_form=two_factor_form
        or TwoFactorPolicyForm(formdata=None, require_two_factor=g.tenant.require_two_factor),
    )


@bp.post("")
@tenant_required("settings.edit")
def update():
    """Save the company profile and metadata."""
    form = ProfileForm()

    def save() -> str:
        tenants.update_profile(
            current_actor(), g.tenant, form.company_name.data, form.contact_email.data, form.metadata_dict()
        )
        return "Settings saved."

    return submit(form, save, "settings.index") or _page(
        profile_form=form, status=form_errors_status(), fragment="settings/_profile_form.html"
    )


@bp.post("/two-factor")
@tenant_required("two_factor.require")
def two_factor_policy():
    """The owner requires (or stops requiring) two-factor authentication of every member."""
    form = TwoFactorPolicyForm()

    def save() -> str:
        tenants.set_two_factor_required(current_actor(), g.tenant, form.require_two_factor.data)
        if g.tenant.require_two_factor:
            return "Every member now needs two-factor authentication to use this account."
        return "Two-factor authentication is no longer required of members."

    return submit(form, save, "settings.index") or _page(
        status=form_errors_status(), two_factor_form=form, fragment="settings/_two_factor_form.html"
    )


@bp.post("/delete")
@tenant_required("tenant.delete")
def delete():
    """Delete (cancel) the account after the owner types its id."""
    form = DeleteTenantForm()
    # CSRFProtect has already vouched for the form, so a failed validation is an empty
    # or oversized confirmation: the same "type it exactly" answer as a wrong one.
    if not form.validate_on_submit() or form.confirm_tenant_id.data != g.tenant.tenant_id:
        form.confirm_tenant_id.errors = [f"Type {g.tenant.tenant_id} exactly to confirm."]
        return _page(delete_form=form, status=form_errors_status(), fragment="settings/_delete_form.html")
    company = g.tenant.company_name
    try:
        tenants.cancel(current_actor(), g.tenant)
        commit()
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("settings.index")
    flash(f"{company} was deleted. Its members no longer have access.", "success")
    if g.memberships and len(g.memberships) > 1:
        return redirect_to("main.overview")
    logout_user()
    return redirect_to("auth.sign_in")
