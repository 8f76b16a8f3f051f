"""Billing runs: every subscription whose period has ended (or whose dated upgrade is due) as
of an instant is renewed, each in its own transaction (DESIGN §6).

Safe to crash and re-run, and to run twice at once: a subscription's row is locked while it is
renewed, renewing moves its period forward, and the unique (subscription, kind, period_start)
constraint refuses a second invoice for a period whatever happens.
"""

import logging
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, lazyload

from portal.billing.subscriptions import renew, to_second
from portal.extensions import db
from portal.models import BILLABLE_STATUSES, BillingRun, PlanVersion, Subscription, utcnow
from portal.payments.services import charge_after_issue
from portal.tasks import commit, defer, rollback

log = logging.getLogger(__name__)
# How often the run's progress row is written: often enough for the console's live view,
# rarely enough not to double the run's writes.
PROGRESS_EVERY = 25
MAX_RECORDED_ERRORS = 100
# Subscriptions (with their tenants) read per query; each is still locked and checked alone.
LOAD_BATCH = 100


def due_subscription_ids(at: datetime) -> list[str]:
    return list(db.session.execute(
        select(Subscription.id)
        .where(Subscription.status.in_(BILLABLE_STATUSES))
        .where(or_(Subscription.current_period_end <= at, Subscription.scheduled_change_at <= at))
        .order_by(Subscription.current_period_end, Subscription.id)
    ).scalars())


def create_run(triggered_by: str, at: datetime | None = None) -> BillingRun:
    run = BillingRun(as_of=to_second(at), triggered_by=triggered_by[:254], status="queued")
    db.session.add(run)
    db.session.flush()
    return run


def request_run(triggered_by: str, at: datetime | None = None) -> BillingRun:
    """Record a run and hand it to the worker (inline in the embedded mode) after commit."""
    from jobs.billing import execute_billing_run

    run = create_run(triggered_by, at)
    # No RQ retry: a failed run is visible in the console, and re-running it is always safe.
    defer(execute_billing_run, run.id, retries=0, timeout=6 * 3600)
    return run


def _load(ids: list[str]) -> dict[str, Subscription]:
    """Subscriptions with their tenants, many per query (the run's bulk read, not locked)."""
    return {subscription.id: subscription for subscription in db.session.execute(
        select(Subscription).where(Subscription.id.in_(ids))
        .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
    ).scalars()}


def _lock(subscription_id: str, loaded: Subscription | None = None) -> Subscription | None:
    """The subscription, its row locked for this transaction and its state current.

    FOR UPDATE on PostgreSQL (a concurrent run waits, then sees the period already moved on);
    SQLite has one writer at a time anyway and ignores it. The lock reads only the row's
    ``updated_at``: when it matches the bulk-loaded copy, nothing has changed it since, and the
    copy is used; otherwise (another run or a user got there first) the row is read again.
    """
    subscriptions = Subscription.__table__
    if loaded is not None:
        stamp = db.session.connection().execute(
            select(subscriptions.c.updated_at).where(subscriptions.c.id == subscription_id).with_for_update()
        ).scalar_one_or_none()
        if stamp is not None and stamp == loaded.updated_at:
            return loaded
    # OF the subscription only: the tenant comes through a join, which is not locked. Plan
    # versions are not joined: execute() holds them all, and they never change.
    return db.session.execute(
        select(Subscription).where(Subscription.id == subscription_id)
        .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
        .with_for_update(of=Subscription).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def execute(run: BillingRun) -> BillingRun:
    """Run it to the end; a failing subscription is recorded and skipped, never fatal."""
    run_id, at = run.id, run.as_of
    run.status, run.started_at = "running", utcnow()
    ids = due_subscription_ids(at)
    run.subscriptions_due = len(ids)
    commit()
    totals: dict[str, int] = dict(run.totals or {})
    errors: list[dict] = list(run.errors or [])
    # Each subscription is re-read under its lock and plan versions are never edited, so the
    # per-subscription commits need not expire (and re-fetch) what the session holds. The
    # versions are loaded once and kept referenced: subscriptions find theirs without a query.
    session = db.session()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    versions = list(db.session.execute(select(PlanVersion)).scalars())
    try:
        done, billed, invoices = _renew_each(run_id, at, ids, totals, errors)
    finally:
        session.expire_on_commit = expire_on_commit
        del versions
    _retry_failed_payments(run_id, at)
    run = db.session.get(BillingRun, run_id)
    run.subscriptions_done, run.subscriptions_billed, run.invoices_created = done, billed, invoices
    run.totals, run.errors = totals, errors
    run.status, run.finished_at = "completed", utcnow()
    commit()
    return run


def _renew_each(run_id: str, at: datetime, ids: list[str], totals: dict[str, int], errors: list[dict]
                ) -> tuple[int, int, int]:
    """Each due subscription in its own transaction; returns (done, billed, invoices)."""
    done = billed = invoices = 0
    loaded: dict[str, Subscription] = {}
    for position, subscription_id in enumerate(ids, start=1):
        if subscription_id not in loaded:
            loaded = _load(ids[position - 1:position - 1 + LOAD_BATCH])
        try:
            subscription = _lock(subscription_id, loaded.get(subscription_id))
            issued = renew(subscription, at) if subscription is not None else []
            for invoice in issued:
                charge_after_issue(invoice)  # a job after this commit: no HTTP call inside it
            # Read here: after a failed commit (rolled back, so expired) they could not be read.
            amounts = [(invoice.currency, invoice.total) for invoice in issued]
            if position % PROGRESS_EVERY == 0:
                _progress(run_id, done + 1, billed + bool(issued), invoices + len(issued), totals, errors,
                          amounts)
            commit()
        except Exception as error:  # one bad subscription must not stop everyone else's billing
            rollback()
            log.exception("Billing run %s: subscription %s failed", run_id, subscription_id)
            if len(errors) < MAX_RECORDED_ERRORS:
                errors.append({"subscription_id": subscription_id, "error": f"{type(error).__name__}: {error}"})
            done += 1
            continue
        done += 1
        billed += bool(issued)
        invoices += len(issued)
        for currency, total in amounts:
            totals[currency] = totals.get(currency, 0) + total
    return done, billed, invoices


def _retry_failed_payments(run_id: str, at: datetime) -> None:
    """Dunning retries due as of the run's instant (so ``billing run --at`` travels them too)."""
    from portal.payments.dunning import retry_due

    try:
        retry_due(at)
        commit()
    except Exception:  # never lose the run's own results over a dunning problem
        rollback()
        log.exception("Billing run %s: dunning retries failed", run_id)


def _progress(run_id, done, billed, invoices, totals, errors, amounts) -> None:
    run = db.session.get(BillingRun, run_id)
    running_totals = dict(totals)
    for currency, total in amounts:
        running_totals[currency] = running_totals.get(currency, 0) + total
    run.subscriptions_done, run.subscriptions_billed, run.invoices_created = done, billed, invoices
    run.totals, run.errors = running_totals, list(errors)


def recent_runs(limit: int = 20) -> list[BillingRun]:
    return list(db.session.execute(select(BillingRun).order_by(BillingRun.created_at.desc()).limit(limit)).scalars())
