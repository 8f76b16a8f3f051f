"""Usage over the API: event ingestion and queries (operator; seeds 001/002/003), seed 000's
usage and usage history, and seed 002's entitlement checks."""

from datetime import datetime
from decimal import Decimal
from functools import partial

from flask import request
from sqlalchemy import or_, select

from portal.api.registry import OPERATOR, TENANT, ApiError, not_found, operation
from portal.api.schemas import common
from portal.api.schemas import usage as schemas
from portal.billing.pricing import feature_specs
from portal.errors import Conflict, ValidationFailed, json_error
from portal.extensions import db
from portal.infra.transactions import autocommit_statements, commit, defer, rollback
from portal.models import Tenant, UsageEvent, utcnow
from portal.usage import entitlements, ingest, limits
from portal.usage.meters import _event_values, last_event_at, meters_by_key
from portal.usage.periods import month_start, next_month, this_month
from portal.usage.quotas import CHECK_PENDING_SECONDS, check_key
from portal.usage.services import (
    Terms,
    feature_readings,
    plan_version_of,
    quota_event_names,
    subscription_for,
    value_of,
)

EVENT_TAGS = ["usage events"]
USAGE_TAGS = ["usage"]
ENTITLEMENT_TAGS = ["entitlements"]
USAGE_SCOPE = "usage:read"
MAX_HISTORY_MONTHS = 36

event_operation = partial(operation, auth=OPERATOR, tags=EVENT_TAGS)
# A tenant's own usage: open while the tenant is suspended.
usage_operation = partial(operation, scope=USAGE_SCOPE, tags=USAGE_TAGS, allowed_when_suspended=True)
entitlement_operation = partial(operation, auth=TENANT, tags=ENTITLEMENT_TAGS)


def event_out(event: UsageEvent) -> schemas.EventOut:
    return common.out(
        schemas.EventOut,
        event,
        event_id=event.id,
        ref=event.idempotency_key,
        event_name=event.name,
        quantity=event.quantity.normalize(),
        properties=event.properties or {},
        invoiced=event.invoice_id is not None,
    )


def _defer_quota_checks(outcomes) -> None:
    names: dict[str, set[str]] = {}
    terms: dict[str, Terms] = {}
    for outcome in outcomes:
        if outcome.status == "accepted":
            names.setdefault(outcome.tenant_id, set()).add(outcome.draft.name)
            terms[outcome.tenant_id] = outcome.terms  # as validation read them: no second lookup
    for tenant_id in sorted(names):
        # Only a live subscription has quotas to check, and only events that feed one of its
        # quota'd features can cross a threshold.
        subscription = terms[tenant_id].subscription
        if (
            subscription is None
            or not subscription.is_live
            or not names[tenant_id] & quota_event_names(subscription.plan_version_id)
        ):
            continue
        # A tenant sending a thousand events a second gets one check queued at a time, not one each.
        defer("jobs.usage.check_quotas", tenant_id, retries=1, once=(check_key(tenant_id), CHECK_PENDING_SECONDS))


def _one_statement_writes() -> None:
    """On PostgreSQL ingestion writes the events and their roll-ups in one statement, atomic on
    its own: without a transaction around it, the hour's roll-up row, which every concurrent
    ingestion for the tenant updates, is locked for that statement only, not until a COMMIT
    round trip later. (SQLite's ingestion takes two statements, inside one transaction.)"""
    if db.engine.dialect.name == "postgresql":
        autocommit_statements()


def _result(outcome) -> schemas.EventResultOut:
    return common.out(schemas.EventResultOut, outcome, ref=outcome.key)


# --- ingestion -----------------------------------------------------------------------------


def _limit_message(states) -> str | None:
    return " ".join(state.message for state in states) or None


def _quota_exceeded(error: limits.LimitExceeded):
    """Seed 000's 429 QUOTA_EXCEEDED; the wait is until the billing period (and the limit) renews."""
    retry = max(int((error.state.period_end - utcnow()).total_seconds()), 1)
    return json_error(
        429,
        error.message,
        error.error_code,
        retry_after=retry,
        feature=error.state.feature_key,
        limit=float(error.state.limit),
    )


