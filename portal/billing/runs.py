"""Billing runs: every subscription whose period has ended (or whose dated upgrade is due) as
of an instant is renewed, each in its own transaction (DESIGN §6).

Safe to crash and re-run, and to run twice at once: a subscription's row is locked while it is
renewed, renewing moves its period forward, and the unique (subscription, kind, period_start)
constraint refuses a second invoice for a period whatever happens.

A run "as of" a future instant is a preview unless BILLING_TEST_CLOCK is on: each subscription
is renewed as the run would, its figures read, and its transaction rolled back, so nothing is
billed, moved on or charged. A running run writes a heartbeat as it goes; one whose heartbeat
has stopped lost its process, is shown as stalled, and ``resume`` carries it on.
"""

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import joinedload, lazyload

from portal.billing import credits, notices
from portal.billing.invoices import BILLING
from portal.billing.payments.dunning import retry_due
from portal.billing.payments.services import charge_after_issue
from portal.billing.subscriptions import renew, to_second
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.infra.transactions import commit, defer, rollback
from portal.models import BILLABLE_STATUSES, BillingRun, Invoice, PlanVersion, Subscription, utcnow
from portal.usage.api_request_events import flush

log = logging.getLogger(__name__)
# How often the run's progress row (and heartbeat) is written: often enough for the console's
# live view, rarely enough not to double the run's writes; and at least this often in seconds,
# however slow the subscriptions, so that a live run is never taken for a stalled one.
PROGRESS_EVERY = 25
HEARTBEAT_EVERY_SECONDS = 10
MAX_RECORDED_ERRORS = 100
# A preview lists this many of the subscriptions it would bill (its totals count them all).
PREVIEW_ITEMS = 100
# Subscriptions (with their tenants) read per query; each is still locked and checked alone.
LOAD_BATCH = 100


def due_subscription_ids(at: datetime) -> list[str]:
    return list(
        db.session.execute(
            select(Subscription.id)
            .where(Subscription.status.in_(BILLABLE_STATUSES))
            .where(or_(Subscription.current_period_end <= at, Subscription.scheduled_change_at <= at))
            .order_by(Subscription.current_period_end, Subscription.id)
        ).scalars()
    )


def is_preview(as_of: datetime) -> bool:
    """A run as of this instant only previews: it is in the future and there is no test clock.
    Billing ahead of time would move live subscriptions into the future, date invoices ahead
    and charge cards for them."""
    return to_second(as_of) > to_second(None) and not current_app.config["BILLING_TEST_CLOCK"]


def create_run(triggered_by: str, at: datetime | None = None) -> BillingRun:
    as_of = to_second(at)
    run = BillingRun(as_of=as_of, triggered_by=triggered_by[:254], status="queued", preview=is_preview(as_of))
    db.session.add(run)
    db.session.flush()
    return run


def request_run(triggered_by: str, at: datetime | None = None) -> BillingRun:
    """Record a run and hand it to the worker (inline in the embedded mode) after commit."""
    run = create_run(triggered_by, at)
    # No RQ retry: a failed run is visible in the console, and re-running it is always safe.
    defer("jobs.billing.execute_billing_run", run.id, retries=0, timeout=6 * 3600)
    return run


def stalled(run: BillingRun, now: datetime | None = None) -> bool:
    """Running, but silent for longer than BILLING_RUN_STALLED_AFTER_SECONDS: its process died."""
    if run.status != "running":
        return False
    last = run.heartbeat_at or run.started_at or run.created_at
    timeout = timedelta(seconds=current_app.config["BILLING_RUN_STALLED_AFTER_SECONDS"])
    return (now or utcnow()) - last > timeout


def shown_status(run: BillingRun) -> str:
    """The status an operator needs: a running run whose heartbeat stopped is "stalled"."""
    return "stalled" if stalled(run) else run.status


def claim_stalled(run_id: str) -> BillingRun:
    """Take over a stalled run: its heartbeat is set afresh under the row's lock, so a second
    resume (another operator, the CLI) finds it alive and is refused."""
    run = db.session.get(BillingRun, run_id, with_for_update=True, populate_existing=True)
    if run is None:
        raise NotFound("There is no such billing run.")
    if not stalled(run):
        if run.finished:
            raise Conflict(f"This billing run has {run.status}; there is nothing to resume.")
        if run.status == "queued":
            raise Conflict("This billing run has not started yet; a worker will pick it up.")
        raise Conflict(
            "This billing run is still running: its last heartbeat was "
            f"{int((utcnow() - (run.heartbeat_at or run.started_at)).total_seconds())} seconds ago."
        )
    run.heartbeat_at = utcnow()
    log.info("Billing run %s: stalled since %s, claimed to resume", run.id, run.heartbeat_at)
    return run


