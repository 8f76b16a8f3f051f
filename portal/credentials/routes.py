"""The Credentials page: add a cloud credential per provider, list, filter, rename, re-validate, delete.

The secret goes in once, through an add form, and is never shown again: after a failed
add, the page comes back with the secret fields empty.
"""

from flask import Blueprint, abort, flash, g, request

from portal.access import current_actor, tenant_required
from portal.credentials import services
from portal.credentials.forms import (
    ADD_FORMS,
    RenameCredentialForm,
    apply_credential_errors,
    forget_secrets,
)
from portal.credentials.validation import CredentialInvalid
from portal.errors import ServiceError
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.models import PROVIDERS
from portal.web import act, form_errors_status, page_view, redirect_to, render

bp = Blueprint("credentials", __name__, url_prefix="/credentials")

PROVIDER_LABELS = {"gcp": "Google Cloud", "aws": "AWS", "azure": "Azure"}
# What the list calls each kind of secret (the stored codes are seed 000's API vocabulary).
TYPE_LABELS = {
    "service_account": "Google Cloud service account",
    "access_key": "AWS access key",
    "service_principal": "Azure service principal",
}


def _provider_filter() -> str | None:
    provider = request.args.get("provider", "")
    return provider if provider in PROVIDERS else None


@page_view(bp, "", "index", tenant_required())
def _page(add_forms=None, open_provider=None, status=200):
    """The tenant's credentials (optionally one provider's); managers also get the add forms."""
    forms = {provider: form_class(formdata=None) for provider, form_class in ADD_FORMS.items()}
    forms.update(add_forms or {})
    provider = _provider_filter()
    return render(
        "credentials/index.html",
        status=status,
        credentials=services.list_credentials(g.tenant, provider),
        provider_filter=provider,
        providers=PROVIDERS,
        provider_labels=PROVIDER_LABELS,
        type_labels=TYPE_LABELS,
        add_forms=forms,
        open_provider=open_provider,
    )


@bp.post("/add/<provider>")
@tenant_required("credentials.manage")
def add(provider: str):
    """Validate, encrypt and store a credential; on failure each field shows its own message."""
    if provider not in ADD_FORMS:
        abort(404)
    form = ADD_FORMS[provider]()
    if form.validate_on_submit():
        payload, aliases = form.payload()
        try:
            credential = services.add_credential(
                current_actor(), g.tenant, provider, None, form.credential_name.data or "", payload
            )
            commit()
        except CredentialInvalid as error:
            rollback()
            apply_credential_errors(form, error.errors, aliases)
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            flash(f"The credential “{credential.name}” was added and validated.", "success")
            twins = services.same_secret_as(g.tenant, credential)
            if twins:
                names = ", ".join(f"“{twin.name}”" for twin in twins)
                flash(
                    f"The same key is already stored as {names}. Delete the copy you do not need, "
                    "so that rotating the key later means changing it in one place.",
                    "warning",
                )
            return redirect_to("credentials.index")
    elif "csrf_token" in form.errors:
        abort(400, "Your form expired. Reload the page and try again.")
    forget_secrets(form)
    return _page(add_forms={provider: form}, open_provider=provider, status=form_errors_status())


@bp.post("/<credential_id>/rename")
@tenant_required("credentials.manage")
def rename(credential_id: str):
    credential = services.get_credential(g.tenant, credential_id)
    form = RenameCredentialForm()
    old = credential.name

    def rename_it():
        services.rename_credential(current_actor(), g.tenant, credential, form.credential_name.data or "")
        return f"“{old}” is now called “{credential.name}”."

    return act(rename_it, "credentials.index")


@bp.post("/<credential_id>/validate")
@tenant_required("credentials.manage")
def revalidate(credential_id: str):
    credential = services.get_credential(g.tenant, credential_id)
    try:
        errors = services.revalidate_credential(current_actor(), g.tenant, credential)
        commit()
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
    else:
        if errors:
            flash(
                f"“{credential.name}” failed validation and was marked inactive: "
                + " ".join(error["message"] for error in errors),
                "error",
            )
        else:
            flash(f"“{credential.name}” is valid.", "success")
    return redirect_to("credentials.index")


@bp.post("/<credential_id>/delete")
@tenant_required("credentials.manage")
def delete(credential_id: str):
    credential = services.get_credential(g.tenant, credential_id)

    def delete_it():
        services.delete_credential(current_actor(), g.tenant, credential)
        return f"The credential “{credential.name}” was deleted."

    return act(delete_it, "credentials.index")
