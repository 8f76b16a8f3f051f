"""Bodies of the member routes (``portal/api/members.py``)."""

from datetime import datetime
from typing import Literal

from portal.api.schemas.common import Body, InvitableRole, Out, Pagination


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
