"""Seed 000's customer endpoints: onboard, read, update, list, suspend, activate."""

from functools import partial

from flask import current_app, request

from portal.access import Actor
from portal.api.registry import PUBLIC, ApiError, operation, operator_operation
from portal.api.schemas import common
from portal.api.schemas import tenants as schemas
from portal.api_keys import services as keys
from portal.errors import PermissionDenied
from portal.infra.transactions import commit
from portal.invitations.services import invite_first_owner
from portal.models import ADMIN_SCOPE, Tenant, utcnow
from portal.tenants import services as tenants

tenant_operation = partial(operation, tags=["tenants"])


def tenant_out(tenant: Tenant) -> schemas.TenantOut:
    return common.out(schemas.TenantOut, tenant, metadata=tenant.metadata_json or {})


def _operator_only_external_id(principal) -> None:
    if principal is None or not principal.is_operator:
        raise PermissionDenied(
            "external_id is the operator's own id for the tenant; only an operator token sets it.",
        )


@tenant_operation(
    "POST",
    "/tenants/onboard",
    auth=PUBLIC,
    errors=[403, 409],
    links={
        target: {"tenant_id": "$response.body#/tenant_id"}
        for target in ("get_tenant", "create_api_key", "add_credential", "create_invitation", "list_invoices")
    },
)
def onboard(principal, body: schemas.OnboardIn) -> schemas.OnboardOut:
    """Onboard a tenant: its first API key, and an owner invitation to the contact

    Operator token, or public when API_PUBLIC_ONBOARDING is on. A tenant_id that is taken (in any
    letter case) is 409 `DUPLICATE_TENANT_ID`. Without `contact_email` no owner invitation is sent
    (`owner_invitation: null`), and notices meant for the contact (suspension, activation) are not
    sent until one is set with PATCH.
    """
    if principal is None or not principal.is_operator:
        if not current_app.config["API_PUBLIC_ONBOARDING"]:
            raise PermissionDenied("Onboarding needs an operator token.")
    if body.force_recreate_dataset or body.force_recreate_tables:
        raise ApiError(
            400,
            "NOT_SUPPORTED",
            "force_recreate_dataset and force_recreate_tables are not supported: "
            "onboarding never deletes data. Omit them, or set them to false.",
        )
    if body.external_id is not None:
        _operator_only_external_id(principal)
    actor = principal.actor() if principal else Actor(user=None, ip=request.remote_addr, label="public onboarding")
    tenant = tenants.create_tenant(
        actor,
        body.tenant_id,
        body.company_name,
        body.contact_email,
        body.subscription_plan,
        external_id=body.external_id,
    )
    key, plaintext = keys.create_key(actor, tenant, "Onboarding key", scopes=None)
    message = f"Customer {tenant.tenant_id} onboarded successfully. Save your API key - it will only be shown once!"
    owner_invitation = None
    if body.contact_email is None:
        # Seed 000 makes the contact optional; without one there is nobody to invite as owner.
        message += " No owner invitation was sent: no contact_email was given."
    else:
        invitation, _ = invite_first_owner(actor, tenant, body.contact_email)
        owner_invitation = common.out(
            schemas.InvitationSummary, invitation, invitation_id=invitation.id, invited_email=invitation.email
        )
    commit()
    return common.out(
        schemas.OnboardOut,
        tenant,
        api_key_id=key.id,
        api_key=plaintext,
        owner_invitation=owner_invitation,
        message=message,
    )


@tenant_operation("GET", "/tenants/<except('onboard', 'by-external-id'):tenant_id>", allowed_when_suspended=True)
def get_tenant(principal, tenant: Tenant) -> schemas.TenantOut:
    """Get a tenant"""
    return tenant_out(tenant)


