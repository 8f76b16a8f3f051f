from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

PROVIDERS = ("gcp", "aws", "azure")
# The one credential type each provider accepts today (seed 000's names).
CREDENTIAL_TYPES = {"gcp": "service_account", "aws": "access_key", "azure": "service_principal"}


class Credential(db.Model):
    """A tenant's cloud credential. The secret is stored only encrypted and never shown again."""

    __tablename__ = "credentials"

    id: Mapped[str] = id_column("cred")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    provider: Mapped[str] = mapped_column(String(10))
    credential_type: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    # Safe to show: the service account email, the masked AWS key id, the Azure client id.
    identity: Mapped[str] = mapped_column(String(320))
    # First 16 hex of the SHA-256 of the canonical secret: tells two credentials apart, reveals nothing.
    fingerprint: Mapped[str] = mapped_column(String(16))
    # 12-byte nonce followed by the AES-GCM ciphertext and tag.
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # Which CREDENTIALS_KEYS entry encrypted it; rotation looks for rows not under the primary.
    key_id: Mapped[str] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_by_label: Mapped[str] = mapped_column(String(254), default="")
    last_validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped["Tenant"] = relationship()  # noqa: F821

    def __repr__(self) -> str:
        # Never the ciphertext: a repr ends up in logs and tracebacks.
        return f"<Credential {self.id} {self.provider} tenant={self.tenant_id}>"
