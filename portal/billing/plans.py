"""The plan catalog in the database: synced from the catalog file, read by everything else."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal.billing.catalog import PlanSpec
from portal.errors import NotFound
from portal.extensions import db
from portal.models import BILLABLE_STATUSES, Plan, PlanVersion, Subscription

# What a new version is made of: a change to any of these is a new price list, never an edit.
VERSIONED_FIELDS = ("price", "currency", "interval", "trial_days", "quotas", "rate_limits", "features")


@dataclass
class SyncResult:
    created: list[str]
    new_versions: list[str]
    unchanged: list[str]


def _version_values(spec: PlanSpec) -> dict:
    data = spec.model_dump(mode="json")
    return {field: data[field] for field in VERSIONED_FIELDS}


def sync_catalog(specs: list[PlanSpec]) -> SyncResult:
    """Bring the database in line with the catalog file; running it twice changes nothing."""
    result = SyncResult([], [], [])
    for spec in specs:
        plan = db.session.execute(select(Plan).where(Plan.key == spec.key)).scalar_one_or_none()
        values = _version_values(spec)
        if plan is None:
            plan = Plan(key=spec.key, versions=[])
            db.session.add(plan)
            result.created.append(spec.key)
        plan.name, plan.description = spec.name, spec.description
        plan.sort_order, plan.public = spec.sort_order, spec.public
        latest = plan.versions[-1] if plan.versions else None
        if latest is not None and all(getattr(latest, field) == values[field] for field in VERSIONED_FIELDS):
            result.unchanged.append(spec.key)
            continue
        if latest is not None:
            result.new_versions.append(spec.key)
        plan.versions.append(PlanVersion(version=(latest.version + 1) if latest else 1, **values))
    db.session.flush()
    return result


def list_plans(public_only: bool = False) -> list[Plan]:
    # Each plan with its versions in the same statement (the plan cards read them).
    statement = select(Plan).options(joinedload(Plan.versions)).order_by(Plan.sort_order, Plan.key)
    if public_only:
        statement = statement.where(Plan.public.is_(True))
    return list(db.session.execute(statement).unique().scalars())


def plan_keys() -> list[str]:
    return [plan.key for plan in list_plans()]


def current_version(plan_key: str) -> PlanVersion:
    """The version a new subscriber (or a plan change) gets today."""
    plan = db.session.execute(select(Plan).where(Plan.key == (plan_key or "").strip())).scalar_one_or_none()
    if plan is None or not plan.versions:
        known = ", ".join(plan_keys()) or "none (run `flask --app wsgi catalog sync`)"
        # Like any id that names nothing: not found (a private plan too, for a key that may not see it).
        raise NotFound(f"Unknown plan {plan_key!r}. Plans: {known}.", field="plan")
    return plan.current_version


def subscriber_counts() -> dict[str, int]:
    """plan_version_id -> live subscriptions, for the operator's catalog page."""
    rows = db.session.execute(
        select(Subscription.plan_version_id, func.count())
        .where(Subscription.status.in_(BILLABLE_STATUSES))
        .group_by(Subscription.plan_version_id)
    )
    return dict(rows.all())
