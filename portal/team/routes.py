from flask import Blueprint, flash, g

from portal.access import current_actor, tenant_required
from portal.errors import ServiceError
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.invitations import services as invitations
from portal.models import Invitation, Membership
from portal.team import services
from portal.team.forms import ConfirmForm, InviteForm, RoleForm, TransferOwnershipForm
from portal.tenants.scoped import get_for_tenant
from portal.web import act, form_errors_status, page_view, redirect_to, render, submit

bp = Blueprint("team", __name__, url_prefix="/team")


def _transfer_form() -> TransferOwnershipForm:
    form = TransferOwnershipForm()
    form.new_owner.choices = [
        (m.id, f"{m.user.display_name} ({m.role})") for m in services.members(g.tenant) if not m.is_owner
    ]
    return form


@page_view(bp, "", "index", tenant_required())
def _team_page(invite_form=None, transfer_form=None, status=200, fragment=None):
    """Members and pending invitations."""
    return render(
        "team/index.html",
        fragment,
        status=status,
        members=services.members(g.tenant),
        invitations=invitations.pending_invitations(g.tenant),
        invite_form=invite_form or InviteForm(formdata=None),
        transfer_form=transfer_form or _transfer_form(),
        role_form=RoleForm(formdata=None),
        confirm_form=ConfirmForm(formdata=None),
    )


@bp.post("/invitations")
@tenant_required("team.manage")
def invite():
    """Invite someone by email with a role."""
    form = InviteForm()

    def send() -> str:
        invitation, _ = invitations.create_invitation(
            current_actor(), g.tenant, form.email.data, form.role.data, form.expires_in_days.data
        )
        return f"Invitation sent to {invitation.email}."

    return submit(form, send, "team.index") or _team_page(
        invite_form=form, status=form_errors_status(), fragment="team/_invite_form.html"
    )


def _invitation_action(invitation_id: str, service, done: str):
    """Run ``service`` on one of the tenant's invitations; ``done`` names its ``{email}``."""
    invitation = get_for_tenant(Invitation, invitation_id, g.tenant, "Invitation")

    def run() -> str:
        service(current_actor(), invitation)
        return done.format(email=invitation.email)

    return act(run, "team.index")


@bp.post("/invitations/<invitation_id>/resend")
@tenant_required("team.manage")
def resend_invitation(invitation_id: str):
    """Send a fresh link; the old one stops working."""
    return _invitation_action(invitation_id, invitations.resend, "A new invitation link was sent to {email}.")


@bp.post("/invitations/<invitation_id>/revoke")
@tenant_required("team.manage")
def revoke_invitation(invitation_id: str):
    """Withdraw a pending invitation."""
    return _invitation_action(invitation_id, invitations.revoke, "The invitation to {email} was revoked.")


@bp.post("/members/<membership_id>/role")
@tenant_required("team.manage")
def change_role(membership_id: str):
    """Give a member another role."""
    membership = get_for_tenant(Membership, membership_id, g.tenant, "Member")
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose one of the listed roles.", "error")
        return redirect_to("team.index")

    def change():
        services.change_role(current_actor(), g.tenant, membership, form.role.data)
        return f"{membership.user.display_name} is now {membership.role}."

    return act(change, "team.index")


@bp.post("/members/<membership_id>/remove")
@tenant_required("team.manage")
def remove_member(membership_id: str):
    """Remove a member; they are signed out at once."""
    membership = get_for_tenant(Membership, membership_id, g.tenant, "Member")
    name = membership.user.display_name

    def remove():
        services.remove_member(current_actor(), g.tenant, membership)
        return f"{name} was removed from the account."

    return act(remove, "team.index")


@bp.post("/leave")
@tenant_required()
def leave():
    """Leave this account (the owner must transfer ownership first)."""
    company = g.tenant.company_name

    def leave_account() -> str:
        services.leave(current_actor(), g.tenant, g.membership)
        return f"You left {company}."

    return act(leave_account, "team.index", done="main.overview")


@bp.post("/transfer")
@tenant_required("ownership.transfer")
def transfer_ownership():
    """Make another member the owner, after re-entering the password."""
    form = _transfer_form()
    if form.validate_on_submit():
        new_owner = get_for_tenant(Membership, form.new_owner.data, g.tenant, "Member")
        try:
            services.transfer_ownership(current_actor(), g.tenant, g.membership, new_owner, form.password.data)
            commit()
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            flash(f"{new_owner.user.display_name} is now the owner. You are an admin.", "success")
            return redirect_to("team.index")
    return _team_page(transfer_form=form, status=form_errors_status(), fragment="team/_transfer_form.html")
