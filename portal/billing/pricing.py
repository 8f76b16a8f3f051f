"""How a plan's feature is priced (seed 002's models plus volume and package) and what its usage costs.

Prices are in minor units. Unit prices may be sub-cent ``Decimal``s; each invoice line is
computed exactly and rounded once, half-up (DESIGN §3).
"""

import decimal
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from portal.billing.money import format_amount, round_half_up

PricingModel = Literal["included", "per_unit", "graduated", "volume", "package"]

# The fields that say what a unit costs, and which of them each pricing model needs.
PRICE_FIELDS = ("unit_price", "tiers", "package_size", "package_price")
NEEDS: dict[str, tuple[str, ...]] = {
    "included": (),
    "per_unit": ("unit_price",),
    "graduated": ("tiers",),
    "volume": ("tiers",),
    "package": ("package_size", "package_price"),
}


class Tier(BaseModel):
    """A band of usage up to ``up_to`` units (None: no upper bound) at ``unit_price`` each."""

    model_config = ConfigDict(extra="forbid")

    up_to: Decimal | None = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    flat_fee: int = Field(default=0, ge=0)

    @field_validator("up_to", mode="before")
    @classmethod
    def _inf_is_unbounded(cls, value):
        # Seed 002 writes the last tier's bound as the string "inf".
        if isinstance(value, str) and value.strip().lower() == "inf":
            return None
        return value


class FeatureSpec(BaseModel):
    """A feature of a plan: what it is called, how much of it is included, and what more costs."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name: str = Field(min_length=1)
    description: str = ""
    unit_label: str = "units"
    pricing: PricingModel
    included_units: Decimal = Field(default=Decimal(0), ge=0)
    # Most usage allowed per period (None: unlimited); enforced by entitlements, not priced here.
    limit: Decimal | None = Field(default=None, ge=0)
    reset_mode: Literal["reset", "accumulate"] = "reset"
    unit_price: Decimal | None = Field(default=None, ge=0)
    tiers: list[Tier] = Field(default_factory=list)
    package_size: int | None = Field(default=None, ge=1)
    package_price: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _fields_match_pricing(self):
        needed = NEEDS[self.pricing]
        given = [name for name in PRICE_FIELDS if getattr(self, name) not in (None, [])]
        problems = []
        if missing := [name for name in needed if name not in given]:
            problems.append(f"{self.pricing} pricing needs {', '.join(missing)}")
        if unused := [name for name in given if name not in needed]:
            problems.append(f"{self.pricing} pricing does not use {', '.join(unused)}")
        if self.tiers and not problems:
            problems.extend(_tier_problems(self.tiers))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _tier_problems(tiers: list[Tier]) -> list[str]:
    problems = []
    if tiers[-1].up_to is not None:
        problems.append('the last tier must be unbounded (up_to = "inf")')
    previous = Decimal(0)
    for index, tier in enumerate(tiers[:-1]):
        if tier.up_to is None:
            problems.append(f"only the last tier may be unbounded, not tiers[{index}]")
            break
        if tier.up_to <= previous:
            problems.append(f"tiers must ascend: tiers[{index}].up_to ({tier.up_to}) is not above {previous}")
        previous = tier.up_to
    return problems


@dataclass(frozen=True)
class Charge:
    """One invoice line: ``amount`` is ``quantity × unit_amount`` rounded once, half-up."""

    description: str
    quantity: Decimal
    unit_amount: Decimal  # minor units, may be sub-cent
    amount: int  # minor units


def _checked_quantity(quantity: Decimal) -> Decimal:
    # A float usage total has already lost exactness; callers convert with Decimal(str(x)).
    if isinstance(quantity, bool) or not isinstance(quantity, Decimal | int):
        raise TypeError(f"quantity must be a Decimal or int, not {type(quantity).__name__}")
    quantity = Decimal(quantity)
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"usage quantity must be a finite number >= 0, got {quantity}")
    return quantity


def _number(value: Decimal) -> str:
    """1250 -> "1,250", 127.50 -> "127.5"."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _line(description: str, quantity: Decimal, unit_amount: Decimal) -> Charge:
    # Fractions keep the product exact however many digits it has, so the one rounding is the only one.
    amount = round_half_up(Fraction(quantity) * Fraction(unit_amount))
    return Charge(description, quantity, unit_amount, amount)


def _band(lower: Decimal, upper: Decimal | None) -> str:
    if upper is None:
        # A single unbounded tier is no band at all.
        return f"over {_number(lower)}" if lower else ""
    return f"up to {_number(upper)}" if lower == 0 else f"{_number(lower)}–{_number(upper)}"


