"""Seed 000's team invitations: invite (token shown once), list, accept (public)."""

from flask import request

from portal.api.registry import PUBLIC, operation
from portal.api.schemas import common
from portal.api.schemas import invitations as schemas
from portal.infra.transactions import commit
from portal.invitations import services as invitations
from portal.models import ADMIN_SCOPE, Invitation, Tenant


def invitation_out(invitation: Invitation) -> schemas.InvitationOut:
    return schemas.InvitationOut(
        invitation_id=invitation.id,
        invited_email=invitation.email,
        role=invitation.role,
        status=invitation.effective_status,
        expires_at=invitation.expires_at,
        created_at=invitation.created_at,
    )


@operation(
    "POST",
    "/tenants/<tenant_id>/invitations",
    scope=ADMIN_SCOPE,
    response=schemas.InvitationCreateOut,
    tags=["team"],
    errors=[409],
    summary="Invite someone by email (the token is in this response only)",
    links={"accept_invitation": {"token": "$response.body#/invitation_token"}},
)
def create_invitation(principal, tenant: Tenant, body: schemas.InvitationCreateIn):
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


@operation(
    "GET",
    "/tenants/<tenant_id>/invitations",
    response=schemas.InvitationListOut,
    tags=["team"],
    summary="List pending invitations (expired ones included until resent; never tokens)",
)
def list_invitations(principal, tenant: Tenant, query: common.PageQuery):
    page, pagination = common.page_of(invitations.pending_query(tenant), query)
    return schemas.InvitationListOut(
        invitations=[invitation_out(i) for i in page],
        pagination=pagination,
    )


@operation(
    "POST",
    "/invitations/<token>/accept",
    auth=PUBLIC,
    response=schemas.InvitationAcceptOut,
    tags=["team"],
    errors=[409],
    summary="Accept an invitation as a new person (existing users accept in the portal)",
)
def accept_invitation(principal, token: str, body: schemas.InvitationAcceptIn):
    invitation, user = invitations.accept(token, name=body.user_name, password=body.password, ip=request.remote_addr)
    commit()
    return schemas.InvitationAcceptOut(
        invitation_id=invitation.id,
        tenant_id=invitation.tenant_id,
        user_email=user.email,
        role=invitation.role,
        message="Invitation accepted successfully. You can now log in.",
    )
