from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, false, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow

TENANT_STATUSES = ("active", "suspended", "cancelled")
SUSPENSION_REASONS = {
    "payment_failed": "Payment failed",
    "terms_violation": "Terms of service violation",
    "admin_request": "Suspended at the account's request",
}


class Tenant(db.Model):
    """A customer account (seed 000 "tenant"). ``tenant_id`` is its permanent slug."""

    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    company_name: Mapped[str] = mapped_column(String(200))
    # Optional (seed 000): a tenant onboarded without one gets no owner invitation and no emails.
    contact_email: Mapped[str | None] = mapped_column(String(254))
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    metadata_json: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    subscription_plan: Mapped[str] = mapped_column(String(50), default="starter")
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    suspension_reason: Mapped[str | None] = mapped_column(String(40))
    suspension_note: Mapped[str | None] = mapped_column(Text)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100))
    # The saved card (a Stripe PaymentMethod): only what is needed to show it, never the number.
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(100))
    card_brand: Mapped[str | None] = mapped_column(String(30))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None] = mapped_column(Integer)
    card_exp_year: Mapped[int | None] = mapped_column(Integer)
    # The owner's policy: every member needs a second factor to use this tenant (portal.access).
    require_two_factor: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(  # noqa: F821
        back_populates="tenant", cascade="all, delete-orphan"
    )

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def is_suspended(self) -> bool:
        return self.status == "suspended"

    @property
    def suspension_reason_label(self) -> str:
        return SUSPENSION_REASONS.get(self.suspension_reason or "", "Suspended")

    def __repr__(self) -> str:
        return f"<Tenant {self.tenant_id} {self.status}>"


# "Acme" beside "acme" would be a phishing gift: ids are unique whatever their case.
Index("uq_tenants_lower_tenant_id", func.lower(Tenant.tenant_id), unique=True)