def _notes(*notes: str) -> str:
    return f" ({'; '.join(note for note in notes if note)})" if any(notes) else ""


def _included(feature: FeatureSpec, word: str = "first") -> str:
    return f"{word} {_number(feature.included_units)} included" if feature.included_units else ""


def _per_unit(feature: FeatureSpec, billable: Decimal, currency: str) -> list[Charge]:
    price = format_amount(feature.unit_price, currency)
    description = f"{feature.name}: {_number(billable)} {feature.unit_label} × {price}{_notes(_included(feature))}"
    return [_line(description, billable, feature.unit_price)]


def _package(feature: FeatureSpec, billable: Decimal, currency: str) -> list[Charge]:
    size, package_price = feature.package_size, Decimal(feature.package_price)
    # A started package is a whole package.
    packages = -(-Fraction(billable) // size)
    description = (
        f"{feature.name}: {packages:,} × {size:,} {feature.unit_label} at {format_amount(package_price, currency)}"
        + _notes(f"{_number(billable)} {feature.unit_label}", _included(feature))
    )
    return [_line(description, Decimal(packages), package_price)]


def _bands(tiers: list[Tier]):
    """(lower, tier) for each tier; a tier covers lower < units <= tier.up_to."""
    lower = Decimal(0)
    for tier in tiers:
        yield lower, tier
        lower = tier.up_to


def _graduated(feature: FeatureSpec, billable: Decimal, currency: str) -> list[Charge]:
    # Each tier prices only the units inside it, and adds its flat fee once it is reached.
    lines = []
    for lower, tier in _bands(feature.tiers):
        if billable <= lower:
            break
        units = billable - lower if tier.up_to is None else min(billable, tier.up_to) - lower
        band = _band(lower, tier.up_to)
        # Tiers count units beyond the included ones; said once, on the first line.
        note = _notes(band, "" if lines else _included(feature, "after"))
        price = format_amount(tier.unit_price, currency)
        lines.append(
            _line(f"{feature.name}: {_number(units)} {feature.unit_label} × {price}{note}", units, tier.unit_price)
        )
        if tier.flat_fee:
            lines.append(_line(f"{feature.name}: flat fee{_notes(band)}", Decimal(1), Decimal(tier.flat_fee)))
    return lines


def _volume(feature: FeatureSpec, billable: Decimal, currency: str) -> list[Charge]:
    # The one tier the whole quantity falls into prices every unit.
    lower, tier = next(
        (lower, tier) for lower, tier in _bands(feature.tiers) if tier.up_to is None or billable <= tier.up_to
    )
    band = _band(lower, tier.up_to)
    band = f"volume tier {band}" if band else ""
    price = format_amount(tier.unit_price, currency)
    note = _notes(band, _included(feature, "after"))
    lines = [
        _line(f"{feature.name}: {_number(billable)} {feature.unit_label} × {price}{note}", billable, tier.unit_price)
    ]
    if tier.flat_fee:
        lines.append(_line(f"{feature.name}: flat fee{_notes(band)}", Decimal(1), Decimal(tier.flat_fee)))
    return lines


PRICERS = {"per_unit": _per_unit, "package": _package, "graduated": _graduated, "volume": _volume}


def usage_charges(feature: FeatureSpec, quantity: Decimal, *, currency: str = "USD") -> list[Charge]:
    """The invoice lines for one period's usage of ``feature``; none when nothing is billable.

    Tiers and packages count billable units, i.e. usage beyond ``included_units``. A tier's flat
    fee is a line of its own (quantity 1), so every line still reads quantity × unit price.
    ``currency`` only labels the prices in the descriptions.
    """
    quantity = _checked_quantity(quantity)
    # Exact decimal arithmetic for the tier bands: the default 28 digits could round silently.
    with decimal.localcontext(prec=decimal.MAX_PREC):
        billable = max(quantity - feature.included_units, Decimal(0))
        if feature.pricing == "included" or billable == 0:
            return []
        return PRICERS[feature.pricing](feature, billable, currency)


def usage_total(feature: FeatureSpec, quantity: Decimal) -> int:
    """What one period's usage of ``feature`` costs, in minor units."""
    return sum(charge.amount for charge in usage_charges(feature, quantity))


def feature_specs(version) -> list[FeatureSpec]:
    """A plan version's features as validated specs (the model stores them as JSON)."""
    return [FeatureSpec.model_validate(feature) for feature in version.features or []]