@tenant_operation("PATCH", "/tenants/<except('onboard', 'by-external-id'):tenant_id>", scope="admin:*", errors=[409])
def update_tenant(principal, tenant: Tenant, body: schemas.TenantPatchIn) -> schemas.TenantOut:
    """Update company name, contact email, metadata or (operator) external_id

    `external_id` is set by operator tokens only (a tenant key sending it: 403); another tenant's
    external id or tenant_id: 409.
    """
    if "external_id" in body.model_fields_set:
        _operator_only_external_id(principal)
        tenants.set_external_id(principal.actor(), tenant, body.external_id)
    tenants.update_profile(
        principal.actor(),
        tenant,
        body.company_name if body.company_name is not None else tenant.company_name,
        body.contact_email if body.contact_email is not None else tenant.contact_email,
        body.metadata if body.metadata is not None else dict(tenant.metadata_json or {}),
    )
    commit()
    return tenant_out(tenant)


@tenant_operation(
    "DELETE",
    "/tenants/<except('onboard', 'by-external-id'):tenant_id>",
    scope=ADMIN_SCOPE,
    allowed_when_suspended=True,
    errors=[409],
)
def delete_tenant(principal, tenant: Tenant) -> schemas.TenantDeletedOut:
    """Delete the tenant, as its owner does on the settings page: members lose access, records are kept

    An operator token, or a tenant key with `admin:*` that the tenant's owner created (seed 004:
    only the owner deletes). The subscription ends at once; the tenant's keys stop working (404).
    409 when it is already deleted.
    """
    if not principal.is_operator:
        owner = tenants.owner_of(tenant)
        if owner is None or principal.api_key.created_by_id != owner.id:
            raise PermissionDenied(
                "Only the owner deletes the account: use an API key the owner created (with admin:*), "
                "or an operator token."
            )
    tenants.cancel(principal.actor(), tenant)
    commit()
    return schemas.TenantDeletedOut(
        tenant_id=tenant.tenant_id,
        status=tenant.status,
        cancelled_at=tenant.cancelled_at,
        message=f"{tenant.company_name} was deleted. Its members no longer have access.",
    )


@operator_operation("GET", "/tenants/by-external-id/<external_id>")
def get_tenant_by_external_id(principal, external_id: str) -> schemas.TenantOut:
    """Find a tenant by the operator's own id for it (seed 003's look-up by external id)"""
    tenant = tenants.find_by_external_id(external_id)
    if tenant is None:
        raise ApiError(404, "RESOURCE_NOT_FOUND", "Customer not found")
    return tenant_out(tenant)


@operator_operation("GET", "/admin/tenants")
def list_tenants(principal, query: schemas.TenantListQuery) -> schemas.TenantListOut:
    """List tenants (search, filter, paginate)"""
    statement = tenants.search(
        query.search,
        status=None if query.status == "all" else query.status,
        plan=None if query.subscription_plan == "all" else query.subscription_plan,
    )
    return common.page_out(schemas.TenantListOut, statement, query, schemas.TenantListItem.model_validate)


@operator_operation("POST", "/tenants/<tenant_id>/suspend", errors=[409])
def suspend_tenant(principal, tenant: Tenant, body: schemas.SuspendIn) -> schemas.SuspendOut:
    """Suspend a tenant"""
    tenants.suspend(principal.actor(), tenant, body.reason, body.suspension_note or "", body.notify_customer)
    commit()
    return common.out(schemas.SuspendOut, tenant, message="Customer suspended successfully.")


@operator_operation("POST", "/tenants/<tenant_id>/activate", errors=[409])
def activate_tenant(principal, tenant: Tenant, body: schemas.ActivateIn) -> schemas.ActivateOut:
    """Reactivate a suspended tenant"""
    tenants.activate(principal.actor(), tenant, notify=body.notify_customer, note=body.activation_note or "")
    commit()
    return schemas.ActivateOut(
        tenant_id=tenant.tenant_id,
        status=tenant.status,
        activated_at=utcnow(),
        message="Customer activated successfully.",
    )
