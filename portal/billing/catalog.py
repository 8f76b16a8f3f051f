"""The plan catalog: the operator's file (``catalog.toml``) and the schema it must follow."""

import math
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from portal.billing.countries import COUNTRIES
from portal.billing.pricing import FeatureSpec

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.toml")


class CatalogError(ValueError):
    """The catalog file cannot be read or does not follow the schema; says where and why."""


class Quotas(BaseModel):
    """Seed 000's quota names, shown to tenants and enforced by the platform."""

    model_config = ConfigDict(extra="forbid")

    monthly_pipeline_quota: int = Field(ge=0)
    concurrent_pipeline_quota: int = Field(ge=0)
    storage_quota_gb: int = Field(ge=0)


class RateLimits(BaseModel):
    """API requests a tenant's keys may make (seed 000, per plan)."""

    model_config = ConfigDict(extra="forbid")

    per_minute: int = Field(ge=1)
    per_hour: int = Field(ge=1)

    @model_validator(mode="after")
    def _hour_covers_minute(self):
        if self.per_hour < self.per_minute:
            raise ValueError(f"per_hour ({self.per_hour}) is below per_minute ({self.per_minute})")
        return self


class PlanSpec(BaseModel):
    """One plan as the catalog file describes it; prices in minor units of ``currency``."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,63}$")
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    price: int = Field(ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    interval: Literal["month", "year"] = "month"
    trial_days: int = Field(default=0, ge=0, le=365)
    quotas: Quotas
    rate_limits: RateLimits
    features: list[FeatureSpec] = Field(default_factory=list)
    sort_order: int = 0
    public: bool = True

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("features")
    @classmethod
    def _unique_feature_keys(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        _refuse_repeats((feature.key for feature in features), "feature keys must be unique within a plan")
        return features


CriterionOperator = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "not_contains", "gt", "gte", "lt", "lte", "exists", "not_exists"
]
Aggregation = Literal["count", "sum", "unique_count", "max", "min", "avg", "first", "last"]


class Criterion(BaseModel):
    """One test of an event property (seed 003's criterion); ``field`` is a key of the event's
    properties, or ``quantity``/``name``."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=128)
    operator: CriterionOperator
    value: str | int | float | bool | list[str | int | float] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self):
        values = self.value if isinstance(self.value, list) else [self.value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            # JSON has no NaN or Infinity: such a filter could not even be stored.
            raise ValueError("value must hold finite numbers only")
        if self.operator in ("exists", "not_exists"):
            return self
        if self.value is None:
            raise ValueError(f"operator {self.operator} needs a value")
        if self.operator in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"operator {self.operator} needs a list of values")
        if self.operator in ("gt", "gte", "lt", "lte") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"operator {self.operator} needs a number")
        return self


class Condition(BaseModel):
    """Criteria that must all hold (AND)."""

    model_config = ConfigDict(extra="forbid")

    criteria: list[Criterion] = Field(min_length=1, max_length=20)


class MeterFilter(BaseModel):
    """Seed 003's filter: an event counts when any condition holds (OR); none: every event."""

    model_config = ConfigDict(extra="forbid")

    conditions: list[Condition] = Field(default_factory=list, max_length=20)


class MeterSpec(BaseModel):
    """How the plan feature ``key`` is measured: ``aggregation`` of ``property`` (the event's
    quantity when absent) over the events named ``event_name`` that pass ``filter``."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name: str = Field(min_length=1, max_length=100)
    event_name: str = Field(min_length=1, max_length=128)
    aggregation: Aggregation = "count"
    property: str | None = Field(default=None, min_length=1, max_length=128)
    filter: MeterFilter = Field(default_factory=MeterFilter)

    @model_validator(mode="after")
    def _property_fits_aggregation(self):
        if self.aggregation == "unique_count" and not self.property:
            raise ValueError("unique_count needs a property to count the distinct values of")
        if self.aggregation == "count" and self.property:
            raise ValueError("count counts events; leave property out (or use unique_count)")
        return self


class TaxRateSpec(BaseModel):
    """A tax rate: ``percentage`` of the line (a string, "19" or "8.1", kept exact) charged to
    buyers in ``country`` (and ``region``, when given); ``inclusive``: prices already hold it."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,63}$")
    name: str = Field(min_length=1, max_length=100)
    percentage: Decimal = Field(ge=0, lt=100, max_digits=7, decimal_places=4)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    region: str = Field(default="", max_length=100)
    inclusive: bool = False

    @field_validator("percentage", mode="before")
    @classmethod
    def _exact_percentage(cls, value):
        if isinstance(value, float):
            raise ValueError('write the percentage as a string ("19", "8.1"), not a TOML float')
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value not in COUNTRIES:
            raise ValueError(f"{value} is not an ISO 3166 country code")
        return value


class CatalogFile(BaseModel):
    """The whole catalog file: ``[[plans]]``, ``[[meters]]`` and ``[[tax_rates]]`` tables."""

    model_config = ConfigDict(extra="forbid")

    plans: list[PlanSpec] = Field(min_length=1)
    meters: list[MeterSpec] = Field(default_factory=list)
    tax_rates: list[TaxRateSpec] = Field(default_factory=list)

    @field_validator("tax_rates")
    @classmethod
    def _one_rate_per_place(cls, rates: list[TaxRateSpec]) -> list[TaxRateSpec]:
        _refuse_repeats((rate.key for rate in rates), "tax rate keys must be unique")
        _refuse_repeats(
            (f"{rate.country}/{rate.region.casefold()}" for rate in rates), "one tax rate per country and region"
        )
        return rates

    @field_validator("plans", "meters")
    @classmethod
    def _unique_keys(cls, specs: list, info: ValidationInfo) -> list:
        # "plans" -> "plan keys must be unique", "meters" -> "meter keys ..."
        _refuse_repeats((spec.key for spec in specs), f"{info.field_name.removesuffix('s')} keys must be unique")
        return specs


def _refuse_repeats(keys, rule: str) -> None:
    """``ValueError("<rule>; repeated: a, b")`` when a key comes more than once (each named once)."""
    seen, repeated = set(), []
    for key in keys:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    if repeated:
        raise ValueError(f"{rule}; repeated: {', '.join(repeated)}")


def _field_path(loc: tuple) -> str:
    """("plans", 1, "features", 0, "unit_price") -> "plans[1].features[0].unit_price"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "(file)"


def load_catalog(path: Path | str = DEFAULT_CATALOG_PATH) -> CatalogFile:
    """Read and validate a catalog file; any problem is a CatalogError naming the file and field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogError(f"{path}: cannot read the catalog: {error.strerror or error}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CatalogError(f"{path}: invalid TOML: {error}") from error
    try:
        return CatalogFile.model_validate(data)
    except ValidationError as error:
        problems = "\n".join(
            f"  {_field_path(problem['loc'])}: {problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors(include_url=False)
        )
        raise CatalogError(f"{path}: {error.error_count()} problem(s) in the catalog:\n{problems}") from error
