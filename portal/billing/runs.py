"""Billing runs: every subscription whose period has ended (or whose dated upgrade is due) as
of an instant is renewed (DESIGN §6).

A run is cut into shards (``BILLING_RUN_SHARD_SIZE`` subscriptions each), and each shard is a
job on the queue, so any number of workers on any number of hosts share a run; the embedded
mode and the CLI bill the shards one after another in process. A shard bills its subscriptions
``PROGRESS_EVERY`` at a time, each batch in one transaction worked as a set: the subscriptions
locked and read, their usage and credit read, in a few statements; each subscription's invoices
composed by ``subscriptions.renew`` as always; then the invoices, lines and audit rows inserted
in bulk under one block of invoice numbers. A batch that fails is rolled back and billed again
one subscription per transaction, so one bad subscription is recorded and skipped. The last
shard to end closes the run.

Safe to crash and re-run, and to run twice at once: a subscription's row is locked while it is
renewed, renewing moves its period forward, and the unique (subscription, kind, period_start)
constraint refuses a second invoice for a period whatever happens. Numbers stay gap-free: a
block is taken by the transaction that uses it whole, and a rollback hands it back.

A run "as of" a future instant is a preview unless BILLING_TEST_CLOCK is on: each subscription
is renewed as the run would, its figures read, and its transaction rolled back, so nothing is
billed, moved on or charged. A running run writes a heartbeat as it goes; one whose heartbeat
has stopped lost its process, is shown as stalled, and ``resume`` carries it on.
"""

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, distinct, func, or_, select, update
from sqlalchemy.orm import joinedload, lazyload

from portal.billing import credits, invoices, notices
from portal.billing.invoices import BILLING
from portal.billing.payments.dunning import retry_due
from portal.billing.payments.services import charge_after_issue
from portal.billing.subscriptions import prefetch_usage, renew, to_second
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.infra import bulk
from portal.infra.queues import runs_inline
from portal.infra.transactions import commit, defer, rollback
from portal.models import BILLABLE_STATUSES, BillingRun, BillingRunShard, Invoice, PlanVersion, Subscription, utcnow
from portal.usage.api_request_events import flush
from portal.webhooks import outbox

log = logging.getLogger(__name__)
# Subscriptions billed per transaction (as a set) and per progress report: the run's progress
# row and heartbeat are written with each batch. In the one-by-one mode (previews, a batch that
# failed) each subscription commits alone and progress is written every PROGRESS_EVERY
# subscriptions, and at least every HEARTBEAT_EVERY_SECONDS, however slow the subscriptions, so
# that a live run is never taken for a stalled one.
PROGRESS_EVERY = 100
HEARTBEAT_EVERY_SECONDS = 10
# False: every subscription in a transaction of its own (what a failed batch falls back to).
BATCHED = True
MAX_RECORDED_ERRORS = 100
# A preview lists this many of the subscriptions it would bill (its totals count them all).
PREVIEW_ITEMS = 100
SHARD_JOB = "jobs.billing.execute_billing_shard"
SHARD_TIMEOUT_SECONDS = 3600
UNFINISHED = ("pending", "running")


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
    """Record a run and hand it to a worker (inline in the embedded mode) after commit; that job
    cuts it into shard jobs for every worker."""
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


