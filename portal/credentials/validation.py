"""Offline shape checks for each provider's secret: pure functions, no network, no state.

Each returns the normalized secret and its non-secret identity, or raises
CredentialInvalid listing every failing field with its own message. Messages never
quote the submitted values.
"""

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from portal.errors import ValidationFailed
from portal.models.credential import CREDENTIAL_TYPES, PROVIDERS

MAX_PAYLOAD_CHARS = 20_000

SERVICE_ACCOUNT_EMAIL = re.compile(r"^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\.iam\.gserviceaccount\.com$")
AWS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
AWS_SECRET = re.compile(r"^[A-Za-z0-9/+=]{40}$")
AWS_ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
AZURE_SECRET_MAX = 255

# The public AWS commercial-partition regions (the `aws` partition, matching the role ARN form).
AWS_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-south-1",
        "ap-south-2",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
    }
)


class CredentialInvalid(ValidationFailed, code="INVALID_CREDENTIALS"):
    """The submitted credential has the wrong shape; ``errors`` lists [{field, message}]."""

    def __init__(self, errors: list[dict[str, str]]):
        fields = ", ".join(error["field"] for error in errors)
        super().__init__(f"Credential validation failed: check {fields}.", field=errors[0]["field"])
        self.errors = errors


@dataclass(frozen=True)
class ValidatedSecret:
    secret: dict
    identity: str


class _Errors(list):
    def add(self, field: str, message: str) -> None:
        self.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self:
            raise CredentialInvalid(list(self))


def _text(payload: dict, field: str, errors: _Errors, label: str) -> str:
    value = payload.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.add(field, f"{label} is required.")
        return ""
    if not isinstance(value, str):
        errors.add(field, f"{label} must be a string.")
        return ""
    return value.strip()


def _unknown_fields(payload: dict, allowed: set[str], errors: _Errors) -> None:
    # A typo such as "aws_region" would otherwise be silently dropped.
    for field in sorted(set(payload) - allowed):
        errors.add(field, f"Unknown field; expected only: {', '.join(sorted(allowed))}.")


def validate_gcp_service_account(payload) -> ValidatedSecret:
    """A GCP service account JSON key file, given as an object or as its JSON text."""
    errors = _Errors()
    if isinstance(payload, str | bytes):
        if len(payload) > MAX_PAYLOAD_CHARS:
            raise CredentialInvalid([{"field": "credentials", "message": "The key file is too large."}])
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise CredentialInvalid(
                [{"field": "credentials", "message": "This is not valid JSON; upload the service account key file."}]
            ) from None
    if not isinstance(payload, dict):
        raise CredentialInvalid([{"field": "credentials", "message": "The key file must be a JSON object."}])

    if payload.get("type") != "service_account":
        errors.add("type", 'type must be "service_account" (this is not a service account key file).')
    _text(payload, "project_id", errors, "project_id")
    email = _text(payload, "client_email", errors, "client_email")
    if email and not SERVICE_ACCOUNT_EMAIL.match(email.lower()):
        errors.add("client_email", "client_email must be a service account address ending in .iam.gserviceaccount.com.")
    pem = _text(payload, "private_key", errors, "private_key")
    if pem:
        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            errors.add("private_key", "private_key is not a readable PEM private key (is it complete?).")
        else:
            if not isinstance(key, RSAPrivateKey):
                errors.add("private_key", "private_key must be an RSA private key.")
    token_uri = _text(payload, "token_uri", errors, "token_uri")
    if token_uri:
        parts = urlsplit(token_uri)
        if parts.scheme != "https" or not parts.hostname:
            errors.add("token_uri", "token_uri must be an https URL.")
    errors.raise_if_any()
    return ValidatedSecret(secret=payload, identity=email.lower())


def validate_aws_access_key(payload) -> ValidatedSecret:
    """An AWS access key pair, its region, and optionally a role to assume."""
    if not isinstance(payload, dict):
        raise CredentialInvalid([{"field": "credentials", "message": "credentials must be an object."}])
    errors = _Errors()
    _unknown_fields(payload, {"aws_access_key_id", "aws_secret_access_key", "region", "role_arn"}, errors)
    key_id = _text(payload, "aws_access_key_id", errors, "aws_access_key_id")
    if key_id and not AWS_KEY_ID.match(key_id):
        errors.add(
            "aws_access_key_id", "aws_access_key_id must be AKIA or ASIA followed by 16 uppercase letters or digits."
        )
    secret = _text(payload, "aws_secret_access_key", errors, "aws_secret_access_key")
    if secret and not AWS_SECRET.match(secret):
        errors.add(
            "aws_secret_access_key", "aws_secret_access_key must be exactly 40 characters (letters, digits, / + =)."
        )
    region = _text(payload, "region", errors, "region")
    if region and region not in AWS_REGIONS:
        errors.add("region", "region is not an AWS region (for example us-east-1).")
    role_arn = payload.get("role_arn")
    if role_arn not in (None, ""):
        if not isinstance(role_arn, str) or not AWS_ROLE_ARN.match(role_arn.strip()):
            errors.add("role_arn", "role_arn must look like arn:aws:iam::123456789012:role/RoleName.")
    errors.raise_if_any()
    secret_fields = {"aws_access_key_id": key_id, "aws_secret_access_key": secret, "region": region}
    if role_arn:
        secret_fields["role_arn"] = role_arn.strip()
    return ValidatedSecret(secret=secret_fields, identity=mask_aws_key_id(key_id))


def mask_aws_key_id(key_id: str) -> str:
    return "*" * (len(key_id) - 4) + key_id[-4:]


def validate_azure_service_principal(payload) -> ValidatedSecret:
    """An Azure service principal: tenant, client and subscription ids, and a client secret."""
    if not isinstance(payload, dict):
        raise CredentialInvalid([{"field": "credentials", "message": "credentials must be an object."}])
    errors = _Errors()
    _unknown_fields(payload, {"tenant_id", "client_id", "subscription_id", "client_secret"}, errors)
    ids = {}
    for field in ("tenant_id", "client_id", "subscription_id"):
        value = _text(payload, field, errors, field)
        if value and not GUID.match(value):
            errors.add(field, f"{field} must be a GUID such as 00000000-0000-0000-0000-000000000000.")
        ids[field] = value.lower()
    client_secret = payload.get("client_secret")
    if not isinstance(client_secret, str) or not client_secret:
        errors.add("client_secret", "client_secret is required.")
    elif len(client_secret) > AZURE_SECRET_MAX:
        errors.add("client_secret", f"client_secret must be at most {AZURE_SECRET_MAX} characters.")
    errors.raise_if_any()
    return ValidatedSecret(secret={**ids, "client_secret": client_secret}, identity=ids["client_id"])


VALIDATORS = {
    "gcp": validate_gcp_service_account,
    "aws": validate_aws_access_key,
    "azure": validate_azure_service_principal,
}


def validate(provider: str, credential_type: str | None, payload) -> ValidatedSecret:
    """Check provider and type, then the secret's shape for that provider."""
    if provider not in PROVIDERS:
        raise CredentialInvalid([{"field": "provider", "message": f"provider must be one of: {', '.join(PROVIDERS)}."}])
    expected = CREDENTIAL_TYPES[provider]
    if credential_type not in (None, "", expected):
        raise CredentialInvalid(
            [{"field": "credential_type", "message": f'credential_type for {provider} must be "{expected}".'}]
        )
    return VALIDATORS[provider](payload)
