"""Quota notices: at 90 % and at 100 % of a feature's quota in a period, the tenant's owner and
admins get one email each, and the tenant's webhook endpoints ``quota.approaching_limit`` or
``quota.exceeded`` (a unique row per tenant, feature, period and threshold makes it once, even
when two ingestions cross the line together)."""

import logging
from decimal import Decimal

from portal.extensions import db
from portal.infra.bulk import dialect_insert
from portal.infra.queues import database_key
from portal.mail import send_email
from portal.models import QuotaNotice, Tenant
from portal.models.base import new_id, utcnow
from portal.team.services import owner_and_admin_emails
from portal.usage.periods import current_period
from portal.usage.services import FeatureUsage, feature_usage, subscription_for
from portal.webhooks import outbox

log = logging.getLogger(__name__)

THRESHOLDS = (90, 100)
# One queued check per tenant stands for every ingestion until it starts (see tasks.defer's
# ``once``); a check lost before starting frees the way after this long.
CHECK_PENDING_SECONDS = 60


def check_key(tenant_id: str) -> str:
    return database_key(f"once:quota-check:{tenant_id}")


def _claim(tenant_id: str, usage: FeatureUsage, period_start, threshold: int) -> bool:
    """Insert the notice row unless it exists; True when this call inserted it."""
    statement = (
        dialect_insert(QuotaNotice.__table__)
        .values(
            id=new_id("qn"),
            tenant_id=tenant_id,
            feature_key=usage.key,
            period_start=period_start,
            threshold=threshold,
            used=usage.used,
            limit=usage.quota,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "feature_key", "period_start", "threshold"])
        .returning(QuotaNotice.__table__.c.id)
    )
    return db.session.connection().execute(statement).first() is not None


def _recipients(tenant_id: str) -> list[str]:
    return owner_and_admin_emails(tenant_id)


def check_quotas(tenant_id: str) -> list[tuple[str, int]]:
    """Send what the tenant's usage has newly crossed; returns (feature, threshold) notified."""
    tenant = db.session.get(Tenant, tenant_id)
    subscription = subscription_for(tenant_id)
    if tenant is None or subscription is None or not subscription.is_live:
        return []
    start, end = current_period(subscription)
    sent = []
    for usage in feature_usage(tenant_id, subscription.plan_version, start, end):
        if not usage.quota or usage.quota <= 0:
            continue
        crossed = [t for t in THRESHOLDS if usage.used * 100 >= usage.quota * Decimal(t)]
        # Every crossed threshold is claimed (a jump straight past 100 % claims 90 % too), and
        # only the highest newly claimed one is worth an email.
        new = [t for t in crossed if _claim(tenant_id, usage, start, t)]
        if not new:
            continue
        threshold = max(new)
        _notify(tenant, usage, threshold, start, end)
        sent.append((usage.key, threshold))
    return sent


def _notify(tenant: Tenant, usage: FeatureUsage, threshold: int, period_start, resets_at) -> None:
    exceeded = threshold >= 100
    subject = f"{usage.name}: quota reached" if exceeded else f"{usage.name}: {threshold}% of your quota used"
    for email in _recipients(tenant.tenant_id):
        send_email(
            email,
            subject,
            "quota_warning",
            tenant=tenant,
            usage=usage,
            threshold=threshold,
            exceeded=exceeded,
            resets_at=resets_at,
            company=tenant.company_name,
        )
    outbox.emit(
        tenant.tenant_id,
        "quota.exceeded" if exceeded else "quota.approaching_limit",
        {
            "feature": usage.key,
            "usage_percentage": usage.percent,
            "used": float(usage.used),
            "quota": float(usage.quota),
            "unit": usage.unit_label,
            "period_start": period_start.isoformat(),
            "period_end": resets_at.isoformat(),
        },
    )
    log.info("Quota notice %s%% for %s of %s", threshold, usage.key, tenant.tenant_id)
