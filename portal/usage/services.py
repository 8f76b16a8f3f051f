"""A tenant's usage per plan feature over a window, with its quota: what the usage API, the
usage page, entitlements, quota notices and the billing run all read."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, or_, select

from portal.billing.catalog import MeterSpec
from portal.billing.plans import current_version
from portal.billing.pricing import FeatureSpec, feature_specs
from portal.errors import NotFound
from portal.extensions import db
from portal.infra import cache as key_cache
from portal.infra.transactions import autocommit_statements
from portal.models import PlanVersion, Subscription, Tenant, UsageEvent
from portal.models.billing import BILLABLE_STATUSES
from portal.usage import api_requests
from portal.usage.meters import Reading, meter_value, meter_values, meters_by_key, read_window

# Seed 000's quota names for the features they limit.
QUOTA_OF_FEATURE = {
    "pipeline_runs": "monthly_pipeline_quota",
    "concurrent_pipelines": "concurrent_pipeline_quota",
    "storage_gb": "storage_quota_gb",
}


@dataclass
class FeatureUsage:
    key: str
    name: str
    unit_label: str
    used: Decimal
    # The quota shown and warned about: the feature's hard limit, else seed 000's quota (an
    # included amount beyond which usage is billed); None: unlimited.
    quota: Decimal | None
    hard_limit: bool
    pricing: str

    @property
    def percent(self) -> float | None:
        if not self.quota:
            return None
        return round(float(self.used / self.quota * 100), 1)

    @property
    def remaining(self) -> Decimal | None:
        return None if self.quota is None else max(self.quota - self.used, Decimal(0))


def quota_of(feature: FeatureSpec, quotas: dict) -> Decimal | None:
    if feature.limit is not None:
        return feature.limit
    name = QUOTA_OF_FEATURE.get(feature.key)
    return Decimal(quotas[name]) if name and quotas.get(name) is not None else None


_KNOWN = "portal_usage_values"


def _since(feature: FeatureSpec | None, start: datetime) -> datetime | None:
    return None if feature is not None and feature.reset_mode == "accumulate" else start


@contextmanager
def values_known(windows: list[tuple[MeterSpec, FeatureSpec | None, str, datetime, datetime]]) -> Iterator[None]:
    """Read these (meter, feature, tenant_id, start, end) usage values in a few statements (one
    per meter, and one Redis round trip), for ``value_of`` to answer from: a billing run's batch
    asks for every subscription's closed period. What cannot be read so is asked one by one."""
    by_meter: dict[str, tuple[MeterSpec, list[tuple[str, datetime | None, datetime]]]] = {}
    for meter, feature, tenant_id, start, end in windows:
        by_meter.setdefault(meter.key, (meter, []))[1].append((tenant_id, _since(feature, start), end))
    known: dict[tuple, Decimal] = {}
    waiting = None
    for meter, meter_windows in by_meter.values():
        values = meter_values(meter, meter_windows)
        if values is None:
            continue
        if meter.event_name == api_requests.EVENT_NAME and meter.aggregation in ("sum", "count"):
            if waiting is None:
                waiting = api_requests.pending_counts(sorted({tenant_id for _, _, tenant_id, _, _ in windows}))
            if waiting is None:
                continue
            values = [
                value + api_requests.in_window(waiting.get(tenant_id, {}), since, end)
                for value, (tenant_id, since, end) in zip(values, meter_windows, strict=True)
            ]
        for value, (tenant_id, since, end) in zip(values, meter_windows, strict=True):
            known[(meter.key, tenant_id, since, end)] = value
    db.session.info[_KNOWN] = known
    try:
        yield
    finally:
        db.session.info.pop(_KNOWN, None)


def value_of(meter: MeterSpec, feature: FeatureSpec | None, tenant_id: str, start: datetime, end: datetime) -> Decimal:
    """One feature's usage; an ``accumulate`` feature (storage) counts from the beginning."""
    since = _since(feature, start)
    known = db.session.info.get(_KNOWN)
    if known is not None and (meter.key, tenant_id, since, end) in known:
        return known[(meter.key, tenant_id, since, end)]
    value = meter_value(meter, tenant_id, since, end)
    if meter.event_name == api_requests.EVENT_NAME and meter.aggregation in ("sum", "count"):
        value += api_requests.pending(tenant_id, since, end)
    return value


def feature_usage(
    tenant_id: str,
    version: PlanVersion,
    start: datetime,
    end: datetime,
    only: set[str] | None = None,
    meters: dict[str, MeterSpec] | None = None,
) -> list[FeatureUsage]:
    """Usage of each metered feature of ``version`` over [start, end)."""
    meters = meters_by_key() if meters is None else meters
    quotas = version.quotas or {}
    result = []
    for feature in feature_specs(version):
        meter = meters.get(feature.key)
        if meter is None or (only is not None and feature.key not in only):
            continue
        result.append(
            FeatureUsage(
                key=feature.key,
                name=feature.name,
                unit_label=feature.unit_label,
                used=value_of(meter, feature, tenant_id, start, end),
                quota=quota_of(feature, quotas),
                hard_limit=feature.limit is not None,
                pricing=feature.pricing,
            )
        )
    return result


