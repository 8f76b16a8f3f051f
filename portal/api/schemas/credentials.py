"""Bodies of the cloud credential routes (``portal/api/credentials.py``)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from portal.api.schemas.common import Body, Out, PageQuery, Pagination

ProviderName = Literal["gcp", "aws", "azure"]
SecretFieldName = Annotated[str, StringConstraints(max_length=100)]


class CredentialCreateIn(Body):
    provider: ProviderName
    # Optional: each provider has one type today (gcp service_account, aws access_key,
    # azure service_principal); another value gets INVALID_CREDENTIALS.
    credential_type: Annotated[str, StringConstraints(max_length=40)] | None = None
    # Checked by the vault (non-blank, at most 100 characters) with the secret's fields.
    credential_name: Annotated[str, StringConstraints(max_length=200)]
    # The provider's secret; write-only: it is validated, encrypted and never returned.
    credentials: dict[SecretFieldName, Any] = Field(
        json_schema_extra={"writeOnly": True},
        description="The provider's secret (GCP key file object; AWS key id, secret, region, optional role_arn; "
        "Azure tenant_id, client_id, subscription_id, client_secret). Never returned.",
    )
    # Seed 000 sends these with GCP keys; accepted, not stored (the vault keeps no scopes yet).
    scopes: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(None, max_length=50)


class CredentialCreateOut(Out):
    credential_id: str
    tenant_id: str
    provider: str
    credential_type: str
    credential_name: str
    identity: str
    fingerprint: str
    is_active: bool
    last_validated_at: datetime | None
    created_at: datetime
    message: str


class CredentialOut(Out):
    credential_id: str
    provider: str
    credential_type: str
    credential_name: str
    identity: str
    fingerprint: str
    is_active: bool
    created_at: datetime
    last_validated_at: datetime | None


class CredentialListOut(Out):
    credentials: list[CredentialOut]
    pagination: Pagination


class CredentialListQuery(PageQuery):
    provider: Literal["gcp", "aws", "azure", "all"] = "all"


class CredentialDeletedOut(Out):
    credential_id: str
    message: str


class CredentialFieldError(Out):
    field: str
    message: str


class CredentialValidateOut(Out):
    credential_id: str
    valid: bool
    is_active: bool
    last_validated_at: datetime | None
    errors: list[CredentialFieldError]
    message: str
