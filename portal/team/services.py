"""Members of a tenant: roles, removal, leaving, ownership transfer."""

from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload

from portal import audit
from portal.access import Actor
from portal.auth.services import confirm_password, end_all_sessions
from portal.errors import Conflict, PermissionDenied
from portal.extensions import db
from portal.invitations.services import check_role
from portal.models import Membership, Tenant, User


def members_query(tenant: Tenant) -> Select:
    return (
        select(Membership)
        .options(joinedload(Membership.user))
        .where(Membership.tenant_id == tenant.tenant_id)
        .order_by(Membership.created_at, Membership.id)
    )


def members(tenant: Tenant) -> list[Membership]:
    return list(db.session.execute(members_query(tenant)).scalars())


def owner_and_admin_emails(tenant_id: str) -> list[str]:
    """Who is told about the account's money, quotas and integrations: the owner and admins."""
    return list(
        db.session.execute(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.tenant_id == tenant_id, Membership.role.in_(("owner", "admin")))
            .order_by(User.email)
        ).scalars()
    )


def change_role(actor: Actor, tenant: Tenant, membership: Membership, role: str) -> Membership:
    check_role(role)
    if membership.is_owner:
        raise Conflict("The owner's role cannot be changed. Transfer ownership instead.")
    if membership.role == role:
        return membership
    previous = membership.role
    membership.role = role
    audit.record(
        actor,
        "member.role_changed",
        tenant,
        "user",
        membership.user_id,
        email=membership.user.email,
        **{"from": previous, "to": role},
    )
    return membership


def remove_member(actor: Actor, tenant: Tenant, membership: Membership) -> None:
    """Remove someone else; their sessions end at once."""
    if membership.is_owner:
        raise Conflict("The owner cannot be removed. Transfer ownership first.")
    if actor.user is not None and membership.user_id == actor.user.id:
        raise Conflict("Use “Leave account” to remove yourself.")
    user = membership.user
    db.session.delete(membership)
    db.session.flush()
    end_all_sessions(user)
    audit.record(actor, "member.removed", tenant, "user", user.id, email=user.email, role=membership.role)


def leave(actor: Actor, tenant: Tenant, membership: Membership) -> None:
    if membership.is_owner:
        raise Conflict("The owner cannot leave. Transfer ownership to another member first.")
    db.session.delete(membership)
    audit.record(actor, "member.left", tenant, "user", membership.user_id, email=membership.user.email)


def transfer_ownership(actor: Actor, tenant: Tenant, owner: Membership, new_owner: Membership, password: str) -> None:
    """Hand the owner role to another member; the previous owner becomes an admin."""
    if not owner.is_owner or owner.user_id != (actor.user.id if actor.user else None):
        raise PermissionDenied("Only the owner can transfer ownership.")
    if new_owner.user_id == owner.user_id:
        raise Conflict("You are already the owner.", field="new_owner")
    confirm_password(owner.user, password)
    # One owner per tenant is a unique index, so step down before the other steps up.
    owner.role = "admin"
    db.session.flush()
    previous_role = new_owner.role
    new_owner.role = "owner"
    db.session.flush()
    audit.record(
        actor,
        "ownership.transferred",
        tenant,
        "user",
        new_owner.user_id,
        to=new_owner.user.email,
        previous_role=previous_role,
    )