def feature_readings(
    tenant_id: str, version: PlanVersion, start: datetime, end: datetime, meters: dict[str, MeterSpec]
) -> tuple[list[FeatureUsage], dict[str, Reading]]:
    """What ``feature_usage`` gives, plus each feature's days, for a page: every feature read
    together (``read_window``), so the statements do not grow with the plan's features."""
    quotas = version.quotas or {}
    features = [feature for feature in feature_specs(version) if feature.key in meters]
    readings = read_window({f.key: meters[f.key] for f in features}, tenant_id, start, end)
    result = []
    for feature in features:
        meter, reading = meters[feature.key], readings[feature.key]
        if feature.reset_mode == "accumulate":
            # Counted from the beginning: a level is the last reading, in the window or before it.
            used = (
                (reading.value if reading.daily else reading.opening)
                if meter.aggregation == "last"
                else value_of(meter, feature, tenant_id, start, end)
            )
        else:
            used = reading.value
            if meter.event_name == api_requests.EVENT_NAME and meter.aggregation in ("sum", "count"):
                used += api_requests.pending(tenant_id, start, end)
        result.append(
            FeatureUsage(
                key=feature.key,
                name=feature.name,
                unit_label=feature.unit_label,
                used=used,
                quota=quota_of(feature, quotas),
                hard_limit=feature.limit is not None,
                pricing=feature.pricing,
            )
        )
    return result, readings


_plan_terms: dict[str, tuple[tuple[FeatureSpec, ...], dict]] = {}


def _plan_terms_of(plan_version_id: str) -> tuple[tuple[FeatureSpec, ...], dict]:
    """A plan version's features and quotas, read once per process: versions are never edited
    (a change is a new version with a new id)."""
    terms = _plan_terms.get(plan_version_id)
    if terms is None:
        version = db.session.get(PlanVersion, plan_version_id)
        terms = (tuple(feature_specs(version)), dict(version.quotas or {})) if version is not None else ((), {})
        if len(_plan_terms) >= 1000:
            _plan_terms.clear()
        _plan_terms[plan_version_id] = terms
    return terms


def plan_features(plan_version_id: str) -> tuple[FeatureSpec, ...]:
    return _plan_terms_of(plan_version_id)[0]


def quota_event_names(plan_version_id: str) -> set[str]:
    """The names of the events that feed a feature with a quota in this plan version: only
    those can take a tenant across a quota threshold."""
    features, quotas = _plan_terms_of(plan_version_id)
    meters = meters_by_key()
    return {meters[f.key].event_name for f in features if f.key in meters and quota_of(f, quotas)}


def plan_version_of(subscription: Subscription | None, plan_key: str) -> PlanVersion | None:
    if subscription is not None:
        return subscription.plan_version

    try:
        return current_version(plan_key)
    except NotFound:
        return None


def subscription_for(tenant_id: str) -> Subscription | None:
    """By tenant id, never through a (possibly detached, cached) tenant's relationships."""
    return db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one_or_none()


def has_usage(tenant_id: str) -> bool:
    return (
        db.session.execute(select(UsageEvent.id).where(UsageEvent.tenant_id == tenant_id).limit(1)).first() is not None
    )


@dataclass(frozen=True)
class Terms:
    """What ingestion and entitlement checks read of a tenant and its subscription: the columns,
    not the entities. Stands in for the Subscription where ``current_period`` takes one."""

    tenant_id: str
    tenant_status: str
    status: str | None  # the subscription's; None without one
    plan_version_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None

    @property
    def is_live(self) -> bool:
        return self.status in BILLABLE_STATUSES

    @property
    def subscription(self) -> "Terms | None":
        return self if self.status is not None else None


_tenants, _subscriptions = Tenant.__table__, Subscription.__table__
_TERMS_COLUMNS = select(
    _tenants.c.tenant_id,
    _tenants.c.status,
    _subscriptions.c.status,
    _subscriptions.c.plan_version_id,
    _subscriptions.c.current_period_start,
    _subscriptions.c.current_period_end,
    _tenants.c.external_id,
).outerjoin(_subscriptions, _subscriptions.c.tenant_id == _tenants.c.tenant_id)
_TERMS_BY_ID = _TERMS_COLUMNS.where(_tenants.c.tenant_id.in_(bindparam("refs", expanding=True)))
_TERMS_BY_ID_OR_EXTERNAL_ID = _TERMS_COLUMNS.where(
    or_(
        _tenants.c.tenant_id.in_(bindparam("refs", expanding=True)),
        _tenants.c.external_id.in_(bindparam("refs", expanding=True)),
    )
)


def tenant_terms(refs: Iterable[str], by_external_id: bool = True, read_only: bool = False) -> dict[str, Terms]:
    """ref -> the tenant it names (by id, or also by external id; cancelled ones included)
    with its subscription's terms. Ingestion and entitlement checks ask on every request, so
    answers are kept in the per-process cache of ``portal.infra.cache`` (evicted at once
    by any commit that changes the tenant or its subscription); the rest is one query.
    ``read_only``: the request only reads, so that query needs no transaction."""
    cache = key_cache.active_cache()
    kind = "terms:1:" if by_external_id else "terms:0:"
    found: dict[str, Terms] = {}
    missing = []
    for ref in refs:
        cached = cache.load_snapshot(kind + ref, key_cache.ttl()) if cache is not None else None
        if cached is None:
            missing.append(ref)
        else:
            found[ref] = cached
    if not missing:
        return found
    if read_only:  # the caller only reads: no transaction (and none at all on a warm cache)
        autocommit_statements()
    generation = cache.snapshot_generation(usage=False) if cache is not None else 0  # before the read
    wanted = set(missing)
    rows = db.session.connection().execute(
        _TERMS_BY_ID_OR_EXTERNAL_ID if by_external_id else _TERMS_BY_ID, {"refs": missing}
    )
    for *columns, external_id in rows:
        terms = Terms(*columns)
        for ref in {terms.tenant_id, external_id} & wanted:
            if ref == external_id and not by_external_id:
                continue
            found[ref] = terms
            if cache is not None:
                cache.store_snapshot(kind + ref, terms.tenant_id, terms, generation)
    return found