def request_resume(run_id: str) -> BillingRun:
    """Claim a stalled run and hand its resumption to the worker (inline in the embedded mode)."""
    run = claim_stalled(run_id)
    defer("jobs.billing.resume_billing_run", run.id, retries=0, timeout=6 * 3600)
    return run


def _load(ids: list[str]) -> dict[str, Subscription]:
    """Subscriptions with their tenants, many per query (the run's bulk read, not locked)."""
    return {
        subscription.id: subscription
        for subscription in db.session.execute(
            select(Subscription)
            .where(Subscription.id.in_(ids))
            .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
        ).scalars()
    }


def _lock(subscription_id: str, loaded: Subscription | None = None) -> Subscription | None:
    """The subscription, its row locked for this transaction and its state current.

    FOR UPDATE on PostgreSQL (a concurrent run waits, then sees the period already moved on);
    SQLite has one writer at a time anyway and ignores it. The lock reads only the row's
    ``updated_at``: when it matches the bulk-loaded copy, nothing has changed it since, and the
    copy is used; otherwise (another run or a user got there first) the row is read again.
    """
    subscriptions = Subscription.__table__
    if loaded is not None:
        stamp = (
            db.session.connection()
            .execute(select(subscriptions.c.updated_at).where(subscriptions.c.id == subscription_id).with_for_update())
            .scalar_one_or_none()
        )
        if stamp is not None and stamp == loaded.updated_at:
            return loaded
    # OF the subscription only: the tenant comes through a join, which is not locked. Plan
    # versions are not joined: execute() holds them all, and they never change.
    return db.session.execute(
        select(Subscription)
        .where(Subscription.id == subscription_id)
        .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
        .with_for_update(of=Subscription)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def execute(run: BillingRun) -> BillingRun:
    """Run it to the end; a failing subscription is recorded and skipped, never fatal.

    A large run on PostgreSQL is split into shards renewed by forked processes at once (the
    per-subscription work is mostly Python, so one process leaves cores idle); each shard adds
    its figures to the run's row as it goes, so the console's progress is the sum of all.
    """
    run_id, at, preview = run.id, run.as_of, run.preview
    if not preview:
        # API requests still counted in Redis become events first, so the run bills them.
        flush()
    run = db.session.get(BillingRun, run_id)
    now = utcnow()
    run.status, run.started_at, run.heartbeat_at = "running", now, now
    ids = due_subscription_ids(at)
    run.subscriptions_due = len(ids)
    commit()
    return _carry_out(run_id, at, preview, ids)


def resume(run: BillingRun) -> BillingRun:
    """Carry a stalled run (claimed with ``claim_stalled``) on to the end.

    What is still due as of its instant is renewed; what the dead process had renewed is not
    due any more, and the unique (subscription, kind, period_start) constraint would refuse it
    anyway. Its figures are counted afresh from the invoices it issued, since its last progress
    report may have been up to PROGRESS_EVERY subscriptions behind. A preview wrote nothing to
    count from: it starts over.
    """
    run_id, at, preview = run.id, run.as_of, run.preview
    if not preview:
        flush()
    run = db.session.get(BillingRun, run_id, with_for_update=True, populate_existing=True)
    ids = due_subscription_ids(at)
    if preview:
        run.subscriptions_due, run.subscriptions_done = len(ids), 0
        run.subscriptions_billed, run.invoices_created, run.totals = 0, 0, {}
        run.errors, run.preview_items = [], []
    else:
        run.subscriptions_billed, run.invoices_created, run.totals = _issued_by(run_id)
        # Those still due are tried again, and recorded again if they fail again.
        still_due = set(ids)
        run.errors = [error for error in run.errors or [] if error.get("subscription_id") not in still_due]
        run.subscriptions_done = max(run.subscriptions_due - len(ids), 0)
        run.subscriptions_due = run.subscriptions_done + len(ids)
    run.heartbeat_at = utcnow()
    commit()
    log.info("Billing run %s: resumed, %d subscriptions still due", run_id, len(ids))
    return _carry_out(run_id, at, preview, ids)


def _issued_by(run_id: str) -> tuple[int, int, dict[str, int]]:
    """(subscriptions billed, invoices, totals per currency) of the invoices a run issued."""
    billed, count = db.session.execute(
        select(func.count(distinct(Invoice.subscription_id)), func.count()).where(Invoice.billing_run_id == run_id)
    ).one()
    totals = dict(
        db.session.execute(
            select(Invoice.currency, func.sum(Invoice.total))
            .where(Invoice.billing_run_id == run_id)
            .group_by(Invoice.currency)
        ).all()
    )
    return billed, count, {currency: int(total) for currency, total in totals.items()}


def _carry_out(run_id: str, at: datetime, preview: bool, ids: list[str]) -> BillingRun:
    try:
        if not preview:
            # Expired credit is written off even for tenants with nothing to invoice today.
            written_off = credits.write_off_expired(at, BILLING)
            _beat(run_id)
            commit()
            if written_off:
                log.info("Billing run %s: expired credit written off for %d tenants", run_id, written_off)
        shards = _shards(ids)
        if len(shards) > 1:
            _renew_in_processes(run_id, at, preview, shards)
        else:
            _renew_shard(run_id, at, preview, ids)
        if not preview:
            _retry_failed_payments(run_id, at)
            _send_reminders(run_id, at)
    except Exception as error:
        # Not one subscription's failure (those are recorded and skipped) but the run's own:
        # say so in the console instead of leaving it "running" for ever, and let RQ see it.
        rollback()
        _finish(run_id, "failed", f"The run stopped: {type(error).__name__}: {error}")
        raise
    return _finish(run_id, "completed")


def _beat(run_id: str) -> None:
    """The run is alive (written with the caller's transaction)."""
    run = db.session.get(BillingRun, run_id)
    run.heartbeat_at = utcnow()


def _finish(run_id: str, status: str, error: str | None = None) -> BillingRun:
    run = db.session.get(BillingRun, run_id, populate_existing=True)
    run.status, run.finished_at = status, utcnow()
    run.heartbeat_at = run.finished_at
    if error:
        run.errors = [*(run.errors or []), {"subscription_id": None, "error": error[:500]}]
    commit()
    return run


def _shards(ids: list[str]) -> list[list[str]]:
    config = current_app.config
    processes = min(config["BILLING_RUN_PROCESSES"] or os.cpu_count() or 1, len(ids))
    if (
        processes < 2 or len(ids) < config["BILLING_RUN_PARALLEL_FROM"] or db.engine.dialect.name != "postgresql"
    ):  # SQLite has one writer at a time
        return [ids]
    # Interleaved, so every shard gets early and late period ends alike.
    return [ids[shard::processes] for shard in range(processes)]


_forked_app = None


def _renew_in_processes(run_id: str, at: datetime, preview: bool, shards: list[list[str]]) -> None:
    global _forked_app
    _forked_app = current_app._get_current_object()
    db.session.remove()  # nothing of this session's may be shared with the children
    try:
        with ProcessPoolExecutor(len(shards), mp_context=multiprocessing.get_context("fork")) as pool:
            for finished in [pool.submit(_renew_shard_in_child, run_id, at, preview, shard) for shard in shards]:
                finished.result()
    finally:
        _forked_app = None


def _renew_shard_in_child(run_id: str, at: datetime, preview: bool, ids: list[str]) -> None:
    with _forked_app.app_context():
        # The parent's pooled connections are the parent's: open our own.
        db.engine.dispose(close=False)
        try:
            _renew_shard(run_id, at, preview, ids)
        finally:
            db.session.remove()
            db.engine.dispose()


@dataclass
class _Tally:
    """What a shard has done and not yet added to the run's row."""

    done: int = 0
    billed: int = 0
    invoices: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)

    def plus(
        self,
        done: int = 1,
        issued: list[tuple[str, int]] = (),
        error: dict | None = None,
        item: dict | None = None,
    ) -> "_Tally":
        totals = dict(self.totals)
        for currency, total in issued:
            totals[currency] = totals.get(currency, 0) + total
        return _Tally(
            self.done + done,
            self.billed + bool(issued),
            self.invoices + len(issued),
            totals,
            [*self.errors, *([error] if error else [])],
            [*self.items, *([item] if item and len(self.items) < PREVIEW_ITEMS else [])],
        )


