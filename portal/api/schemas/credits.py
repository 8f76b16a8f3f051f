"""Bodies of the credit routes (``portal/api/credits.py``): grants, deductions and the ledger."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator

from portal.api.schemas.common import Body, ExactNumber, IsoInstant, Out, PageQuery, Pagination, exactly_one_of


def _major_amount(value: Any) -> Any:
    # Seed 003's creditAmount is a JSON number of major units; exact cents only (10.005 is refused).
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("give creditAmount as a number of major units, e.g. 25.50")
    amount = Decimal(str(value))
    if not amount.is_finite() or amount <= 0:
        raise ValueError("creditAmount must be more than zero")
    if amount > Decimal(1_000_000_000):
        raise ValueError("creditAmount can be at most 1,000,000,000")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError("creditAmount has more than two decimal places (cents)")
    return amount


MajorAmount = Annotated[
    Decimal,
    BeforeValidator(_major_amount),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000, "multipleOf": 0.01}),
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
CustomerRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
CreditReason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class CreditChangeIn(Body):
    """Whose credit and how much: our names, or seed 003's (``customerId``, ``creditAmount``) and
    seed 002's ``customerReferenceId``. A customer id matches a tenant id or an external id."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(("tenant_id", "customerId", "customerReferenceId"), ("amount", "creditAmount"))
    )

    tenant_id: CustomerRef = None
    customerId: CustomerRef = None  # noqa: N815 (seed 003's name)
    customerReferenceId: CustomerRef = None  # noqa: N815 (seed 002's name)
    amount: int = Field(None, gt=0, le=100_000_000_000, description="Minor units (cents).")
    creditAmount: MajorAmount = Field(None, description="Major units (seed 003), e.g. 25.5.")  # noqa: N815
    currency: CurrencyCode | None = Field(None, description="Defaults to the tenant's billing currency.")
    reason: CreditReason = ""

    @model_validator(mode="after")
    def _one_of_each(self):
        given = [name for name in ("tenant_id", "customerId", "customerReferenceId") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("name the tenant with exactly one of tenant_id, customerId, customerReferenceId")
        if (self.amount is None) == (self.creditAmount is None):
            raise ValueError("give exactly one of amount (minor units) or creditAmount (major units)")
        return self

    @property
    def customer(self) -> str:
        return self.tenant_id or self.customerId or self.customerReferenceId

    @property
    def minor_units(self) -> int:
        return self.amount if self.amount is not None else int(self.creditAmount * 100)


class CreditGrantIn(CreditChangeIn):
    expires_at: IsoInstant | None = Field(None, description="Omitted: the credit never expires.")


class CreditEntryOut(Out):
    entry_id: str
    type: Literal["grant", "deduction", "application", "expiry"]
    amount: int = Field(description="Minor units; negative when credit was taken away.")
    balance_after: int
    currency: str
    description: str
    invoice_id: str | None
    grant_id: str | None
    expires_at: datetime | None = Field(description="A grant's expiry.")
    created_by: str
    occurred_at: datetime


class CreditGrantOut(Out):
    grant_id: str
    tenant_id: str
    currency: str
    amount: int
    remaining: int
    expires_at: datetime | None
    reason: str
    balance: int
    entry: CreditEntryOut


class CreditDeductOut(Out):
    tenant_id: str
    currency: str
    amount: int
    balance: int
    entry: CreditEntryOut


class CreditsOut(Out):
    """Seed 002's credit pool totals (camelCase there), in minor units, and the ledger."""

    tenant_id: str
    currency: str
    balance: int
    total_granted: int
    total_used: int
    total_expired: int
    balance_major: ExactNumber
    entries: list[CreditEntryOut]
    pagination: Pagination


class CreditsQuery(PageQuery):
    currency: CurrencyCode | None = None
