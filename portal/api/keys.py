"""Seed 000's API key endpoints: create (shown once), list, revoke."""

from functools import partial

from portal.api.registry import operation
from portal.api.schemas import common
from portal.api.schemas import keys as schemas
from portal.api_keys import services as keys
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, ApiKey, Tenant
from portal.tenants.scoped import get_for_tenant

keys_operation = partial(operation, tags=["api keys"])


def api_key_out(key: ApiKey) -> schemas.ApiKeyOut:
    return common.out(schemas.ApiKeyOut, key, api_key_id=key.id, key_name=key.name)


@keys_operation(
    "POST",
    "/tenants/<tenant_id>/api-keys",
    scope=ADMIN_SCOPE,
    links={"revoke_api_key": {"key_id": "$response.body#/api_key_id"}},
)
def create_api_key(principal, tenant: Tenant, body: schemas.ApiKeyCreateIn) -> schemas.ApiKeyCreateOut:
    """Create an API key (the key is in this response only)"""
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


@keys_operation("GET", "/tenants/<tenant_id>/api-keys")
def list_api_keys(principal, tenant: Tenant, query: common.PageQuery) -> schemas.ApiKeyListOut:
    """List the tenant's API keys (prefixes only, never the keys)"""
    return common.page_out(schemas.ApiKeyListOut, keys.keys_query(tenant), query, api_key_out)


@keys_operation("POST", "/tenants/<tenant_id>/api-keys/<key_id>/revoke", scope=ADMIN_SCOPE, errors=[409])
def revoke_api_key(principal, tenant: Tenant, key_id: str, body: schemas.ApiKeyRevokeIn) -> schemas.ApiKeyRevokeOut:
    """Revoke an API key"""
    key = get_for_tenant(ApiKey, key_id, tenant, "API key")
    keys.revoke_key(principal.actor(), tenant, key, body.revocation_reason or "")
    commit()
    return schemas.ApiKeyRevokeOut(
        api_key_id=key.id,
        is_active=key.is_active,
        revoked_at=key.revoked_at,
        message="API key revoked successfully",
    )