@event_operation(
    "POST",
    "/events",
    response=schemas.EventIngestOut,
    status=201,
    errors=[404],
    cached_auth=True,
    links={target: {"ref": "$response.body#/ref"} for target in ("get_event", "delete_event")},
    also_succeeds={200: "a repeat of an idempotency key already stored (`duplicate: true`)"},
)
def post_event(principal, body: schemas.EventIn):
    """Record one usage event for a tenant (idempotent per tenant and key)

    201 when stored. A repeat of an idempotency key already stored for the tenant answers 200 with
    `duplicate: true` and the original `event_id` (concurrent repeats store one event).
    `X-Idempotency-Key` overrides the body's key. Unknown tenant: 404. An event of a suspended
    tenant is still recorded. `usageLimitExceeded` (seed 002) says the event took a feature with a
    hard limit in the tenant's plan to that limit or past it. With `enforce: true` an event that
    would take such a feature past its limit is refused: 429 `QUOTA_EXCEEDED` (seed 000), nothing
    stored, `Retry-After` until the billing period renews.
    """
    raw = body.model_dump(exclude_unset=True)
    enforce = raw.pop("enforce", False)
    # From the environ: request.headers raises and catches a KeyError when it is not sent (most events).
    header_key = request.environ.get("HTTP_X_IDEMPOTENCY_KEY", "").strip() or None
    if header_key is not None and len(header_key) > ingest.MAX_KEY:
        raise ValidationFailed(
            f"X-Idempotency-Key is longer than {ingest.MAX_KEY} characters.", field="X-Idempotency-Key"
        )
    if enforce:
        try:
            outcome, reached = limits.ingest_within_limits(raw, header_key)
        except limits.LimitExceeded as error:
            rollback()
            return _quota_exceeded(error)
    else:
        _one_statement_writes()
        outcome = ingest.ingest([raw], header_key=header_key)[0]
        reached = limits.reached([outcome]).get(outcome.index, [])
    if outcome.status == "rejected":
        if outcome.reason.startswith("unknown tenant"):
            raise ApiError(404, "RESOURCE_NOT_FOUND", f"Customer not found: {outcome.reason}.")
        raise ValidationFailed(outcome.reason[0].upper() + outcome.reason[1:] + ".", field=outcome.field)
    _defer_quota_checks([outcome])
    commit()
    notice = schemas.LimitNoticeOut(usageLimitExceeded=bool(reached), message=_limit_message(reached))
    return (
        schemas.EventIngestOut(
            success=True,
            event_id=outcome.event_id,
            usageEventId=outcome.event_id,
            duplicate=outcome.status == "duplicate",
            tenant_id=outcome.tenant_id,
            ref=outcome.key,
            usageLimitExceeded=notice.usageLimitExceeded,
            message=notice.message,
            data=notice,
        ),
        200 if outcome.status == "duplicate" else 201,
    )


@event_operation("POST", "/events/batch", response=schemas.EventBatchOut, cached_auth=True)
def post_event_batch(principal, body: schemas.EventBatchIn):
    """Record up to 1,000 usage events; valid ones are stored even when others are rejected

    Each event gets a result: `accepted`, `duplicate` (with the stored event's id) or `rejected`
    with the reason. One INSERT for the whole batch. An accepted event that feeds a feature with a
    hard limit that is, after the batch, reached or exceeded has `usageLimitExceeded: true` and a
    `message` (seed 002); it is recorded all the same.
    """
    _one_statement_writes()
    outcomes = ingest.ingest(body.events)
    reached = limits.reached(outcomes)
    _defer_quota_checks(outcomes)
    commit()
    counts = {status: sum(o.status == status for o in outcomes) for status in ("accepted", "duplicate", "rejected")}
    # EventBatchOut's JSON, written out: a thousand result models cost more than storing the events.
    return {
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "results": [
            {
                "index": o.index,
                "status": o.status,
                "event_id": o.event_id,
                "tenant_id": o.tenant_id,
                "ref": o.key,
                "reason": o.reason,
                "field": o.field,
                "usageLimitExceeded": o.index in reached,
                "message": _limit_message(reached.get(o.index, ())),
            }
            for o in outcomes
        ],
    }, 200


