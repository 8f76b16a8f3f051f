"""The credit ledger (DESIGN §3, seeds 002/003): grants a tenant can spend, and one entry for
every change to its balance (grant, deduction, application to an invoice, expiry write-off).

Amounts are integer minor units of ``currency``. A grant's ``remaining`` is what is left of it;
the balance is the sum of ``remaining`` over the tenant's grants in that currency, and every
entry records the balance after it. CHECK constraints keep both from going below zero even if
a service got it wrong.
"""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

CREDIT_ENTRY_KINDS = ("grant", "deduction", "application", "expiry")


class CreditGrant(db.Model):
    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_credit_grants_tenant_currency", "tenant_id", "currency"),
    )

    id: Mapped[str] = id_column("cg")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(254), default="")
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<CreditGrant {self.id} {self.tenant_id} {self.remaining}/{self.amount} {self.currency}>"


class CreditEntry(db.Model):
    __tablename__ = "credit_entries"
    __table_args__ = (
        CheckConstraint("balance_after >= 0", name="balance_never_negative"),
        # An invoice takes credit once; a grant is granted once and written off at most once.
        UniqueConstraint("invoice_id"),
        UniqueConstraint("grant_id", "kind"),
        Index("ix_credit_entries_tenant_currency_created", "tenant_id", "currency", "created_at"),
    )

    id: Mapped[str] = id_column("ce")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(20))
    # Signed: positive for a grant, negative for everything that takes credit away.
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("credit_grants.id"))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    description: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(254), default="")
    # When it took effect in billing time (a billing run's as-of instant); created_at is the wall clock.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<CreditEntry {self.kind} {self.amount} -> {self.balance_after} {self.currency}>"
