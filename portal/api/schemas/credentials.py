"""Bodies of the cloud credential routes (``portal/api/credentials.py``)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, Out, PageQuery, Pagination
from portal.credentials import validation
from portal.credentials.services import MAX_NAME
from portal.models.credential import CREDENTIAL_TYPES

ProviderName = Literal["gcp", "aws", "azure"]
SecretFieldName = Annotated[str, StringConstraints(max_length=100)]


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


_GUID = {"type": "string", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}
# portal.credentials.validation's checks per provider, for the document. A GCP private_key must
# also be a readable RSA key in PEM, which no JSON Schema keyword can check.
SECRET_SCHEMAS = {
    "aws": {
        "type": "object",
        "additionalProperties": False,
        "required": ["aws_access_key_id", "aws_secret_access_key", "region"],
        "properties": {
            "aws_access_key_id": {"type": "string", "pattern": "^(AKIA|ASIA)[A-Z0-9]{16}$"},
            "aws_secret_access_key": {"type": "string", "pattern": "^[A-Za-z0-9/+=]{40}$"},
            "region": {"enum": sorted(validation.AWS_REGIONS)},
            "role_arn": {
                "anyOf": [
                    {"type": "string", "pattern": "^arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"},
                    {"const": ""},
                    {"type": "null"},
                ]
            },
        },
    },
    "azure": {
        "type": "object",
        "additionalProperties": False,
        "required": ["tenant_id", "client_id", "subscription_id", "client_secret"],
        "properties": {
            "tenant_id": _GUID,
            "client_id": _GUID,
            "subscription_id": _GUID,
            "client_secret": {"type": "string", "minLength": 1, "maxLength": validation.AZURE_SECRET_MAX},
        },
    },
    "gcp": {
        "type": "object",
        "description": "The service account key file as an object (its JSON text is accepted too).",
        "required": ["type", "project_id", "client_email", "private_key", "token_uri"],
        "properties": {
            "type": {"const": "service_account"},
            "project_id": {"type": "string", "pattern": "\\S"},
            "client_email": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\\.iam\\.gserviceaccount\\.com$",
            },
            "private_key": {"type": "string", "description": "An RSA private key in PEM.", "pattern": "\\S"},
            "token_uri": {"type": "string", "pattern": "^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\\s]*)?$"},
        },
    },
}


def _provider_rules(schema: dict) -> None:
    # if/then rather than oneOf: the same rule, and generated clients (openapi-python-client)
    # keep one model for the body instead of failing on three overlapping ones.
    schema["allOf"] = [
        {
            "if": {"properties": {"provider": {"const": provider}}},
            "then": {
                "properties": {
                    "credential_type": _nullable({"enum": [CREDENTIAL_TYPES[provider], ""]}),
                    "credentials": secret,
                }
            },
        }
        for provider, secret in SECRET_SCHEMAS.items()
    ]


class CredentialCreateIn(Body):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_provider_rules)

    provider: ProviderName
    # Optional: each provider has one type today (gcp service_account, aws access_key,
    # azure service_principal); another value gets INVALID_CREDENTIALS.
    credential_type: Annotated[str, StringConstraints(max_length=40)] | None = None
    # Checked by the vault (non-blank, at most 100 characters) with the secret's fields.
    credential_name: Annotated[
        str,
        StringConstraints(max_length=200),
        WithJsonSchema({"type": "string", "maxLength": MAX_NAME, "pattern": "\\S"}),
    ]
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
