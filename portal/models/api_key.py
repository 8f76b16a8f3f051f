from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

# Seed 000's scopes, each with what it grants here. admin:* covers every other scope and the
# admin-only endpoints.
API_SCOPES = {
    "pipelines:read": "Grants nothing: this portal runs no pipelines (accepted for seed 000's clients)",
    "pipelines:write": "Grants nothing: this portal runs no pipelines (accepted for seed 000's clients)",
    "usage:read": "Read usage and usage history",
    "credentials:read": "List cloud credentials (never their secrets)",
    "credentials:write": "Add, re-validate and delete cloud credentials",
    "admin:*": "Everything: keys, team, tenant profile, subscription changes and every scope above",
}
ADMIN_SCOPE = "admin:*"
# Seed 000 documents the pipeline scopes and its own examples ask for them, so the API accepts
# them; they guard nothing, so the portal does not offer them.
INERT_SCOPES = ("pipelines:read", "pipelines:write")


class ApiKey(db.Model):
    """A tenant's API key. Only its SHA-256 is stored; ``prefix`` is what people see."""

    __tablename__ = "api_keys"

    id: Mapped[str] = id_column("key")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(80))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_by_label: Mapped[str] = mapped_column(String(254), default="")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)

    tenant: Mapped["Tenant"] = relationship()  # noqa: F821

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"

    def allows(self, scope: str) -> bool:
        return ADMIN_SCOPE in self.scopes or scope in self.scopes


class OperatorToken(db.Model):
    """An operator's API token (the SaaS company's own programs). Stored as a hash."""

    __tablename__ = "operator_tokens"

    id: Mapped[str] = id_column("opt")
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped["User | None"] = relationship()  # noqa: F821

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
