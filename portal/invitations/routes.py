from flask import Blueprint, flash, redirect, request, session, url_for
from flask_login import current_user, login_user

from portal.access import TENANT_SESSION_KEY
from portal.auth.services import find_user_by_email, start_session
from portal.errors import ServiceError
from portal.invitations import services
from portal.invitations.forms import AcceptAsMemberForm, AcceptAsNewUserForm
from portal.models import Invitation
from portal.web import form_errors_status, render, save_form

bp = Blueprint("invitations", __name__)


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept(token: str):
    """Accept an emailed invitation: set a password, or confirm as the signed-in invitee."""
    try:
        invitation = services.usable_or_error(services.find_by_token(token))
    except ServiceError as error:
        status = 410 if "expired" in error.message else error.status_code
        return render("invitations/unusable.html", status=status, message=error.message)

    signed_in = current_user if current_user.is_authenticated else None
    existing_account = find_user_by_email(invitation.email) is not None
    form = AcceptAsMemberForm() if (signed_in or existing_account) else AcceptAsNewUserForm()

    if signed_in is not None and signed_in.email != invitation.email:
        return render("invitations/accept.html", status=403, invitation=invitation, form=form, mode="wrong_user")

    if signed_in is None and existing_account:
        # The invitee has an account: sign in, then come back here to join.
        return render(
            "invitations/accept.html",
            invitation=invitation,
            form=form,
            mode="sign_in",
            sign_in_url=url_for("auth.sign_in", next=request.path),
        )

    def join() -> Invitation:
        if signed_in is not None:
            accepted, _ = services.accept(token, user=signed_in, ip=request.remote_addr)
        else:
            accepted, user = services.accept(
                token, name=form.name.data or "", password=form.password.data, ip=request.remote_addr
            )
            session.clear()
            start_session(user, request.remote_addr, request.headers.get("User-Agent"))
            login_user(user)
        session[TENANT_SESSION_KEY] = accepted.tenant_id
        return accepted

    if (joined := save_form(form, join)) is not None:
        flash(f"Welcome to {joined.tenant.company_name}.", "success")
        return redirect(url_for("main.overview"), code=303)
    status = form_errors_status() if form.errors or form.form_errors else 200
    return render(
        "invitations/accept.html",
        status=status,
        invitation=invitation,
        form=form,
        mode="join" if signed_in else "new_user",
    )
