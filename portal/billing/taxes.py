"""Tax on invoices: the catalog's rates, which one applies to a buyer (the EU reverse charge
included), and each line's tax, rounded once, half up, after the invoice's credit is shared
out over its lines.

The rules, for a seller registered in ``BILLING_SELLER_COUNTRY``:
- a buyer without a country on their billing profile: no tax (as before taxes existed);
- seller and buyer in the EU, in different countries, the buyer with a valid EU VAT number of a
  member state other than the seller's: reverse charge, 0 %, with the legal mention;
- in the EU otherwise (the same country, or no VAT number): the seller country's rate;
- anywhere else: the catalog's rate for the buyer's country and region, if it has one; else none.
"""

from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy import select

from portal.billing.catalog import TaxRateSpec
from portal.billing.countries import EU_COUNTRIES
from portal.billing.money import allocate, round_ratio
from portal.billing.tax_ids import country_of
from portal.extensions import db
from portal.models import TaxRate

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"
)
REVERSE_CHARGE_NAME = "VAT reverse charge"


@dataclass(frozen=True)
class Treatment:
    """What an invoice's lines are taxed at: a rate's name and percentage (copied onto each line),
    or none (``name`` None); ``note`` is printed on the invoice."""

    name: str | None
    percentage: Decimal = Decimal(0)
    inclusive: bool = False
    note: str | None = None


NO_TAX = Treatment(None)


@dataclass(frozen=True)
class LineTax:
    credit_allocated: int
    tax: int


@dataclass
class SyncResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    retired: list[str]


def sync_tax_rates(specs: list[TaxRateSpec]) -> SyncResult:
    """Bring the tax rates in line with the catalog file (idempotent). A rate left out of the file
    is kept, inactive: invoices copied its name and percentage, so nothing issued changes."""
    result = SyncResult([], [], [], [])
    existing = {rate.key: rate for rate in db.session.execute(select(TaxRate)).scalars()}
    for spec in specs:
        values = {
            "name": spec.name,
            "percentage": spec.percentage,
            "country": spec.country,
            "region": spec.region,
            "inclusive": spec.inclusive,
            "active": True,
        }
        rate = existing.pop(spec.key, None)
        if rate is None:
            db.session.add(TaxRate(key=spec.key, **values))
            result.created.append(spec.key)
        elif all(getattr(rate, name) == value for name, value in values.items()):
            result.unchanged.append(spec.key)
        else:
            for name, value in values.items():
                setattr(rate, name, value)
            result.updated.append(spec.key)
    for key, rate in existing.items():
        if rate.active:
            rate.active = False
            result.retired.append(key)
    db.session.flush()
    return result


def active_rates() -> list[TaxRate]:
    return list(
        db.session.execute(
            select(TaxRate).where(TaxRate.active.is_(True)).order_by(TaxRate.country, TaxRate.region)
        ).scalars()
    )


# The active rates by country, then by region (casefolded; "" for the whole country).
RateBook = dict[str, dict[str, TaxRate]]


def _book(rates) -> RateBook:
    book: RateBook = {}
    for rate in rates:
        book.setdefault(rate.country, {})[rate.region.strip().casefold()] = rate
    return book


def rate_book() -> RateBook:
    """Every active rate in one query, for work that taxes many invoices (a billing run's batch)."""
    return _book(db.session.execute(select(TaxRate).where(TaxRate.active.is_(True))).scalars())


def rate_for(country: str, region: str = "", book: RateBook | None = None) -> TaxRate | None:
    """The active rate for ``country`` and ``region`` (any letter case), else the country's own;
    from ``book`` when given, else looked up."""
    if book is None:
        rates = db.session.execute(select(TaxRate).where(TaxRate.country == country, TaxRate.active.is_(True)))
        book = _book(rates.scalars())
    by_region = book.get(country, {})
    return by_region.get(region.strip().casefold()) or by_region.get("")


