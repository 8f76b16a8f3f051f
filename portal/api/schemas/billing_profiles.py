"""Bodies of ``GET|PUT /tenants/{id}/billing-profile`` (``portal/api/billing_profiles.py``)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints

from portal.api.schemas.common import Body, Out
from portal.billing.countries import COUNTRIES
from portal.billing.profile import LIMITS, MAX_RECIPIENTS, MAX_TAX_IDS
from portal.billing.tax_ids import KINDS

CountryCode = Literal[tuple(COUNTRIES)]  # type: ignore[valid-type]
TaxIdType = Literal[tuple(KINDS)]  # type: ignore[valid-type]
TAX_ID_DESCRIPTION = (
    "Checked by format and check digit (python-stdnum); a wrong one is a 400 saying what is wrong. "
    + "; ".join(f"`{kind.type}`: {kind.label}, e.g. `{kind.example}`" for kind in KINDS.values())
    + ". An EU VAT number starts with its member state's prefix (EL for Greece)."
)


def _text(name: str, description: str = ""):
    return Field("", description=description or None, max_length=LIMITS[name])


class TaxIdIn(Body):
    type: TaxIdType
    value: Annotated[str, StringConstraints(min_length=1, max_length=40)] = Field(description=TAX_ID_DESCRIPTION)


class BillingProfileIn(Body):
    """The whole profile: a field left out is cleared."""

    legal_name: str = _text("legal_name", "The buyer's legal name on invoices; empty: the company name.")
    address_line1: str = _text("address_line1")
    address_line2: str = _text("address_line2")
    city: str = _text("city")
    postal_code: str = _text("postal_code")
    region: str = _text("region", "State, province or region; a tax rate may depend on it.")
    country: CountryCode | None = Field(
        None, description="ISO 3166-1 alpha-2, upper case. Needed when `tax_ids` is not empty (the tax depends on it)."
    )
    billing_email: EmailStr | None = Field(
        None, description="Where invoices and receipts go; null: to the owner and admins."
    )
    extra_recipients: list[EmailStr] = Field(
        default_factory=list, max_length=MAX_RECIPIENTS, description="More addresses that receive invoices."
    )
    tax_ids: list[TaxIdIn] = Field(
        default_factory=list,
        max_length=MAX_TAX_IDS,
        description="Each at most once. With any tax ID, `country` must be set.",
    )
    po_number: str = _text("po_number", "Purchase order number, printed on every invoice.")


class TaxIdOut(Out):
    type: TaxIdType
    value: str = Field(description="Its compact form, e.g. FR40303265045.")
    country: str = Field(description="The country it belongs to (an EU VAT number's prefix, GR for EL).")
    label: str


class BillingProfileOut(Out):
    tenant_id: str
    legal_name: str
    address_line1: str
    address_line2: str
    city: str
    postal_code: str
    region: str
    country: str | None
    billing_email: str | None
    extra_recipients: list[str]
    tax_ids: list[TaxIdOut]
    po_number: str
    recipients: list[str] = Field(
        description="Who receives invoices now: billing_email and extra_recipients, or the owner and admins."
    )
    updated_at: datetime | None = Field(description="null: never set (the profile is empty).")