def _retry_failed_payments(run_id: str, at: datetime) -> None:
    """Dunning retries due as of the run's instant (so ``billing run --at`` travels them too)."""
    try:
        retry_due(at)
        commit()
    except Exception:  # never lose the run's own results over a dunning problem
        rollback()
        log.exception("Billing run %s: dunning retries failed", run_id)


def _send_reminders(run_id: str, at: datetime) -> None:
    """Upcoming yearly renewals and trials ending, as of the run's instant (each sent once)."""
    try:
        sent = notices.send_reminders(at)
        commit()
        if sent:
            log.info("Billing run %s: %d renewal or trial reminder(s) sent", run_id, sent)
    except Exception:  # never lose the run's own results over an email
        rollback()
        log.exception("Billing run %s: reminders failed", run_id)


def _report(run_id: str, tally: _Tally) -> None:
    """Add a shard's tally to the run, its row locked for the (short) rest of the transaction."""
    if tally == _Tally():
        return
    run = db.session.get(BillingRun, run_id, with_for_update=True, populate_existing=True)
    run.subscriptions_done += tally.done
    run.subscriptions_billed += tally.billed
    run.invoices_created += tally.invoices
    totals = dict(run.totals or {})
    for currency, total in tally.totals.items():
        totals[currency] = totals.get(currency, 0) + total
    run.totals = totals
    run.errors = [*(run.errors or []), *tally.errors][:MAX_RECORDED_ERRORS]
    if tally.items:
        run.preview_items = [*(run.preview_items or []), *tally.items][:PREVIEW_ITEMS]
    run.heartbeat_at = utcnow()


