"""Bodies of the tenant routes (``portal/api/tenants.py``): onboarding, reading, editing,
listing, suspending and activating tenants."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, Name, Out, PageQuery, Pagination
from portal.models import SUSPENSION_REASONS

TenantIdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,50}$")]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
PlanName = Literal["starter", "professional", "enterprise"]
# The rule (length, characters) is the service's, which says it in words
# (portal.tenants.services.EXTERNAL_ID_PATTERN); here only a bound, and the rule for the document.
ExternalId = Annotated[
    str,
    StringConstraints(max_length=200),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:@|+-]{0,99}$"}),
]
EXTERNAL_ID_DESCRIPTION = (
    "The operator's own id for the tenant (seed 002's customer reference): 1-100 letters, digits and "
    "_ . : @ | + -, unique, and not another tenant's tenant_id. Events, entitlement checks and credits "
    "accept it wherever they take a tenant_id. Set by operator tokens only."
)
NeverTrue = Annotated[
    bool,
    WithJsonSchema(
        {
            "type": "boolean",
            "const": False,
            "description": "Seed 000's switch; onboarding never deletes data, so only false is accepted.",
        }
    ),
]
SuspensionReason = Literal[tuple(SUSPENSION_REASONS)]  # type: ignore[valid-type]


class OnboardIn(Body):
    tenant_id: TenantIdStr
    company_name: Name
    contact_email: EmailStr | None = Field(
        None, description="Invited as the tenant's owner. Omitted: no owner invitation is sent."
    )
    subscription_plan: PlanName = "starter"
    external_id: ExternalId | None = Field(None, description=EXTERNAL_ID_DESCRIPTION)
    # Seed 000's BigQuery switches: accepted only as false, refused with a clear message.
    force_recreate_dataset: NeverTrue = False
    force_recreate_tables: NeverTrue = False


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
    owner_invitation: InvitationSummary | None = Field(
        description="The owner invitation sent to contact_email; null when no contact_email was given."
    )
    message: str


class TenantOut(Out):
    tenant_id: str
    company_name: str
    contact_email: str | None
    subscription_plan: str
    status: str
    suspension_reason: str | None = None
    suspended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str]
    external_id: str | None = Field(None, description="The operator's own id for the tenant, if set.")


class TenantPatchIn(Body):
    company_name: Name | None = None
    contact_email: EmailStr | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=50)
    external_id: ExternalId | None = Field(None, description=EXTERNAL_ID_DESCRIPTION + " null removes it.")


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


class TenantDeletedOut(Out):
    tenant_id: str
    status: str
    cancelled_at: datetime
    message: str
