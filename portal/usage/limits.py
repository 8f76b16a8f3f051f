"""Hard limits at ingestion (seed 002's ``usageLimitExceeded``): which features with a hard
limit in the tenant's plan an event feeds, whether their usage has reached that limit, and
ingestion that refuses an event taking a feature past it (seed 000's ``QUOTA_EXCEEDED``).

Only a feature's hard ``limit`` counts, the one entitlement checks deny at: an included amount
beyond which usage is billed is no limit (quota notices and the usage API report those).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from portal.billing.catalog import MeterSpec
from portal.billing.pricing import FeatureSpec
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.transactions import savepoint
from portal.models import Tenant, utcnow
from portal.usage import ingest
from portal.usage.meters import meters_by_key, passes
from portal.usage.periods import current_period
from portal.usage.services import Terms, plan_features, value_of


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f") if number != 0 else "0"


@dataclass(frozen=True)
class LimitState:
    """A hard-limited feature's usage in the tenant's current period, after an ingestion."""

    feature_key: str
    unit_label: str
    used: Decimal
    limit: Decimal
    period_end: datetime

    @property
    def reached(self) -> bool:
        return self.used >= self.limit

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def message(self) -> str:
        verb = "exceeded" if self.exceeded else "reached"
        units = f" {self.unit_label}" if self.unit_label else ""
        return (
            f"Usage limit {verb} for feature '{self.feature_key}': "
            f"{_plain(self.used)} of {_plain(self.limit)}{units} this billing period."
        )


class LimitExceeded(ServiceError, status=429, code="QUOTA_EXCEEDED"):
    """An event that would take a hard-limited feature past its limit; nothing was stored."""

    def __init__(self, state: LimitState):
        units = f" {state.unit_label}" if state.unit_label else ""
        super().__init__(
            f"Usage limit exceeded for feature '{state.feature_key}': this event would take it to "
            f"{_plain(state.used)} of {_plain(state.limit)}{units} this billing period, so it was not recorded."
        )
        self.state = state


def _limited(terms: Terms | None) -> list[tuple[FeatureSpec, MeterSpec]]:
    """The hard-limited features of the tenant's live plan, with their meters."""
    if terms is None or terms.subscription is None or not terms.is_live:
        return []
    features = [feature for feature in plan_features(terms.plan_version_id) if feature.limit is not None]
    if not features:
        return []
    meters = meters_by_key()
    return [(feature, meters[feature.key]) for feature in features if feature.key in meters]


def _feeds(meter: MeterSpec, event: ingest.EventDraft) -> bool:
    """Whether the event counts in the meter (its name, the filter, the property it reads)."""
    if meter.event_name != event.name or not passes(meter.filter, event.name, event.quantity, event.properties):
        return False
    return meter.property is None or event.properties.get(meter.property) is not None


def _state(terms: Terms, feature: FeatureSpec, meter: MeterSpec) -> LimitState:
    start, end = current_period(terms)
    used = value_of(meter, feature, terms.tenant_id, start, end)
    return LimitState(feature.key, feature.unit_label, used, feature.limit, end)


def reached(outcomes: list[ingest.Outcome]) -> dict[int, list[LimitState]]:
    """For each accepted event (by its index) that feeds a hard-limited feature now at or past
    its limit, those features; usage is read after the events were stored, once per tenant and
    feature however many events of the request feed it."""
    measured: dict[tuple[str, str], LimitState] = {}
    result: dict[int, list[LimitState]] = {}
    for outcome in outcomes:
        if outcome.status != "accepted":
            continue
        for feature, meter in _limited(outcome.terms):
            if not _feeds(meter, outcome.draft):
                continue
            key = (outcome.tenant_id, feature.key)
            if key not in measured:
                measured[key] = _state(outcome.terms, feature, meter)
            if measured[key].reached:
                result.setdefault(outcome.index, []).append(measured[key])
    return result


def ingest_within_limits(raw: dict, header_key: str | None = None) -> tuple[ingest.Outcome, list[LimitState]]:
    """Store one event unless it takes a hard-limited feature it feeds past the limit: then
    nothing is stored and LimitExceeded says which. Returns the outcome and the features the
    event took to their limit. Concurrent calls for one tenant take turns (a row lock on the
    tenant that plain ingestion, which only reads it, does not wait for)."""
    now = utcnow()
    (outcome,) = ingest.validate([raw], now, header_key)
    if outcome.status != "valid":
        return outcome, []
    limited = [(feature, meter) for feature, meter in _limited(outcome.terms) if _feeds(meter, outcome.draft)]
    if not limited:
        ingest.store([outcome], now)
        return outcome, []
    db.session.execute(
        select(Tenant.tenant_id).where(Tenant.tenant_id == outcome.tenant_id).with_for_update(key_share=True)
    )
    with savepoint():
        ingest.store([outcome], now)
        if outcome.status != "accepted":  # a repeat: nothing new was counted
            return outcome, []
        states = [_state(outcome.terms, feature, meter) for feature, meter in limited]
        for state in states:
            if state.exceeded:
                raise LimitExceeded(state)  # the savepoint undoes the event and its roll-up
    return outcome, [state for state in states if state.reached]