def _preview_item(subscription: Subscription, issued: list) -> dict:
    """One line of a preview: whom it would bill, and how much."""
    return {
        "subscription_id": subscription.id,
        "tenant_id": subscription.tenant_id,
        "plan": subscription.plan_version.name,
        "invoices": len(issued),
        "currency": issued[0].currency,
        "total": sum(invoice.total for invoice in issued),
        "periods_to": max(invoice.period_end for invoice in issued).isoformat(),
    }


def _renew_shard(run_id: str, at: datetime, preview: bool, ids: list[str]) -> None:
    """Each due subscription in its own transaction, the tally added to the run every
    ``PROGRESS_EVERY`` subscriptions or ``HEARTBEAT_EVERY_SECONDS`` (in that subscription's
    transaction) and at the end. A preview rolls every subscription's transaction back once its
    figures are read, and reports in a transaction of its own."""
    # Each subscription is re-read under its lock and plan versions are never edited, so the
    # per-subscription commits need not expire (and re-fetch) what the session holds. The
    # versions are loaded once and kept referenced: subscriptions find theirs without a query.
    session = db.session()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    versions = list(db.session.execute(select(PlanVersion)).scalars())
    unreported = _Tally()
    loaded: dict[str, Subscription] = {}
    last_report = time.monotonic()
    try:
        for position, subscription_id in enumerate(ids, start=1):
            if subscription_id not in loaded:
                loaded = _load(ids[position - 1 : position - 1 + LOAD_BATCH])
            try:
                subscription = _lock(subscription_id, loaded.get(subscription_id))
                issued = renew(subscription, at, run_id=run_id) if subscription is not None else []
                if not preview:
                    for invoice in issued:
                        charge_after_issue(invoice)  # a job after this commit: no HTTP call inside it
                # Read now: after a failed commit (rolled back, so expired) they could not be.
                tally = unreported.plus(
                    issued=[(invoice.currency, invoice.total) for invoice in issued],
                    item=_preview_item(subscription, issued) if preview and issued else None,
                )
                if preview:
                    rollback()  # nothing of it stays: no invoice, no period moved on, no credit taken
                report = position % PROGRESS_EVERY == 0 or time.monotonic() - last_report >= HEARTBEAT_EVERY_SECONDS
                if report:
                    _report(run_id, tally)
                    commit()
                    unreported, last_report = _Tally(), time.monotonic()
                else:
                    if not preview:
                        commit()
                    unreported = tally
            except Exception as error:  # one bad subscription must not stop everyone else's billing
                rollback()
                log.exception("Billing run %s: subscription %s failed", run_id, subscription_id)
                unreported = unreported.plus(
                    error={"subscription_id": subscription_id, "error": f"{type(error).__name__}: {error}"[:500]}
                )
        _report(run_id, unreported)
        commit()
    finally:
        session.expire_on_commit = expire_on_commit
        del versions


def recent_runs(limit: int = 20) -> list[BillingRun]:
    return list(db.session.execute(select(BillingRun).order_by(BillingRun.created_at.desc()).limit(limit)).scalars())
