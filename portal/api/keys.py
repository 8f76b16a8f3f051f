"""Seed 000's API key endpoints: create (shown once), list, revoke."""

from portal.api.registry import operation
from portal.api.schemas import common
from portal.api.schemas import keys as schemas
from portal.api_keys import services as keys
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, ApiKey, Tenant
from portal.tenants.scoped import get_for_tenant


def api_key_out(key: ApiKey) -> schemas.ApiKeyOut:
    return schemas.ApiKeyOut(
        api_key_id=key.id,
        key_name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        is_active=key.is_active,
        status=key.status,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@operation(
    "POST",
    "/tenants/<tenant_id>/api-keys",
    scope=ADMIN_SCOPE,
    response=schemas.ApiKeyCreateOut,
    tags=["api keys"],
    summary="Create an API key (the key is in this response only)",
    links={"revoke_api_key": {"key_id": "$response.body#/api_key_id"}},
)
def create_api_key(principal, tenant: Tenant, body: schemas.ApiKeyCreateIn):
    key, plaintext = keys.create_key(
        principal.actor(), tenant, body.key_name or "", scopes=body.scopes, expires_in_days=body.expires_in_days
    )
    commit()
    return schemas.ApiKeyCreateOut(
        api_key_id=key.id,
        api_key=plaintext,
        key_name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        expires_at=key.expires_at,
        created_at=key.created_at,
        message="API key created successfully. Save this key - it will only be shown once!",
    )


@operation(
    "GET",
    "/tenants/<tenant_id>/api-keys",
    response=schemas.ApiKeyListOut,
    tags=["api keys"],
    summary="List the tenant's API keys (prefixes only, never the keys)",
)
def list_api_keys(principal, tenant: Tenant, query: common.PageQuery):
    page, pagination = common.page_of(keys.keys_query(tenant), query)
    return schemas.ApiKeyListOut(
        api_keys=[api_key_out(key) for key in page],
        pagination=pagination,
    )


@operation(
    "POST",
    "/tenants/<tenant_id>/api-keys/<key_id>/revoke",
    scope=ADMIN_SCOPE,
    response=schemas.ApiKeyRevokeOut,
    tags=["api keys"],
    errors=[409],
    summary="Revoke an API key",
)
def revoke_api_key(principal, tenant: Tenant, key_id: str, body: schemas.ApiKeyRevokeIn):
    key = get_for_tenant(ApiKey, key_id, tenant, "API key")
    keys.revoke_key(principal.actor(), tenant, key, body.revocation_reason or "")
    commit()
    return schemas.ApiKeyRevokeOut(
        api_key_id=key.id,
        is_active=key.is_active,
        revoked_at=key.revoked_at,
        message="API key revoked successfully",
    )
