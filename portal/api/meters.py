"""Meters over the API (seed 003; operator tokens): list, create, read, change and delete the
meters that turn usage events into plan features' quantities, as the console does."""

from functools import partial

from pydantic import ValidationError

from portal.api.registry import OPERATOR, ApiError, not_found, operation
from portal.api.schemas import common
from portal.api.schemas import meters as schemas
from portal.billing.catalog import MeterSpec
from portal.infra.transactions import commit
from portal.models import Meter, utcnow
from portal.usage import meters

TAGS = ["meters"]
meter_operation = partial(operation, auth=OPERATOR, tags=TAGS)
KEY_RULE = "key must be a lowercase letter, then 1-63 lowercase letters, digits or underscores (e.g. pipeline_runs)"


def meter_out(meter: Meter) -> schemas.MeterOut:
    return common.out(schemas.MeterOut, meter, filter=meter.filter or {})


def _spec(values: dict) -> MeterSpec:
    """The meter as the catalog's schema takes it; its rules (a property for unique_count, none
    for count, a value fitting each filter operator) answered as a 400 naming the field."""
    try:
        return MeterSpec.model_validate(values)
    except ValidationError as error:
        errors = []
        for problem in error.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in problem["loc"]) or None
            message = KEY_RULE if field == "key" else problem["msg"].removeprefix("Value error, ")
            errors.append({"field": field, "message": message})
        first = errors[0]
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        raise ApiError(400, "VALIDATION_ERROR", detail, errors) from None


def _spec_refuses(body: schemas.MeterPatchIn) -> bool:
    """Whether the fields sent break MeterSpec's rule among themselves (else only with the meter's)."""
    sent = body.model_dump(exclude_unset=True)
    aggregation, prop = sent.get("aggregation"), sent.get("property", "unsent")
    return (aggregation == "count" and prop not in (None, "unsent")) or (aggregation == "unique_count" and prop is None)


def _meter_or_404(key: str) -> Meter:
    meter = meters.get_meter(key)
    if meter is None:
        not_found("Meter")
    return meter


@meter_operation("GET", "/meters")
def list_meters(principal, query: schemas.MeterListQuery) -> schemas.MeterListOut:
    """List the meters, by key (paginated)"""
    return common.page_out(schemas.MeterListOut, meters.meters_statement(), query, meter_out)


@meter_operation(
    "POST",
    "/meters",
    status=201,
    errors=[409],
    links={target: {"key": "$response.body#/key"} for target in ("get_meter", "update_meter", "delete_meter")},
)
def create_meter(principal, body: schemas.MeterIn) -> schemas.MeterOut:
    """Create a meter: how a plan feature (key) is measured from events

    409 when a meter with that key exists. A meter of the catalog file is written back by its next
    `catalog sync`.
    """
    spec = _spec(body.model_dump(exclude_none=True))
    meter = meters.create_meter(principal.actor(), spec)
    commit()
    return meter_out(meter)


@meter_operation("GET", "/meters/<key>")
def get_meter(principal, key: str) -> schemas.MeterOut:
    """Get one meter by its key"""
    return meter_out(_meter_or_404(key))


@meter_operation("PATCH", "/meters/<key>", errors=[409])
def update_meter(principal, key: str, body: schemas.MeterPatchIn) -> schemas.MeterOut:
    """Change a meter's name, event, aggregation, property or filter (the key stays)

    Usage is read through the changed meter from then on, the current period included (events are
    kept, not re-read into invoices already issued).
    """
    meter = _meter_or_404(key)
    values = meters.spec_of(meter).model_dump()
    for field in body.model_fields_set:
        value = getattr(body, field)
        values[field] = ({} if value is None else value) if field == "filter" else value
    try:
        spec = _spec(values)
    except ApiError as error:
        if any(problem["field"] is None for problem in error.errors) and not _spec_refuses(body):
            # The change is fine on its own but not with what the meter already is (a property
            # sent to a count meter): a conflict with its state, not a malformed request.
            raise ApiError(
                409, "CONFLICT", f"{error.message} (with the meter's current settings)", error.errors
            ) from None
        raise
    meters.update_meter(principal.actor(), meter, spec)
    commit()
    return meter_out(meter)


@meter_operation("DELETE", "/meters/<key>", errors=[409])
def delete_meter(principal, key: str) -> schemas.MeterDeletedOut:
    """Delete a meter no plan measures a feature by

    409 while a plan's current version, or the version a subscription is on, has a feature with this
    key: its usage (and what is billed or limited by it) would silently read as none. Take the
    feature out of the plans first. The events are kept. A meter that is in the catalog file comes
    back with the next `catalog sync`.
    """
    meter = _meter_or_404(key)
    deleted = meter_out(meter)
    meters.delete_meter(principal.actor(), meter)
    commit()
    return schemas.MeterDeletedOut(meter=deleted, deleted_at=utcnow(), message=f"Meter {deleted.key} deleted.")
