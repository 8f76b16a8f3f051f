"""Bodies of the API key routes (``portal/api/keys.py``)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from portal.api.schemas.common import Body, Out, Pagination
from portal.models import API_SCOPES

ScopeName = Literal[tuple(API_SCOPES)]  # type: ignore[valid-type]


class ApiKeyCreateIn(Body):
    key_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    scopes: list[ScopeName] | None = Field(
        None,
        max_length=len(API_SCOPES) * 2,
        # The service says "Choose at least one scope." in words; the document says it too.
        json_schema_extra={"minItems": 1},
        description="Omitted: all of them (seed 000). "
        + " ".join(f"`{scope}`: {grants}." for scope, grants in API_SCOPES.items()),
    )
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
