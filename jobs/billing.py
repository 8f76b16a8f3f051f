"""Billing jobs: a billing run (which cuts itself into shard jobs), one shard of it, the worker's
periodic tick that starts runs, and an issued invoice's email."""

from datetime import timedelta

from flask import current_app

from portal.billing import notices
from portal.billing.runs import bill_shard, claim_stalled, create_run, execute, resume, stalled
from portal.extensions import db
from portal.infra.queues import get_queue
from portal.infra.transactions import commit
from portal.models import BillingRun, Invoice

TICK_JOB_ID = "billing-run-tick"


def execute_billing_run(run_id: str) -> None:
    """Run a queued billing run; requeued after its worker died, resume it."""
    run = db.session.get(BillingRun, run_id)
    if run is None or run.finished:
        return  # already done: a redelivered job changes nothing
    if run.status == "running":
        if not stalled(run):
            return  # another worker is on it
        run = claim_stalled(run_id)
        commit()
        resume(run)
        return
    execute(run)


def execute_billing_shard(shard_id: str) -> None:
    """Bill one shard of a run, on whichever worker took the job; the last shard closes the run.
    A shard delivered twice (or of an abandoned run) does nothing."""
    bill_shard(shard_id)


def resume_billing_run(run_id: str) -> None:
    """Carry on a stalled run the console or the CLI claimed."""
    run = db.session.get(BillingRun, run_id)
    if run is None or run.finished:
        return
    resume(run)


def billing_tick() -> None:
    """Start a run as of now, then schedule the next tick. The fixed job id means one pending
    tick however many workers are running."""
    interval = current_app.config["BILLING_RUN_INTERVAL_SECONDS"]
    if interval <= 0:
        return
    schedule_tick(interval)
    run = create_run("scheduler")
    commit()
    execute(run)


def schedule_tick(delay_seconds: int) -> None:
    get_queue().enqueue_in(timedelta(seconds=delay_seconds), billing_tick, job_id=TICK_JOB_ID, job_timeout=3600)


def invoice_issued_email(*invoice_ids: str) -> None:
    """Email issued invoices (one, or a billing run's batch) with their PDFs; once per invoice,
    however often the job runs."""
    for invoice_id in invoice_ids:
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is not None:  # else its transaction was rolled back after all
            notices.invoice_issued(invoice)
    commit()
