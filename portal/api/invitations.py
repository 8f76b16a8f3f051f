"""Seed 000's team invitations: invite (token shown once), list, accept (public)."""

from functools import partial

from flask import request

from portal.api.registry import PUBLIC, operation
from portal.api.schemas import common
from portal.api.schemas import invitations as schemas
from portal.infra.transactions import commit
from portal.invitations import services as invitations
from portal.models import ADMIN_SCOPE, Invitation, Tenant

team_operation = partial(operation, tags=["team"])


def invitation_out(invitation: Invitation) -> schemas.InvitationOut:
    return common.out(
        schemas.InvitationOut,
        invitation,
        invitation_id=invitation.id,
        invited_email=invitation.email,
        status=invitation.effective_status,
    )


@team_operation(
    "POST",
    "/tenants/<tenant_id>/invitations",
    scope=ADMIN_SCOPE,
    errors=[409],
    links={"accept_invitation": {"token": "$response.body#/invitation_token"}},
)
def create_invitation(principal, tenant: Tenant, body: schemas.InvitationCreateIn) -> schemas.InvitationCreateOut:
    """Invite someone by email (the token is in this response only)"""
    invitation, token = invitations.create_invitation(
        principal.actor(), tenant, body.invited_email, body.role, body.expires_in_days
    )
    commit()
    return schemas.InvitationCreateOut(
        invitation_id=invitation.id,
        invited_email=invitation.email,
        role=invitation.role,
        invitation_token=token,
        invitation_url=invitations.invitation_url(token),
        expires_at=invitation.expires_at,
        status=invitation.effective_status,
    )


@team_operation("GET", "/tenants/<tenant_id>/invitations")
def list_invitations(principal, tenant: Tenant, query: common.PageQuery) -> schemas.InvitationListOut:
    """List pending invitations (expired ones included until resent; never tokens)"""
    return common.page_out(schemas.InvitationListOut, invitations.pending_query(tenant), query, invitation_out)


@team_operation("POST", "/invitations/<token>/accept", auth=PUBLIC, errors=[409])
def accept_invitation(principal, token: str, body: schemas.InvitationAcceptIn) -> schemas.InvitationAcceptOut:
    """Accept an invitation as a new person (existing users accept in the portal)"""
    invitation, user = invitations.accept(token, name=body.user_name, password=body.password, ip=request.remote_addr)
    commit()
    return common.out(
        schemas.InvitationAcceptOut,
        invitation,
        invitation_id=invitation.id,
        user_email=user.email,
        message="Invitation accepted successfully. You can now log in.",
    )
