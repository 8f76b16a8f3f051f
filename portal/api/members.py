"""Members of a tenant over the API: list, change role, remove (DESIGN §5, from seed 004)."""

from functools import partial

from portal.api.registry import operation
from portal.api.schemas import common
from portal.api.schemas import members as schemas
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, Membership, Tenant
from portal.team import services as team
from portal.tenants.scoped import get_for_tenant

team_operation = partial(operation, tags=["team"])


def member_out(membership: Membership) -> schemas.MemberOut:
    return schemas.MemberOut(
        user_id=membership.user_id,
        email=membership.user.email,
        name=membership.user.name,
        role=membership.role,
        joined_at=membership.created_at,
    )


def _membership(tenant: Tenant, user_id: str) -> Membership:
    # The API names a member by user id; another tenant's user under this path is not found.
    return get_for_tenant(Membership, user_id, tenant, "Member", by=Membership.user_id)


@team_operation(
    "GET",
    "/tenants/<tenant_id>/members",
    links={
        target: {"user_id": "$response.body#/members/0/user_id"} for target in ("change_member_role", "remove_member")
    },
)
def list_members(principal, tenant: Tenant, query: common.PageQuery) -> schemas.MemberListOut:
    """List the tenant's members and their roles"""
    return common.page_out(schemas.MemberListOut, team.members_query(tenant), query, member_out)


@team_operation("PATCH", "/tenants/<tenant_id>/members/<user_id>", scope=ADMIN_SCOPE, errors=[409])
def change_member_role(principal, tenant: Tenant, user_id: str, body: schemas.MemberPatchIn) -> schemas.MemberOut:
    """Change a member's role (not the owner's: transfer ownership in the portal)"""
    membership = team.change_role(principal.actor(), tenant, _membership(tenant, user_id), body.role)
    commit()
    return member_out(membership)


@team_operation("DELETE", "/tenants/<tenant_id>/members/<user_id>", scope=ADMIN_SCOPE, errors=[409])
def remove_member(principal, tenant: Tenant, user_id: str) -> schemas.MemberRemovedOut:
    """Remove a member (not the owner); their portal sessions end at once"""
    membership = _membership(tenant, user_id)
    email = membership.user.email
    team.remove_member(principal.actor(), tenant, membership)
    commit()
    return schemas.MemberRemovedOut(user_id=user_id, message=f"{email} was removed from {tenant.company_name}.")