@event_operation("POST", "/events/dry-run")
def post_event_dry_run(principal, body: schemas.EventBatchIn) -> schemas.EventDryRunOut:
    """Validate up to 1,000 events and show the meters they feed, without storing anything"""
    outcomes = ingest.validate(body.events)
    meters = list(meters_by_key().values())
    results = []
    for outcome in outcomes:
        matched = []
        if outcome.draft is not None:
            event = outcome.draft
            for meter in meters:
                if meter.event_name != event.name:
                    continue
                values = list(_event_values(meter, [(event.quantity, event.properties)]))
                if values or meter.aggregation == "count" and not meter.filter.conditions:
                    value = (
                        Decimal(1)
                        if meter.aggregation in ("count", "unique_count")
                        else (
                            Decimal(str(values[0])) if values and not isinstance(values[0], dict | list | str) else None
                        )
                    )
                    matched.append(schemas.MeterValueOut(key=meter.key, value=value))
        results.append(schemas.DryRunResultOut(**_result(outcome).model_dump(), meters=matched))
    valid = sum(o.status == "valid" for o in outcomes)
    return schemas.EventDryRunOut(valid=valid, rejected=len(outcomes) - valid, results=results)


# --- queries -------------------------------------------------------------------------------


def _tenant_id_of(ref: str | None) -> str | None:
    if ref is None:
        return None
    tenant_id = db.session.execute(
        select(Tenant.tenant_id).where(or_(Tenant.tenant_id == ref, Tenant.external_id == ref))
    ).scalar()
    if tenant_id is None:
        not_found("Customer")
    return tenant_id


@event_operation("GET", "/events", errors=[404])
def list_events(principal, query: schemas.EventListQuery) -> schemas.EventListOut:
    # An end not after the start matches no event (the filters below say so on their own).
    """Query events by time range, name and tenant, oldest first (paginated)"""
    start, end = query.start_time, query.end_time
    statement = select(UsageEvent)
    if (tenant_id := _tenant_id_of(query.tenant_id)) is not None:
        statement = statement.where(UsageEvent.tenant_id == tenant_id)
    if query.event_name:
        statement = statement.where(UsageEvent.name == query.event_name)
    if start is not None:
        statement = statement.where(UsageEvent.occurred_at >= start)
    if end is not None:
        statement = statement.where(UsageEvent.occurred_at < end)
    statement = statement.order_by(UsageEvent.occurred_at, UsageEvent.id)
    return common.page_out(schemas.EventListOut, statement, query, event_out)


def _events_tenant(principal, tenant_ref: str | None) -> str | None:
    """Whose events a request may reach: an operator names any tenant (None: every one); a
    tenant key reaches its own only, and naming another tenant finds nothing (404)."""
    if principal.is_operator:
        return _tenant_id_of(tenant_ref)
    own = principal.api_key.tenant  # columns only (may be the key cache's detached copy)
    if own.status == "cancelled" or (tenant_ref is not None and tenant_ref not in (own.tenant_id, own.external_id)):
        not_found("Customer")
    return own.tenant_id


@operation(
    "GET",
    "/events/<except('batch', 'dry-run', 'delete-by-refs'):ref>",
    auth=TENANT,
    scope=USAGE_SCOPE,
    tags=EVENT_TAGS,
    errors=[409],
)
def get_event(principal, ref: str, query: schemas.EventRefQuery) -> schemas.EventOut:
    """Get one event by its ref: its event id or its idempotency key

    An operator token finds any tenant's event; a tenant key only its own (another tenant's ref:
    404). Idempotency keys are unique per tenant: when an operator's ref is the key of events of
    several tenants, 409 `AMBIGUOUS_REF` asks for `tenant_id`.
    """
    event = ingest.find(ref, _events_tenant(principal, query.tenant_id))
    if event is None:
        not_found("Event")
    return event_out(event)


@event_operation("DELETE", "/events/<except('batch', 'dry-run', 'delete-by-refs'):ref>", errors=[409])
def delete_event(principal, ref: str, query: schemas.EventRefQuery) -> schemas.EventDeletedOut:
    """Delete one event by its ref (event id or idempotency key) unless it is invoiced

    An invoiced event is kept: 409. Refs are found as by GET /events/{ref} (409 `AMBIGUOUS_REF` when
    a key names events of several tenants: give `tenant_id`).
    """
    result = ingest.delete_by_refs([ref], _tenant_id_of(query.tenant_id))
    if result.ambiguous:
        raise ingest.AmbiguousRef(ref)
    if result.invoiced:
        raise Conflict(f"Event {ref} is invoiced; invoiced events are kept.")
    if not result.deleted:
        not_found("Event")
    deleted = event_out(result.deleted[0])
    commit()
    return schemas.EventDeletedOut(event=deleted, message=f"Event {deleted.event_id} deleted.")


