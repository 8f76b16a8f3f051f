"""Entitlements (seed 002): may this tenant use this feature now, and how much is left.

Denied, with ``meta.reason``, when the tenant is suspended, its subscription has ended or is
unpaid, the plan lacks the feature, or the feature's hard limit (starter's quotas) is reached.
A simulation (``track``) asks whether ``usage_units`` more would still fit; it records nothing.

Checks are the API's hottest read, so what they read (a tenant's subscription terms, and each
meter's value for the period) is kept in the per-process cache of ``portal.infra.cache``
when it is on: a commit that changes the tenant or its subscription, or stores or deletes its
usage events, evicts it in every process at once (the TTL, API_KEY_CACHE_SECONDS, is only the
safety net). A warm check touches neither the database nor Redis.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from portal.infra import cache as key_cache
from portal.infra.transactions import autocommit_statements
from portal.models import Subscription
from portal.usage import api_requests
from portal.usage.meters import meters_by_key
from portal.usage.periods import current_period
from portal.usage.services import Terms, plan_features, tenant_terms, value_of

REASONS = {
    "TENANT_SUSPENDED": "The customer's account is suspended.",
    "NO_SUBSCRIPTION": "The customer has no subscription.",
    "SUBSCRIPTION_CANCELED": "The customer's subscription has been canceled.",
    "SUBSCRIPTION_UNPAID": "The customer's subscription is unpaid.",
    "FEATURE_NOT_IN_PLAN": "This feature is not included in the customer's plan.",
    # Seed 000's codes for its two hard quotas; any other hard limit is LIMIT_REACHED.
    "QUOTA_EXCEEDED": "Usage limit exceeded for this billing period.",
    "CONCURRENT_LIMIT_REACHED": "Concurrent limit reached.",
    "LIMIT_REACHED": "Usage limit exceeded for this billing period.",
}
LIMIT_CODES = {"pipeline_runs": "QUOTA_EXCEEDED", "concurrent_pipelines": "CONCURRENT_LIMIT_REACHED"}


@dataclass
class Decision:
    allowed: bool
    reason: str | None = None
    used: Decimal | None = None
    limit: Decimal | None = None
    requested: Decimal | None = None

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None or self.used is None:
            return None
        return max(self.limit - self.used, Decimal(0))

    @property
    def projected(self) -> Decimal | None:
        return None if self.requested is None or self.used is None else self.used + self.requested

    @property
    def would_exceed(self) -> bool:
        return self.limit is not None and self.projected is not None and self.projected > self.limit


def terms(ref: str, by_external_id: bool = True) -> Terms | None:
    """The tenant named by ``ref`` (its id, or also its external id) with its subscription."""
    return tenant_terms([ref], by_external_id, read_only=True).get(ref)


def _used(meter, feature, tenant_id: str, start: datetime, end: datetime) -> Decimal:
    """``value_of``, through the snapshot cache. API requests are counted in Redis until a job
    stores them, so that meter is always read afresh."""
    cache = key_cache.active_cache() if meter.event_name != api_requests.EVENT_NAME else None
    if cache is None:
        autocommit_statements()
        return value_of(meter, feature, tenant_id, start, end)
    # The meter's whole definition is in the name: an edited meter is a different value.
    name = f"used:{tenant_id}:{meter.model_dump_json()}:{feature.reset_mode}:{start.isoformat()}:{end.isoformat()}"
    cached = cache.load_snapshot(name, key_cache.ttl())
    if cached is not None:
        return cached
    generation = cache.snapshot_generation(usage=True)  # before the read: a change committed meanwhile wins
    autocommit_statements()
    used = value_of(meter, feature, tenant_id, start, end)
    cache.store_snapshot(name, tenant_id, used, generation, usage=True)
    return used


def decide(
    tenant_id: str,
    tenant_status: str,
    subscription: Subscription | Terms | None,
    feature_key: str,
    requested: Decimal | None = None,
) -> Decision:
    """The decision for one feature; ``requested`` units simulated on top of current usage."""
    if tenant_status == "suspended":
        return Decision(False, "TENANT_SUSPENDED", requested=requested)
    if subscription is None:
        return Decision(False, "NO_SUBSCRIPTION", requested=requested)
    if subscription.status == "canceled":
        return Decision(False, "SUBSCRIPTION_CANCELED", requested=requested)
    if subscription.status == "unpaid" or not subscription.is_live:
        return Decision(False, "SUBSCRIPTION_UNPAID", requested=requested)
    feature = next((f for f in plan_features(subscription.plan_version_id) if f.key == feature_key), None)
    if feature is None:
        return Decision(False, "FEATURE_NOT_IN_PLAN", requested=requested)
    meter = meters_by_key().get(feature_key)
    used = None
    if meter is not None:
        start, end = current_period(subscription)
        used = _used(meter, feature, tenant_id, start, end)
    decision = Decision(True, used=used, limit=feature.limit if used is not None else None, requested=requested)
    if decision.limit is not None:
        # Without a simulation the question is whether one more unit fits.
        over = decision.would_exceed if requested is not None else used >= decision.limit
        if over:
            decision.allowed = False
            decision.reason = LIMIT_CODES.get(feature_key, "LIMIT_REACHED")
    return decision