def _as_treatment(rate: TaxRate | None) -> Treatment:
    if rate is None:
        return NO_TAX
    return Treatment(rate.name, Decimal(rate.percentage), rate.inclusive)


def seller_country() -> str:
    return (current_app.config.get("BILLING_SELLER_COUNTRY") or "").strip().upper()


def treatment_for(buyer: dict | None, seller: str | None = None, book: RateBook | None = None) -> Treatment:
    """The tax of an invoice for ``buyer`` (a billing profile snapshot, ``profile.snapshot``);
    ``book``: the active rates, already read (``rate_book``)."""
    seller = seller_country() if seller is None else seller
    country = ((buyer or {}).get("country") or "").upper()
    if not country:
        return NO_TAX
    region = (buyer or {}).get("region") or ""
    if seller in EU_COUNTRIES and country in EU_COUNTRIES:
        if country == seller:
            return _as_treatment(rate_for(country, region, book))
        vat_ids = [tax_id for tax_id in buyer.get("tax_ids") or [] if tax_id.get("type") == "eu_vat"]
        if any(country_of(tax_id) != seller for tax_id in vat_ids):
            return Treatment(REVERSE_CHARGE_NAME, Decimal(0), False, REVERSE_CHARGE_NOTE)
        return _as_treatment(rate_for(seller, book=book))
    return _as_treatment(rate_for(country, region, book))


def line_tax(net: int, treatment: Treatment) -> int:
    """The tax of one line whose amount (after credit) is ``net``, rounded once, half up (away
    from zero, so a credit line's tax is exactly the negative of the matching charge's)."""
    if treatment.name is None or not treatment.percentage or not net:
        return 0
    # percentage = top / bottom exactly: the tax is net × top / (100 × bottom), or for a
    # price that includes it, net less net × 100 × bottom / (100 × bottom + top).
    top, bottom = treatment.percentage.as_integer_ratio()
    if treatment.inclusive:
        return net - round_ratio(net * 100 * bottom, 100 * bottom + top)
    return round_ratio(net * top, 100 * bottom)


def tax_lines(amounts: list[int], credits: int, treatment: Treatment) -> list[LineTax]:
    """Each line's share of the invoice's ``credits`` (in proportion to its amount, summing
    exactly) and its tax on what is left. Discount and credit-note lines are lines like any
    other: negative, so their tax is negative."""
    shares = allocate(credits, amounts) if credits else [0] * len(amounts)
    return [LineTax(share, line_tax(amount - share, treatment)) for amount, share in zip(amounts, shares, strict=True)]


@dataclass(frozen=True)
class Totals:
    subtotal: int  # the lines before discounts
    discount: int  # the discount lines, as a positive amount
    tax: int  # every line's tax, included or added
    total: int  # what is owed: the lines, less credit, plus the tax not included in them


def totals(amounts: list[int], kinds: list[str], credits: int, taxes: list[LineTax], inclusive: bool) -> Totals:
    discount = -sum(amount for amount, kind in zip(amounts, kinds, strict=True) if kind == "discount")
    tax = sum(line.tax for line in taxes)
    return Totals(
        subtotal=sum(amounts) + discount,
        discount=discount,
        tax=tax,
        total=sum(amounts) - credits + (0 if inclusive else tax),
    )


@dataclass(frozen=True)
class Estimate:
    """The tax a would-be invoice of these amounts gets (before any credit), for previews."""

    label: str | None
    tax: int
    inclusive: bool

    @property
    def added(self) -> int:
        return 0 if self.inclusive else self.tax


def estimate(buyer: dict | None, amounts: list[int]) -> Estimate:
    treatment = treatment_for(buyer)
    tax = sum(line.tax for line in tax_lines(amounts, 0, treatment))
    if treatment.name is None:
        return Estimate(None, 0, False)
    percent = f"{treatment.percentage.normalize():f}"
    return Estimate(f"{treatment.name} {percent}%", tax, treatment.inclusive)
