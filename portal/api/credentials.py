"""Seed 000's cloud credential endpoints: add (validated, encrypted), list, delete, re-validate.

The secret goes in and never comes out: every response carries only the non-secret
identity and fingerprint. Validation failures are 400 ``INVALID_CREDENTIALS`` with one
error per field; fields of the secret are named as in the request body (``credentials.private_key``).
"""

import logging
from functools import partial

from portal.api.registry import ApiError, operation
from portal.api.schemas import common
from portal.api.schemas import credentials as schemas
from portal.credentials import services as vault
from portal.credentials.crypto import CredentialDecryptError
from portal.credentials.validation import CredentialInvalid
from portal.infra.transactions import commit
from portal.models import Credential, Tenant

log = logging.getLogger(__name__)

TAGS = ["credentials"]
credentials_operation = partial(operation, tags=TAGS)
# Fields of the request body itself; every other field the vault names is inside "credentials".
TOP_LEVEL_FIELDS = {"provider", "credential_type", "credential_name", "credentials"}


def api_field_errors(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """The vault's field names as paths in the request body: private_key -> credentials.private_key."""
    return [
        {
            "field": error["field"] if error["field"] in TOP_LEVEL_FIELDS else f"credentials.{error['field']}",
            "message": error["message"],
        }
        for error in errors
    ]


def credential_out(credential: Credential) -> schemas.CredentialOut:
    return common.out(schemas.CredentialOut, credential, credential_id=credential.id, credential_name=credential.name)


@credentials_operation(
    "POST",
    "/tenants/<tenant_id>/credentials",
    scope="credentials:write",
    links={
        target: {"credential_id": "$response.body#/credential_id"}
        for target in ("delete_credential", "validate_credential")
    },
)
def add_credential(principal, tenant: Tenant, body: schemas.CredentialCreateIn) -> schemas.CredentialCreateOut:
    """Add a cloud credential (validated offline, stored encrypted, never shown again)

    A secret that fails validation gets 400 `INVALID_CREDENTIALS` with `errors` per field
    (`credentials.private_key`, ...); nothing is stored. `scopes` is accepted but not stored.
    """
    try:
        credential = vault.add_credential(
            principal.actor(), tenant, body.provider, body.credential_type, body.credential_name, body.credentials
        )
    except CredentialInvalid as error:
        raise CredentialInvalid(api_field_errors(error.errors)) from None
    commit()
    return schemas.CredentialCreateOut(
        **credential_out(credential).model_dump(),
        tenant_id=tenant.tenant_id,
        message="Credentials added and validated successfully",
    )


@credentials_operation("GET", "/tenants/<tenant_id>/credentials", scope="credentials:read")
def list_credentials(principal, tenant: Tenant, query: schemas.CredentialListQuery) -> schemas.CredentialListOut:
    """List the tenant's cloud credentials (identity and fingerprint only, never the secret)"""
    statement = vault.credentials_query(tenant, query.provider)
    return common.page_out(schemas.CredentialListOut, statement, query, credential_out)


@credentials_operation("DELETE", "/tenants/<tenant_id>/credentials/<credential_id>", scope="credentials:write")
def delete_credential(principal, tenant: Tenant, credential_id: str) -> schemas.CredentialDeletedOut:
    """Delete a cloud credential (it is never listed or used again)"""
    credential = vault.get_credential(tenant, credential_id)
    vault.delete_credential(principal.actor(), tenant, credential)
    commit()
    return schemas.CredentialDeletedOut(
        credential_id=credential.id,
        message="Credentials deleted successfully",
    )


@credentials_operation(
    "POST", "/tenants/<tenant_id>/credentials/<credential_id>/validate", scope="credentials:write", errors=[409]
)
def validate_credential(principal, tenant: Tenant, credential_id: str) -> schemas.CredentialValidateOut:
    """Re-validate a stored cloud credential

    200 either way: `valid` false with `errors` per field marks the credential inactive. 409 when
    the stored secret cannot be decrypted (its key was removed, or the row is damaged).
    """
    credential = vault.get_credential(tenant, credential_id)
    try:
        errors = vault.revalidate_credential(principal.actor(), tenant, credential)
    except CredentialDecryptError as error:
        log.error("Credential %s could not be decrypted for re-validation: %s", credential.id, error)
        raise ApiError(409, "CONFLICT", "The stored secret could not be decrypted; add the credential again.") from None
    commit()
    return schemas.CredentialValidateOut(
        credential_id=credential.id,
        valid=not errors,
        is_active=credential.is_active,
        last_validated_at=credential.last_validated_at,
        errors=[schemas.CredentialFieldError(**error) for error in api_field_errors(errors)],
        message="Credentials are valid" if not errors else "Credential validation failed",
    )