@event_operation("POST", "/events/delete-by-refs", errors=[404])
def delete_events(principal, body: schemas.DeleteByRefsIn) -> schemas.DeleteByRefsOut:
    """Delete events that are not invoiced yet; invoiced and unknown ones are reported

    Each ref is an event id or an idempotency key, of any tenant unless `tenant_id` is given. A key
    that names events of several tenants is reported in `ambiguous` and kept.
    """
    result = ingest.delete_by_refs(body.refs, _tenant_id_of(body.tenant_id))
    deleted = [event_out(event) for event in result.deleted]
    commit()
    return schemas.DeleteByRefsOut(
        deleted=deleted, invoiced=result.invoiced, not_found=result.not_found, ambiguous=result.ambiguous
    )


# --- usage (seed 000) ----------------------------------------------------------------------


def _percent(used: Decimal, quota) -> float:
    return round(float(used / Decimal(quota) * 100), 1) if quota else 0.0


SEED_000_FEATURES = ("pipeline_runs", "concurrent_pipelines", "storage_gb", "compute_hours", "api_requests")


def _month_usage(tenant_id: str, version, start: datetime, meters=None, known: dict | None = None) -> dict:
    """Seed 000's five figures for a month; ``known`` ones (already measured) are not read again."""
    end = next_month(start)
    meters = meters_by_key() if meters is None else meters
    features = {f.key: f for f in feature_specs(version)} if version is not None else {}
    values = {}
    for key in SEED_000_FEATURES:
        meter = meters.get(key)
        if known is not None and key in known:
            values[key] = known[key]
        else:
            values[key] = value_of(meter, features.get(key), tenant_id, start, end) if meter else Decimal(0)
    return values


@usage_operation("GET", "/tenants/<tenant_id>/usage")
def get_usage(principal, tenant: Tenant, query: schemas.UsageQuery) -> schemas.UsageOut:
    """Usage of one calendar month with the plan's quotas and how much of them is used"""
    autocommit_statements()  # reads only
    start = month_start(query.month) if query.month else this_month()
    end = next_month(start)
    tenant_id = tenant.tenant_id
    subscription = subscription_for(tenant_id)
    version = plan_version_of(subscription, tenant.subscription_plan)
    quotas = (version.quotas if version is not None else None) or {}
    meters = meters_by_key()
    # Every feature read together (one statement for the roll-up meters, one for levels).
    features = feature_readings(tenant_id, version, start, end, meters)[0] if version is not None else []
    values = _month_usage(tenant_id, version, start, meters, {f.key: f.used for f in features})
    run_meter = meters.get("pipeline_runs")
    last_run = last_event_at(tenant_id, run_meter.event_name, start, end) if run_meter else None
    return schemas.UsageOut(
        tenant_id=tenant_id,
        usage_month=f"{start:%Y-%m}",
        pipelines_run_count=int(values["pipeline_runs"]),
        pipelines_running_count=int(values["concurrent_pipelines"]),
        storage_used_gb=values["storage_gb"],
        compute_hours=values["compute_hours"],
        api_requests_count=int(values["api_requests"]),
        last_pipeline_run_at=last_run,
        quota_reset_at=end,
        quotas=common.QuotasOut(
            monthly_pipeline_quota=quotas.get("monthly_pipeline_quota", 0),
            concurrent_pipeline_quota=quotas.get("concurrent_pipeline_quota", 0),
            storage_quota_gb=quotas.get("storage_quota_gb", 0),
        ),
        usage_percentages=schemas.UsagePercentagesOut(
            pipelines=_percent(values["pipeline_runs"], quotas.get("monthly_pipeline_quota")),
            concurrent=_percent(values["concurrent_pipelines"], quotas.get("concurrent_pipeline_quota")),
            storage=_percent(values["storage_gb"], quotas.get("storage_quota_gb")),
        ),
        features=[
            schemas.FeatureUsageOut(
                key=f.key,
                name=f.name,
                unit_label=f.unit_label,
                used=f.used,
                quota=f.quota,
                percent=f.percent,
                hard_limit=f.hard_limit,
            )
            for f in features
        ],
    )


