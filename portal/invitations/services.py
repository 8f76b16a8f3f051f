"""Invitations: create, resend, revoke, accept (DESIGN §3, seed 000)."""

from datetime import timedelta

from flask import current_app
from sqlalchemy import Select, select

from portal import audit
from portal.access import Actor
from portal.auth.services import create_user, find_user_by_email, normalize_email
from portal.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from portal.extensions import db
from portal.mail import send_email
from portal.models import INVITABLE_ROLES, Invitation, Membership, Tenant, User, utcnow
from portal.security import hash_token, new_token
from portal.web import public_url

MAX_EXPIRY_DAYS = 30


def invitation_url(token: str) -> str:
    return public_url("invitations.accept", token=token)


def _send(invitation: Invitation, token: str, actor: Actor) -> None:
    url = invitation_url(token)
    # "Wanda Walker invited you", not an email address; the expiry in the inviter's timezone, the
    # best guess for a colleague who has no account yet.
    inviter = actor.user.display_name if actor.user else actor.name
    send_email(
        invitation.email,
        f"You are invited to join {invitation.tenant.company_name}",
        "invitation",
        tenant=invitation.tenant,
        invitation=invitation,
        url=url,
        inviter=inviter,
        zone_name=actor.user.timezone if actor.user else None,
        secrets=[url],
    )


def check_role(role: str) -> None:
    if role not in INVITABLE_ROLES:
        raise ValidationFailed(f"role must be one of: {', '.join(INVITABLE_ROLES)}", field="role")


def create_invitation(
    actor: Actor, tenant: Tenant, email: str, role: str, expires_in_days: int | None = None
) -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``; returns the invitation and its one-time token."""
    check_role(role)
    return _invite(actor, tenant, email, role, expires_in_days)


def invite_first_owner(actor: Actor, tenant: Tenant, email: str) -> tuple[Invitation, str]:
    """An operator-onboarded tenant has no members yet: its contact is invited as owner."""
    if any(m.role == "owner" for m in tenant.memberships):
        raise Conflict("This account already has an owner.")
    return _invite(actor, tenant, email, "owner", None)


def _invite(actor: Actor, tenant: Tenant, email: str, role: str, expires_in_days: int | None) -> tuple[Invitation, str]:
    email = normalize_email(email)
    days = current_app.config["INVITATION_DEFAULT_DAYS"] if expires_in_days is None else expires_in_days
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValidationFailed(f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}.", field="expires_in_days")
    existing_user = find_user_by_email(email)
    if existing_user and _membership(tenant, existing_user):
        raise Conflict(f"{email} is already a member of this account.", field="email")
    for pending in pending_invitations(tenant):
        if pending.email != email:
            continue
        if pending.effective_status == "expired":
            pending.status = "expired"  # superseded by the new invitation below
        else:
            raise Conflict(f"{email} already has a pending invitation. Resend it instead.", field="email")
    token = new_token()
    invitation = Invitation(
        tenant=tenant,
        email=email,
        role=role,
        token_hash=hash_token(token),
        expires_at=utcnow() + timedelta(days=days),
        invited_by_id=actor.user.id if actor.user else None,
    )
    db.session.add(invitation)
    db.session.flush()
    audit.record(actor, "invitation.created", tenant, "invitation", invitation.id, email=email, role=role)
    _send(invitation, token, actor)
    return invitation, token


def pending_query(tenant: Tenant) -> Select:
    """Invitations still waiting for an answer, expired ones included (they can be resent)."""
    return (
        select(Invitation)
        .where(Invitation.tenant_id == tenant.tenant_id, Invitation.status == "pending")
        .order_by(Invitation.created_at.desc(), Invitation.id)
    )


def pending_invitations(tenant: Tenant) -> list[Invitation]:
    return list(db.session.execute(pending_query(tenant)).scalars())


def resend(actor: Actor, invitation: Invitation) -> str:
    """A fresh link and expiry; the previous link stops working."""
    if invitation.status != "pending":
        raise Conflict(f"This invitation is {invitation.status} and cannot be resent.")
    token = new_token()
    invitation.token_hash = hash_token(token)
    days = current_app.config["INVITATION_DEFAULT_DAYS"]
    invitation.expires_at = max(invitation.expires_at, utcnow() + timedelta(days=days))
    invitation.send_count += 1
    invitation.last_sent_at = utcnow()
    audit.record(actor, "invitation.resent", invitation.tenant, "invitation", invitation.id, email=invitation.email)
    _send(invitation, token, actor)
    return token


def revoke(actor: Actor, invitation: Invitation) -> None:
    if invitation.status != "pending":
        raise Conflict(f"This invitation is already {invitation.status}.")
    invitation.status = "revoked"
    invitation.revoked_at = utcnow()
    audit.record(actor, "invitation.revoked", invitation.tenant, "invitation", invitation.id, email=invitation.email)


def find_by_token(token: str) -> Invitation | None:
    if not token or len(token) > 200:
        return None
    return db.session.execute(select(Invitation).where(Invitation.token_hash == hash_token(token))).scalar_one_or_none()


def usable_or_error(invitation: Invitation | None) -> Invitation:
    """The invitation if it can still be accepted; otherwise a message that says why not: an
    unknown link is not found (404), a known one that can no longer be used conflicts with
    what became of it (409)."""
    if invitation is None:
        raise NotFound("This invitation link is not valid. It may have been replaced by a newer one.")
    status = invitation.effective_status
    if status == "expired":
        raise Conflict("This invitation has expired. Ask the account's admin to send a new one.")
    if status == "revoked":
        raise Conflict("This invitation was revoked.")
    if status == "accepted":
        raise Conflict("This invitation has already been used. Sign in to continue.")
    if invitation.tenant.status == "cancelled":
        raise Conflict("This account no longer exists.")
    if invitation.tenant.status == "suspended":
        raise Conflict(
            "This account is suspended at the moment. The invitation stays valid until it expires; "
            "try again once the account is reactivated."
        )
    return invitation


def accept(
    token: str, user: User | None = None, name: str = "", password: str = "", ip: str | None = None
) -> tuple[Invitation, User]:
    """Join the tenant: as ``user`` (signed in, same email) or as a new person."""
    invitation = usable_or_error(find_by_token(token))
    if user is None:
        if find_user_by_email(invitation.email):
            raise Conflict("You already have an account. Sign in to the portal to accept this invitation.")
        user = create_user(invitation.email, password, name)
    elif user.email != invitation.email:
        raise PermissionDenied(
            f"This invitation is for {invitation.email}. Sign out and sign in as that person to accept it."
        )
    if _membership(invitation.tenant, user) is None:
        db.session.add(Membership(tenant_id=invitation.tenant_id, user_id=user.id, role=invitation.role))
    invitation.status = "accepted"
    invitation.accepted_at = utcnow()
    invitation.accepted_by_id = user.id
    audit.record(
        Actor(user=user, ip=ip),
        "member.joined",
        invitation.tenant,
        "user",
        user.id,
        role=invitation.role,
        invitation_id=invitation.id,
    )
    return invitation, user


def _membership(tenant: Tenant, user: User) -> Membership | None:
    return db.session.execute(
        select(Membership).where(Membership.tenant_id == tenant.tenant_id, Membership.user_id == user.id)
    ).scalar_one_or_none()
