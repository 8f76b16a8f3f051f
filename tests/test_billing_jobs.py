"""Billing runs on a real queue: the console hands a run to the worker, the worker finishes it,
and the scheduler keeps exactly one pending tick (real Redis, REDIS_URL)."""

import re
import uuid
from datetime import timedelta

import pytest
from rq.job import Job

import jobs.billing
from portal.extensions import db
from portal.infra import queues as infra_queues
from portal.models import BillingRun, Invoice, utcnow
from tests.conftest import HTMX, make_app
from tests.test_jobs import own_queues


@pytest.fixture
def jobs_app(database_url, redis_url):
    """The app as production runs it: Redis configured, jobs not inline."""
    return make_app(database_url, REDIS_URL=redis_url, JOBS_INLINE=False)


def use_own_queues_for_ticks(monkeypatch) -> None:
    # jobs.billing took its own reference to get_queue; the tick must land on this test's queue
    # too, under an id of this test's own (still one fixed id), so a real worker's pending tick
    # on a shared Redis is never touched.
    monkeypatch.setattr(jobs.billing, "get_queue", infra_queues.get_queue)
    monkeypatch.setattr(jobs.billing, "TICK_JOB_ID", f"billing-run-tick-test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def queues(jobs_app, monkeypatch):
    with own_queues(jobs_app, monkeypatch) as named:
        use_own_queues_for_ticks(monkeypatch)
        yield named


def run_row(app, run_id: str) -> BillingRun:
    with app.app_context():
        return db.session.get(BillingRun, run_id, populate_existing=True)


def invoice_count(app, tenant) -> int:
    with app.app_context():
        return db.session.query(Invoice).filter_by(tenant_id=tenant.tenant_id).count()


def test_console_run_is_queued_for_the_worker_which_completes_it(jobs_app, queues, make_tenant, make_operator, login):
    tenant = make_tenant(company_name="Worker Billed Co")
    client = jobs_app.test_client()
    login(client, make_operator())
    as_of = (utcnow() + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M")

    response = client.post("/admin/billing/runs", data={"as_of": as_of})
    assert response.status_code == 303
    run_id = re.fullmatch(r"/admin/billing/runs/(run_\w+)", response.headers["Location"]).group(1)

    # Nothing ran in the request: the run waits on the default queue for a worker.
    assert run_row(jobs_app, run_id).status == "queued"
    assert invoice_count(jobs_app, tenant) == 1
    assert queues.default.count == 1 and queues.email.count == 0
    [job] = queues.default.get_jobs()
    assert job.func_name == "jobs.billing.execute_billing_run"
    assert job.args == (run_id,)
    assert job.timeout == 6 * 3600
    # The page polls while it waits.
    fragment = client.get(f"/admin/billing/runs/{run_id}", headers=HTMX)
    assert fragment.status_code == 200
    assert 'hx-trigger="every 1s"' in fragment.get_data(as_text=True)
    assert "waiting for a worker" in fragment.get_data(as_text=True)

    queues.work()

    run = run_row(jobs_app, run_id)
    assert (run.status, run.subscriptions_due, run.subscriptions_done, run.subscriptions_billed) == (
        "completed",
        1,
        1,
        1,
    )
    assert run.invoices_created == 1 and run.totals == {"USD": 4900}
    assert invoice_count(jobs_app, tenant) == 2
    assert Job.fetch(job.id, connection=queues.connection).get_status() == "finished"
    finished = client.get(f"/admin/billing/runs/{run_id}", headers=HTMX)
    assert finished.status_code == 286
    assert "hx-trigger" not in finished.get_data(as_text=True)

    # The job delivered again (a worker crash after the commit, say) changes nothing.
    with jobs_app.app_context():
        jobs.billing.execute_billing_run(run_id)
    assert invoice_count(jobs_app, tenant) == 2


def test_schedule_tick_keeps_exactly_one_pending_tick_however_often_it_is_called(jobs_app, queues):
    with jobs_app.app_context():
        for delay in (3600, 60, 600):
            jobs.billing.schedule_tick(delay)
        scheduled = queues.default.scheduled_job_registry
        assert scheduled.get_job_ids() == [jobs.billing.TICK_JOB_ID]
        # The last call wins: the tick is due about ten minutes from now, not in an hour.
        due = scheduled.get_scheduled_time(jobs.billing.TICK_JOB_ID)
        assert timedelta(minutes=9) < due - utcnow() <= timedelta(minutes=10)
    assert queues.default.count == 0  # scheduled, not yet waiting for a worker
    job = Job.fetch(jobs.billing.TICK_JOB_ID, connection=queues.connection)
    assert job.func_name == "jobs.billing.billing_tick"


def test_a_tick_bills_what_is_due_now_and_schedules_the_next_one(database_url, redis_url, monkeypatch, make_tenant):
    app = make_app(database_url, REDIS_URL=redis_url, JOBS_INLINE=False, BILLING_RUN_INTERVAL_SECONDS=900)
    make_tenant()
    with own_queues(app, monkeypatch) as queues:
        use_own_queues_for_ticks(monkeypatch)
        with app.app_context():
            jobs.billing.billing_tick()
            jobs.billing.billing_tick()
            runs = db.session.query(BillingRun).filter_by(triggered_by="scheduler").all()
            assert [run.status for run in runs] == ["completed", "completed"]
            assert queues.default.scheduled_job_registry.get_job_ids() == [jobs.billing.TICK_JOB_ID]