@usage_operation(
    "GET",
    "/tenants/<tenant_id>/usage/history",
    description=f"At most {MAX_HISTORY_MONTHS} months: the newest of a longer range. A start_month after "
    "end_month is an empty history.",
)
def get_usage_history(principal, tenant: Tenant, query: schemas.UsageHistoryQuery) -> schemas.UsageHistoryOut:
    """Usage per calendar month, newest first (default: the last six months)"""
    end = month_start(query.end_month, "end_month") if query.end_month else this_month()
    start = month_start(query.start_month, "start_month") if query.start_month else next_month(end, -5)
    # A range is answered as far as it goes: none of its months when it ends before it starts,
    # the newest MAX_HISTORY_MONTHS of a longer one (as the document says; no schema can say
    # "after that other parameter", so neither is a 400 a client could not have foreseen).
    months = max(min((end.year - start.year) * 12 + end.month - start.month + 1, MAX_HISTORY_MONTHS), 0)
    start = next_month(end, 1 - months)
    version = plan_version_of(subscription_for(tenant.tenant_id), tenant.subscription_plan)
    history = []
    for index in range(months - 1, -1, -1):
        month = next_month(start, index)
        values = _month_usage(tenant.tenant_id, version, month)
        history.append(
            schemas.UsageHistoryMonthOut(
                month=f"{month:%Y-%m}",
                pipelines_run=int(values["pipeline_runs"]),
                storage_used_gb=values["storage_gb"],
                compute_hours=values["compute_hours"],
                api_requests=int(values["api_requests"]),
            )
        )
    return schemas.UsageHistoryOut(tenant_id=tenant.tenant_id, history=history)


# --- entitlements (seed 002) ---------------------------------------------------------------


def _entitled_tenant(principal, ref: str) -> Terms:
    """The tenant ``ref`` names, with its subscription's terms; a tenant key sees only its own
    tenant (others: 404)."""
    if not principal.is_operator:
        tenant = principal.api_key.tenant  # columns only (may be the key cache's detached copy)
        if ref not in (tenant.tenant_id, tenant.external_id):
            not_found("Customer")
        ref = tenant.tenant_id
    terms = entitlements.terms(ref, by_external_id=principal.is_operator)
    if terms is None or terms.tenant_status == "cancelled":
        not_found("Customer")
    return terms


def _entitlement(principal, ref: str, feature_key: str, requested: Decimal | None, flow_id: str | None = None):
    terms = _entitled_tenant(principal, ref)
    decision = entitlements.decide(terms.tenant_id, terms.tenant_status, terms.subscription, feature_key, requested)
    data = schemas.EntitlementOut(
        referenceCustomerId=ref, featureKey=feature_key, isAllowed=decision.allowed, flowId=flow_id
    )
    if decision.reason:
        data.meta = schemas.EntitlementMetaOut(
            reason=schemas.ReasonOut(code=decision.reason, description=entitlements.REASONS[decision.reason])
        )
    if decision.used is not None:
        data.usage = schemas.EntitlementUsageOut(used=decision.used, limit=decision.limit, remaining=decision.remaining)
        if requested is not None:
            projected_remaining = None if decision.limit is None else decision.limit - decision.projected
            data.simulation = schemas.SimulationOut(
                requestedUsage=requested,
                projectedUsage=decision.projected,
                projectedRemaining=projected_remaining,
                wouldExceedLimit=decision.would_exceed,
            )
    return schemas.EntitlementEnvelopeOut(success=True, data=data)


@entitlement_operation("GET", "/entitlements/<customer_ref>/<feature_key>")
def check_entitlement(principal, customer_ref: str, feature_key: str) -> schemas.EntitlementEnvelopeOut:
    """May the tenant use this feature now? isAllowed, the reason when not, and its usage

    `customer_ref` is a tenant_id or external id. An operator token checks any tenant; a tenant key
    only its own (another tenant: 404). Denied reasons (`meta.reason.code`): TENANT_SUSPENDED,
    NO_SUBSCRIPTION, SUBSCRIPTION_CANCELED, SUBSCRIPTION_UNPAID, FEATURE_NOT_IN_PLAN,
    QUOTA_EXCEEDED, CONCURRENT_LIMIT_REACHED, LIMIT_REACHED.
    """
    return _entitlement(principal, customer_ref, feature_key, None)


@entitlement_operation("POST", "/entitlements", errors=[404], cached_auth=True)
def evaluate_entitlement(principal, body: schemas.EntitlementIn) -> schemas.EntitlementEnvelopeOut:
    """Evaluate an entitlement, optionally simulating track.usageUnits more (nothing is recorded)

    With `track`, `simulation` says whether `usageUnits` (default 1) more would still fit the limit,
    and `isAllowed` answers for that amount. Same auth and reasons as the GET check.
    """
    requested = Decimal(str(body.track.usageUnits)).normalize() if body.track is not None else None
    return _entitlement(
        principal, body.customerReferenceId, body.featureKey, requested, body.context.flowId if body.context else None
    )
