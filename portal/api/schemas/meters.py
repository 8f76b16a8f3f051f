"""Bodies of the meter routes (``portal/api/meters.py``): seed 003's meters, as the catalog
file and the console write them."""

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from portal.api.schemas.common import Body, Out, PageQuery, Pagination
from portal.billing.catalog import CriterionOperator
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
_VALUE = {"type": ["string", "number", "boolean"]}
_LIST = {"type": "array", "items": {"type": ["string", "number"]}}
# portal.billing.catalog.MeterFilter and Criterion, for the document: the view checks a filter
# against them and words each problem.
_CRITERION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["field", "operator"],
    "properties": {
        "field": {"type": "string", "minLength": 1, "maxLength": 128},
        "operator": {"enum": list(get_args(CriterionOperator))},
        "value": {"anyOf": [_VALUE, _LIST, {"type": "null"}]},
    },
    "allOf": [
        {
            "if": {"properties": {"operator": {"enum": ["in", "not_in"]}}},
            "then": {"required": ["value"], "properties": {"value": _LIST}},
        },
        {
            "if": {"properties": {"operator": {"enum": ["gt", "gte", "lt", "lte"]}}},
            "then": {"required": ["value"], "properties": {"value": {"type": "number"}}},
        },
        {
            "if": {"properties": {"operator": {"enum": ["equals", "not_equals", "contains", "not_contains"]}}},
            "then": {"required": ["value"], "properties": {"value": {"anyOf": [_VALUE, _LIST]}}},
        },
    ],
}
FILTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "conditions": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["criteria"],
                "properties": {"criteria": {"type": "array", "minItems": 1, "maxItems": 20, "items": _CRITERION}},
            },
        }
    },
}
Filter = Annotated[dict[str, Any], WithJsonSchema(FILTER_SCHEMA)]


def _aggregation_rules(schema: dict) -> None:
    """MeterSpec's rule, for the document: unique_count needs a property, count takes none."""
    schema["allOf"] = [
        {
            "if": {"required": ["aggregation"], "properties": {"aggregation": {"const": "unique_count"}}},
            "then": {"required": ["property"], "properties": {"property": {"type": "string"}}},
        },
        {
            # Without an aggregation (a new meter's is count) or with count.
            "if": {"properties": {"aggregation": {"const": "count"}}},
            "then": {"properties": {"property": {"type": "null"}}},
        },
    ]


def _patch_aggregation_rules(schema: dict) -> None:
    """The same, where both are sent; with the meter's own values the change may conflict (409)."""
    schema["allOf"] = [
        {
            "if": {"required": ["aggregation"], "properties": {"aggregation": {"const": "unique_count"}}},
            "then": {"properties": {"property": {"type": "string"}}},
        },
        {
            "if": {"required": ["aggregation"], "properties": {"aggregation": {"const": "count"}}},
            "then": {"properties": {"property": {"type": "null"}}},
        },
    ]


class MeterIn(Body):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_aggregation_rules)

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
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_patch_aggregation_rules)

    name: MeterName = None
    event_name: EventName = None
    aggregation: Aggregation = None
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
