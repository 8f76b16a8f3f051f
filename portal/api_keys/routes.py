"""The API keys page: create (the key is shown once, in the response to the POST), list, revoke."""

from flask import Blueprint, abort, flash, g

from portal.access import current_actor, tenant_required
from portal.api_keys import services
from portal.api_keys.forms import CreateKeyForm, RevokeKeyForm
from portal.models import ApiKey
from portal.tenants.scoped import get_for_tenant
from portal.web import act, form_errors_status, page_view, redirect_to, render, save_form

bp = Blueprint("api_keys", __name__, url_prefix="/api-keys")


@page_view(bp, "", "index", tenant_required())
def _keys_page(create_form=None, created=None, status=200, fragment=None):
    """The tenant's keys; members who manage keys also get the create form."""
    return render(
        "api_keys/index.html",
        fragment,
        status=status,
        keys=services.list_keys(g.tenant),
        create_form=create_form or CreateKeyForm(formdata=None),
        revoke_form=RevokeKeyForm(formdata=None),
        created=created,
    )


@bp.post("")
@tenant_required("keys.manage")
def create():
    """Issue a key and show it once: it lives only in this response, never in the session."""
    form = CreateKeyForm()
    created = save_form(
        form, lambda: services.create_key(current_actor(), g.tenant, form.key_name.data, form.scopes.data, form.expiry)
    )
    if created is not None:
        # No redirect: after one, the key could only be shown again by storing it somewhere.
        key, plaintext = created
        return _keys_page(created={"key": key, "plaintext": plaintext}, fragment="api_keys/_created.html")
    return _keys_page(create_form=form, status=form_errors_status(), fragment="api_keys/_create.html")


@bp.post("/<key_id>/revoke")
@tenant_required("keys.manage")
def revoke(key_id: str):
    """Revoke a key with a reason; programs using it get 401 from then on."""
    key = get_for_tenant(ApiKey, key_id, g.tenant, "API key")
    form = RevokeKeyForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, "Your form expired. Reload the page and try again.")
        flash(" ".join(form.reason.errors), "error")
        return redirect_to("api_keys.index")

    def revoke_it():
        services.revoke_key(current_actor(), g.tenant, key, form.reason.data)
        return f"The key “{key.name}” ({key.prefix}…) was revoked."

    return act(revoke_it, "api_keys.index")
