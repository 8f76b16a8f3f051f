"""Console: operator API tokens (issue, shown once; revoke)."""

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.admin.forms import OperatorTokenForm
from portal.api_keys import services as api_key_services
from portal.extensions import db
from portal.models import OperatorToken
from portal.web import act, form_errors_status, page_view, render, save_form


@page_view(bp, "/tokens", "tokens", operator_required)
def _tokens_page(form: OperatorTokenForm | None = None, created=None, status: int = 200, fragment=None):
    """Operator API tokens for the company's own programs."""
    return render(
        "admin/tokens.html",
        fragment,
        status=status,
        tokens=api_key_services.list_operator_tokens(),
        form=form or OperatorTokenForm(formdata=None),
        created=created,
    )


@bp.post("/tokens")
@operator_required
def create_token():
    """Issue an operator token and show it once, in this response only."""
    form = OperatorTokenForm()
    created = save_form(form, lambda: api_key_services.create_operator_token(current_actor(), form.name.data))
    if created is not None:
        token, plaintext = created
        return _tokens_page(created={"token": token, "plaintext": plaintext}, fragment="admin/_token_created.html")
    return _tokens_page(form=form, status=form_errors_status(), fragment="admin/_token_form.html")


@bp.post("/tokens/<token_id>/revoke")
@operator_required
def revoke_token(token_id: str):
    """Revoke an operator token; programs using it get 401 from then on."""
    token = db.get_or_404(OperatorToken, token_id)

    def revoke():
        api_key_services.revoke_operator_token(current_actor(), token)
        return f"The token “{token.name}” ({token.prefix}…) was revoked."

    return act(revoke, "admin.tokens")
