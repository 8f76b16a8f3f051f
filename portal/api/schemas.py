"""Request and response bodies of the JSON API (pydantic); the OpenAPI document uses them."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from portal.models import API_SCOPES, INVITABLE_ROLES, SUSPENSION_REASONS

TenantIdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,50}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
PlanName = Literal["starter", "professional", "enterprise"]
SuspensionReason = Literal[tuple(SUSPENSION_REASONS)]  # type: ignore[valid-type]


class Body(BaseModel):
    """Request bodies: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query strings arrive as text, so numbers are parsed (leniently) from it."""

    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Pagination(Out):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool


class PageQuery(Query):
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(50, ge=1, le=100)


class Message(Out):
    message: str


# --- tenants -----------------------------------------------------------------------------


class OnboardIn(Body):
    tenant_id: TenantIdStr
    company_name: Name
    contact_email: EmailStr
    subscription_plan: PlanName = "starter"
    # Seed 000's BigQuery switches: accepted only as false, refused with a clear message.
    force_recreate_dataset: bool = False
    force_recreate_tables: bool = False


class InvitationSummary(Out):
    invitation_id: str
    invited_email: str
    role: str
    expires_at: datetime
    status: str


class OnboardOut(Out):
    tenant_id: str
    company_name: str
    subscription_plan: str
    api_key_id: str
    api_key: str
    owner_invitation: InvitationSummary
    message: str


class TenantOut(Out):
    tenant_id: str
    company_name: str
    contact_email: str
    subscription_plan: str
    status: str
    suspension_reason: str | None = None
    suspended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str]


class TenantPatchIn(Body):
    company_name: Name | None = None
    contact_email: EmailStr | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=50)


class TenantListItem(Out):
    tenant_id: str
    company_name: str
    subscription_plan: str
    status: str
    created_at: datetime


class TenantListOut(Out):
    tenants: list[TenantListItem]
    pagination: Pagination


class TenantListQuery(PageQuery):
    status: Literal["active", "suspended", "cancelled", "all"] = "all"
    subscription_plan: Literal["starter", "professional", "enterprise", "all"] = "all"
    search: Annotated[str, StringConstraints(max_length=100)] | None = None


class SuspendIn(Body):
    reason: SuspensionReason
    notify_customer: bool = True
    suspension_note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class SuspendOut(Out):
    tenant_id: str
    status: str
    suspended_at: datetime
    suspension_reason: str
    message: str


class ActivateIn(Body):
    notify_customer: bool = False
    activation_note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class ActivateOut(Out):
    tenant_id: str
    status: str
    activated_at: datetime
    message: str


def page_of(rows: list, query: PageQuery) -> tuple[list, Pagination]:
    """One page of a tenant-sized list (members, keys, invitations) and its pagination."""
    start = (query.page - 1) * query.page_size
    return rows[start:start + query.page_size], pagination(query.page, query.page_size, len(rows))


def pagination(page: int, page_size: int, total: int) -> Pagination:
    pages = max((total + page_size - 1) // page_size, 1)
    return Pagination(page=page, page_size=page_size, total_items=total, total_pages=pages,
                      has_next=page < pages, has_previous=page > 1)


# --- API keys ------------------------------------------------------------------------------

ScopeName = Literal[tuple(API_SCOPES)]  # type: ignore[valid-type]
InvitableRole = Literal[tuple(INVITABLE_ROLES)]  # type: ignore[valid-type]


class ApiKeyCreateIn(Body):
    key_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    scopes: list[ScopeName] | None = Field(None, max_length=len(API_SCOPES) * 2)
    # null = never expires (seed 000); omitted = 90 days.
    expires_in_days: int | None = Field(90, ge=1, le=3650)


class ApiKeyCreateOut(Out):
    api_key_id: str
    api_key: str
    key_name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime
    message: str


class ApiKeyOut(Out):
    api_key_id: str
    key_name: str
    prefix: str
    scopes: list[str]
    is_active: bool
    status: Literal["active", "expired", "revoked"]
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyListOut(Out):
    api_keys: list[ApiKeyOut]
    pagination: Pagination


class ApiKeyRevokeIn(Body):
    revocation_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class ApiKeyRevokeOut(Out):
    api_key_id: str
    is_active: bool
    revoked_at: datetime
    message: str


# --- invitations ---------------------------------------------------------------------------


class InvitationCreateIn(Body):
    invited_email: EmailStr
    role: InvitableRole
    # Omitted: the default (7 days, seed 000).
    expires_in_days: int | None = Field(None, ge=1, le=30)


class InvitationCreateOut(Out):
    invitation_id: str
    invited_email: str
    role: str
    invitation_token: str
    invitation_url: str
    expires_at: datetime
    status: str


class InvitationOut(Out):
    invitation_id: str
    invited_email: str
    role: str
    status: Literal["pending", "accepted", "revoked", "expired"]
    expires_at: datetime
    created_at: datetime


class InvitationListOut(Out):
    invitations: list[InvitationOut]
    pagination: Pagination


class InvitationAcceptIn(Body):
    user_name: Name
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class InvitationAcceptOut(Out):
    invitation_id: str
    tenant_id: str
    user_email: str
    role: str
    message: str


# --- members -------------------------------------------------------------------------------


class MemberOut(Out):
    user_id: str
    email: str
    name: str
    role: Literal["owner", "admin", "developer", "viewer"]
    joined_at: datetime


class MemberListOut(Out):
    members: list[MemberOut]
    pagination: Pagination


class MemberPatchIn(Body):
    role: InvitableRole


class MemberRemovedOut(Out):
    user_id: str
    message: str


# --- cloud credentials ---------------------------------------------------------------------

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
