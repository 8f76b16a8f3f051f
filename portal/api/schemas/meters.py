"""Bodies of the meter routes (``portal/api/meters.py``): seed 003's meters, as the catalog
file and the console write them."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, Out, PageQuery, Pagination
from portal.models.usage import AGGREGATIONS

Aggregation = Literal[tuple(AGGREGATIONS)]  # type: ignore[valid-type]
MeterName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
EventName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
PropertyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
FILTER_DESCRIPTION = (
    'Seed 003\'s filter: {"conditions": [{"criteria": [{"field": "status", "operator": "equals", "value": "ok"}]}]}; '
    "conditions are OR'ed (at most 20), a condition's criteria AND'ed (1-20). `field` is a key of the "
    "event's properties, or quantity or name; `operator` one of equals, not_equals, in, not_in, contains, "
    "not_contains, gt, gte, lt, lte, exists, not_exists (in/not_in take a list, gt..lte a number, exists "
    "and not_exists no value). Omitted or null: every event of the name."
)
# Checked against the catalog's schema (portal.billing.catalog.MeterFilter) by the view, which
# words each problem; here only its type.
Filter = dict[str, Any]


class MeterIn(Body):
    # The pattern is checked with a message in words (portal/api/meters.py); here only a bound.
    key: Annotated[
        str, StringConstraints(max_length=64), WithJsonSchema({"type": "string", "pattern": "^[a-z][a-z0-9_]{1,63}$"})
    ] = Field(
        description="The plan feature it measures: a lowercase letter, then 1-63 lowercase letters, digits "
        "or _ (e.g. pipeline_runs). Never renamed."
    )
    name: MeterName
    event_name: EventName = Field(description="The eventName it counts, e.g. pipeline_run.")
    aggregation: Aggregation = "count"
    property: PropertyName | None = Field(
        None, description="A key of the events' properties to aggregate; omitted: the event's quantity."
    )
    filter: Filter | None = Field(None, description=FILTER_DESCRIPTION)


class MeterPatchIn(Body):
    name: MeterName | None = None
    event_name: EventName | None = None
    aggregation: Aggregation | None = None
    property: PropertyName | None = Field(None, description="null: aggregate the event's quantity.")
    filter: Filter | None = Field(None, description=FILTER_DESCRIPTION)


class MeterOut(Out):
    key: str
    name: str
    event_name: str
    aggregation: Aggregation
    property: str | None
    filter: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class MeterListOut(Out):
    meters: list[MeterOut]
    pagination: Pagination


class MeterListQuery(PageQuery):
    pass


class MeterDeletedOut(Out):
    meter: MeterOut
    deleted_at: datetime
    message: str