def _reread(ids: list[str]) -> dict[str, Subscription]:
    """Subscriptions (locked already) read again, their state current."""
    return {
        subscription.id: subscription
        for subscription in db.session.execute(
            select(Subscription)
            .where(Subscription.id.in_(ids))
            .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
            .execution_options(populate_existing=True)
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
    # versions are not joined: the shard holds them all, and they never change.
    return db.session.execute(
        select(Subscription)
        .where(Subscription.id == subscription_id)
        .options(joinedload(Subscription.tenant), lazyload(Subscription.plan_version))
        .with_for_update(of=Subscription)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _lock_all(ids: list[str], loaded: dict[str, Subscription]) -> dict[str, Subscription]:
    """``_lock`` for a batch in two statements: every row locked (in id order, so two runs
    locking overlapping batches never deadlock), and those changed since the bulk read read again."""
    subscriptions = Subscription.__table__
    stamps = {
        sid: stamp
        for sid, stamp in db.session.connection().execute(
            select(subscriptions.c.id, subscriptions.c.updated_at)
            .where(subscriptions.c.id.in_(ids))
            .order_by(subscriptions.c.id)
            .with_for_update()
        )
    }
    changed = [sid for sid, stamp in stamps.items() if sid not in loaded or loaded[sid].updated_at != stamp]
    current = {sid: loaded[sid] for sid in stamps if sid not in changed}
    if changed:
        current.update(_reread(changed))
    return current


def execute(run: BillingRun, inline: bool | None = None) -> BillingRun:
    """Start the run: list what is due, write off expired credit, cut the work into shards and
    hand them to the workers (``inline``: bill them here, one after another; by default in the
    embedded mode). Returns the run, finished when billed inline."""
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
    return _carry_out(run_id, at, preview, ids, runs_inline() if inline is None else inline)


def resume(run: BillingRun, inline: bool | None = None) -> BillingRun:
    """Carry a stalled run (claimed with ``claim_stalled``) on to the end.

    What is still due as of its instant is cut into new shards; the shards the dead workers
    left unfinished are abandoned (a job of one still in a queue finds it so and does nothing).
    What they had renewed is not due any more, and the unique (subscription, kind,
    period_start) constraint would refuse it anyway. Its figures are counted afresh from the
    invoices it issued, since its last progress report may have been a batch behind. A preview
    wrote nothing to count from: it starts over.
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
    shards = BillingRunShard.__table__
    db.session.execute(
        update(shards)
        .where(shards.c.run_id == run_id, shards.c.status.in_(UNFINISHED))
        .values(status="abandoned", finished_at=utcnow())
    )
    run.heartbeat_at = utcnow()
    commit()
    log.info("Billing run %s: resumed, %d subscriptions still due", run_id, len(ids))
    return _carry_out(run_id, at, preview, ids, runs_inline() if inline is None else inline)


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


def _carry_out(run_id: str, at: datetime, preview: bool, ids: list[str], inline: bool) -> BillingRun:
    try:
        if not preview:
            # Expired credit is written off even for tenants with nothing to invoice today.
            written_off = credits.write_off_expired(at, BILLING)
            _beat(run_id)
            commit()
            if written_off:
                log.info("Billing run %s: expired credit written off for %d tenants", run_id, written_off)
        shard_ids = _cut(run_id, ids, queue=not inline)
        commit()  # the shard jobs are enqueued now, once their rows are there to be read
    except Exception as error:
        # The run's own failure (not one subscription's, which is recorded and skipped): say so
        # in the console instead of leaving it "running" for ever, and let RQ see it.
        rollback()
        _finish(run_id, "failed", f"The run stopped: {type(error).__name__}: {error}")
        raise
    if not shard_ids:
        return _close(run_id)
    if inline:
        failure = None
        for shard_id in shard_ids:
            try:
                bill_shard(shard_id)
            except Exception as error:  # noqa: BLE001 - recorded on the run by bill_shard; the others go on
                failure = failure or error
        if failure is not None:
            raise failure
    return db.session.get(BillingRun, run_id, populate_existing=True)


def _cut(run_id: str, ids: list[str], queue: bool) -> list[str]:
    """The run's shards, in due order, each a job on the queue after this commit (``queue``)."""
    size = max(current_app.config["BILLING_RUN_SHARD_SIZE"], 1)
    first = db.session.execute(
        select(func.coalesce(func.max(BillingRunShard.position), -1)).where(BillingRunShard.run_id == run_id)
    ).scalar()
    shard_ids = []
    for position, start in enumerate(range(0, len(ids), size), start=first + 1):
        shard = BillingRunShard(run_id=run_id, position=position, subscription_ids=ids[start : start + size])
        db.session.add(shard)
        db.session.flush()
        shard_ids.append(shard.id)
        if queue:
            # No RQ retry: a shard whose worker died is resumed with its run (or requeued by hand).
            defer(SHARD_JOB, shard.id, retries=0, timeout=SHARD_TIMEOUT_SECONDS)
    return shard_ids


class ShardTakenOver(Exception):
    """The shard was abandoned (its run resumed) or claimed by another job while this one worked."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def _claim(shard_id: str) -> BillingRunShard | None:
    """Take the shard for this process: pending, or running with a heartbeat so old that its
    worker died (a job requeued by hand). None when another job has it, or it has ended."""
    shards = BillingRunShard.__table__
    now = utcnow()
    stale = now - timedelta(seconds=current_app.config["BILLING_RUN_STALLED_AFTER_SECONDS"])
    taken = db.session.execute(
        update(shards)
        .where(
            shards.c.id == shard_id,
            or_(shards.c.status == "pending", and_(shards.c.status == "running", shards.c.heartbeat_at < stale)),
        )
        .values(status="running", worker=worker_name(), started_at=now, heartbeat_at=now)
    ).rowcount
    commit()
    if not taken:
        return None
    return db.session.get(BillingRunShard, shard_id, populate_existing=True)


def bill_shard(shard_id: str) -> None:
    """The shard job: claim the shard, bill its subscriptions, and close the run when it is the
    last to end. A shard delivered twice, or of an abandoned run, does nothing."""
    shard = _claim(shard_id)
    if shard is None:
        return
    run = db.session.get(BillingRun, shard.run_id, populate_existing=True)
    run_id, at, preview, ids = run.id, run.as_of, run.preview, list(shard.subscription_ids)
    try:
        _renew_shard(run_id, at, preview, ids, shard_id)
    except ShardTakenOver:
        rollback()
        log.warning("Billing run %s: shard %s was taken over; this job stops", run_id, shard_id)
        return
    except Exception as error:
        rollback()
        log.exception("Billing run %s: shard %s stopped", run_id, shard_id)
        if _end_shard(run_id, shard_id, "failed", f"The run stopped: {type(error).__name__}: {error}"):
            _close(run_id)
        raise
    if _end_shard(run_id, shard_id, "done"):
        _close(run_id)


def _end_shard(run_id: str, shard_id: str, status: str, error: str | None = None) -> bool:
    """Mark the shard ended; True for the last of the run's shards to end. The run's row is
    locked meanwhile, so of two shards ending at once exactly one sees none left."""
    run = db.session.get(BillingRun, run_id, with_for_update=True, populate_existing=True)
    shards = BillingRunShard.__table__
    db.session.execute(
        update(shards)
        .where(shards.c.id == shard_id, shards.c.status == "running")
        .values(status=status, finished_at=utcnow(), heartbeat_at=utcnow())
    )
    if error:
        run.errors = [*(run.errors or []), {"subscription_id": None, "error": error[:500]}]
    run.heartbeat_at = utcnow()
    left = db.session.execute(
        select(func.count()).where(shards.c.run_id == run_id, shards.c.status.in_(UNFINISHED))
    ).scalar()
    commit()
    return left == 0


def _close(run_id: str) -> BillingRun:
    """Every shard has ended: dunning retries and renewal and trial reminders due as of the run's
    instant, then the run's end."""
    run = db.session.get(BillingRun, run_id, populate_existing=True)
    if run.finished:
        return run
    if not run.preview:
        _retry_failed_payments(run_id, run.as_of)
        _send_reminders(run_id, run.as_of)
    failed = db.session.execute(
        select(func.count()).where(BillingRunShard.run_id == run_id, BillingRunShard.status == "failed")
    ).scalar()
    return _finish(run_id, "failed" if failed else "completed")


def _beat(run_id: str) -> None:
    """The run is alive (written with the caller's transaction)."""
    run = db.session.get(BillingRun, run_id)
    run.heartbeat_at = utcnow()


def _beat_shard(shard_id: str | None) -> None:
    """The shard is alive (with the caller's transaction); it stops if it is no longer ours."""
    if shard_id is None:
        return
    shards = BillingRunShard.__table__
    alive = db.session.execute(
        update(shards)
        .where(shards.c.id == shard_id, shards.c.status == "running", shards.c.worker == worker_name())
        .values(heartbeat_at=utcnow())
    ).rowcount
    if not alive:
        raise ShardTakenOver(shard_id)


def _finish(run_id: str, status: str, error: str | None = None) -> BillingRun:
    run = db.session.get(BillingRun, run_id, populate_existing=True)
    run.status, run.finished_at = status, utcnow()
    run.heartbeat_at = run.finished_at
    if error:
        run.errors = [*(run.errors or []), {"subscription_id": None, "error": error[:500]}]
    commit()
    return run


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


def _renew_shard(run_id: str, at: datetime, preview: bool, ids: list[str], shard_id: str | None = None) -> None:
    """The shard's subscriptions, ``PROGRESS_EVERY`` at a time: each batch billed as a set in
    one transaction, or (a preview, a batch that failed) one subscription per transaction."""
    # Each subscription is re-read under its lock and plan versions are never edited, so the
    # commits need not expire (and re-fetch) what the session holds. The versions are loaded
    # once and kept referenced: subscriptions find theirs without a query.
    session = db.session()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    versions = list(db.session.execute(select(PlanVersion)).scalars())
    try:
        for first in range(0, len(ids), PROGRESS_EVERY):
            batch = ids[first : first + PROGRESS_EVERY]
            if BATCHED and not preview and _renew_batch(run_id, at, batch, shard_id):
                continue
            _renew_one_by_one(run_id, at, preview, batch, shard_id)
    finally:
        session.expire_on_commit = expire_on_commit
        del versions


def _renew_batch(run_id: str, at: datetime, ids: list[str], shard_id: str | None) -> bool:
    """The batch in one transaction, worked as a set; False (and nothing kept) when any of it
    failed, for the caller to bill it one by one and record what fails."""
    issued_all: list[Invoice] = []
    tally = _Tally()
    try:
        locked = _lock_all(ids, _load(ids))
        tenant_ids = [subscription.tenant_id for subscription in locked.values()]
        with (
            invoices.batch(list(locked.values())),
            outbox.endpoints_known(tenant_ids),
            prefetch_usage(list(locked.values()), at),
        ):
            for subscription_id in ids:
                subscription = locked.get(subscription_id)
                issued = renew(subscription, at, run_id=run_id) if subscription is not None else []
                issued_all += issued
                tally = tally.plus(issued=[(invoice.currency, invoice.total) for invoice in issued])
            # Everything else first: from the numbers block on, the year's counter is locked
            # until commit, and every worker billing the run queues on it.
            _beat_shard(shard_id)
            bulk.write_changes(db.session.dirty)  # the periods moved on, the discounts' counts
            db.session.flush()
            invoices.store_batch()
        for invoice in issued_all:
            charge_after_issue(invoice)  # a job after this commit: no HTTP call inside it
        commit()
    except ShardTakenOver:
        raise
    except Exception:
        rollback()
        log.warning("Billing run %s: a batch of %d failed; billing it one by one", run_id, len(ids), exc_info=True)
        return False
    # The run's row in a transaction of its own: held for as short a time as possible, since
    # every worker's batches report to it. A crash just before leaves the figures one batch
    # behind; resuming counts them afresh from the invoices.
    _report(run_id, tally)
    commit()
    return True


def _renew_one_by_one(run_id: str, at: datetime, preview: bool, ids: list[str], shard_id: str | None) -> None:
    """Each subscription in its own transaction, the tally added to the run every
    ``PROGRESS_EVERY`` subscriptions or ``HEARTBEAT_EVERY_SECONDS`` (in that subscription's
    transaction) and at the end. A preview rolls every subscription's transaction back once its
    figures are read, and reports in a transaction of its own."""
    _beat_shard(shard_id)
    commit()
    unreported = _Tally()
    loaded = _load(ids)
    last_report = time.monotonic()
    for position, subscription_id in enumerate(ids, start=1):
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


def recent_runs(limit: int = 20) -> list[BillingRun]:
    return list(db.session.execute(select(BillingRun).order_by(BillingRun.created_at.desc()).limit(limit)).scalars())
