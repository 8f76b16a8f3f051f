"""What the API's schemas share: the base classes of bodies, queries and responses, the
pagination block and ``page_of``, and the field types more than one resource uses."""

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from portal.infra.pagination import paginate
from portal.models import INVITABLE_ROLES
from portal.timezones import parse_instant

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
InvitableRole = Literal[tuple(INVITABLE_ROLES)]  # type: ignore[valid-type]
# What parse_instant takes: RFC 3339 with an upper-case T and Z, at most 40 characters.
INSTANT_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.+Z-]+$",
    "maxLength": 40,
}
IsoInstant = Annotated[datetime, BeforeValidator(parse_instant), WithJsonSchema(INSTANT_SCHEMA)]
# In a query string an empty value (``?start_time=``) means the parameter is not set.
QueryInstant = Annotated[
    datetime | None,
    BeforeValidator(lambda value: parse_instant(value) if value else None),
    WithJsonSchema({"anyOf": [INSTANT_SCHEMA, {"type": "string", "maxLength": 0}]}),
]

# Seed 000 writes money in major units as JSON numbers (``"monthly_cost_usd": 499.00``), and unit
# prices can be sub-cent. The services keep them as exact Decimals; on the wire they are JSON
# numbers, whose shortest form (499.0, 0.065) is exact for every amount this API can produce
# (far fewer than 15 significant digits).
ExactNumber = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]


class Body(BaseModel):
    """Request bodies: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


def exactly_one_of(*groups: tuple[str, ...]) -> dict:
    """``json_schema_extra`` for a body whose validator wants exactly one field of each group:
    the document says so (``oneOf`` of ``required``), so a client knows before it sends. The
    fields are then not nullable (``str = None``, not ``str | None``): ``null`` would count as
    sent in the document and as absent in the validator."""
    return {"allOf": [{"oneOf": [{"required": [name]} for name in group]} for group in groups]}


class Query(BaseModel):
    """Query strings arrive as text, so numbers are parsed (leniently) from it. A parameter the
    model does not name is refused, never ignored (the registry says which ones it knows): a
    filter the API silently dropped would answer with other tenants' data, or a whole table.

    A field may also be sent under the seeds' names: ``validation_alias=names("page_size",
    "limit")``, its own name first."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parameter_names(cls) -> dict[str, tuple[str, ...]]:
        """Each field's accepted names, its own first: ``{"page_size": ("page_size", "limit"), ...}``."""
        accepted = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            accepted[name] = tuple(alias.choices) if isinstance(alias, AliasChoices) else (name,)
        return accepted


def names(field: str, *aliases: str) -> AliasChoices:
    """The names a query field is accepted under: its own (the one the seeds' contract and the
    OpenAPI document lead with), then other seeds' names for it."""
    return AliasChoices(field, *aliases)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


OutT = TypeVar("OutT", bound=Out)


def out(model: type[OutT], source, **values) -> OutT:
    """``model`` filled from ``source``'s attributes of the same names; ``values`` give the
    fields it names otherwise, or computes."""
    return model(**{name: values[name] if name in values else getattr(source, name) for name in model.model_fields})


class Pagination(Out):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool


class PageQuery(Query):
    # Seed 003 pages with limit and an opaque cursor; this API pages by number, so its cursor
    # is a page number (the next one is page + 1 while pagination.has_next).
    page: int = Field(1, ge=1, le=100_000, validation_alias=names("page", "cursor"), description="Page number, from 1.")
    page_size: int = Field(
        50, ge=1, le=100, validation_alias=names("page_size", "limit"), description="Items per page, at most 100."
    )


class Message(Out):
    message: str


class QuotasOut(Out):
    monthly_pipeline_quota: int
    concurrent_pipeline_quota: int
    storage_quota_gb: int


def page_of(statement, query: PageQuery) -> tuple[list, Pagination]:
    """One page of ``statement`` (paged in SQL) and seed 000's pagination block for it."""
    page = paginate(statement, query.page, query.page_size)
    return page.items, Pagination(
        page=page.page,
        page_size=page.per_page,
        total_items=page.total,
        total_pages=max(page.pages, 1),
        has_next=page.has_next,
        has_previous=page.has_prev,
    )


def page_out(model: type[OutT], statement, query: PageQuery, item: Callable[[Any], Out]) -> OutT:
    """A list response: one page of ``statement``, each row as ``item(row)`` in ``model``'s one
    field besides ``pagination``, and the pagination block."""
    rows, pagination = page_of(statement, query)
    (field,) = model.model_fields.keys() - {"pagination"}
    return model(**{field: [item(row) for row in rows]}, pagination=pagination)
