"""Bodies of the invitation routes (``portal/api/invitations.py``)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints

from portal.api.schemas.common import Body, InvitableRole, Name, Out, Pagination


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
