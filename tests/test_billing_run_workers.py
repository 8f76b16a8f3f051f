"""Billing runs shared by real worker processes (issue 20): the run is cut into shard jobs on a
real Redis, two ``flask --app wsgi worker`` processes both take shards, and the result is what
one clean run bills; a worker SIGKILLed in the middle of a shard leaves the run stalled, and
resuming it from the console bills exactly the rest on the surviving worker. PostgreSQL and
Redis (DATABASE_URL, REDIS_URL)."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from rq import Worker
from sqlalchemy import select

from portal.billing import runs
from portal.extensions import db
from portal.infra.queues import redis_connection
from portal.infra.transactions import commit
from portal.models import BillingRun, BillingRunShard, Subscription
from tests.billing_engine_support import all_invoices, assert_numbers_gap_free, duplicate_periods, run_billing
from tests.conftest import make_app
from tests.test_billing_run_resume import figures
from tests.test_billing_runs import AS_OF, build_book, snapshot

ROOT = Path(__file__).resolve().parent.parent

# A worker whose every subscription takes a while, so that it can be killed in the middle of a shard.
SLOW_WORKER = textwrap.dedent(
    """
    import time
    from rq import Queue
    from portal import create_app
    from portal.billing import runs
    from portal.infra.queues import QUEUE_NAMES, queue_name, redis_connection
    from portal.infra.worker import AppWorker

    real_renew = runs.renew

    def slow_renew(subscription, at, **kwargs):
        time.sleep(0.15)
        return real_renew(subscription, at, **kwargs)

    runs.renew = slow_renew
    runs.PROGRESS_EVERY = 2  # a shard of 5 commits in batches of 2, 2 and 1
    app = create_app()
    with app.app_context():
        connection = redis_connection()
        queues = [Queue(queue_name(name), connection=connection) for name in QUEUE_NAMES]
        AppWorker(queues, connection=connection).work()
    """
)


@contextmanager
def workers(database_url: str, redis_url: str, count: int, command: list[str], **settings):
    """``count`` worker processes on queues of this test's own; the queue-side app to enqueue with."""
    prefix = f"portal-test-{uuid.uuid4().hex[:10]}-"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE_PREFIX": prefix,
        "JOBS_INLINE": "false",
        "BILLING_TEST_CLOCK": "true",
        "BILLING_RUN_INTERVAL_SECONDS": "0",
        "MAIL_SERVER": "",
        "RATELIMIT_ENABLED": "false",
        "METER_CACHE_SECONDS": "0",
        **{key: str(value) for key, value in settings.items()},
    }
    app = make_app(database_url, REDIS_URL=redis_url, JOBS_INLINE=False, RQ_QUEUE_PREFIX=prefix, **settings)
    log = tempfile.TemporaryFile()  # the workers' output, shown if the test fails
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        for _ in range(count)
    ]
    try:
        with app.app_context():
            connection = redis_connection()
        deadline = time.monotonic() + 60
        while len([w for w in Worker.all(connection=connection) if w.queue_names()[0].startswith(prefix)]) < count:
            assert all(p.poll() is None for p in processes), "a worker did not start"
            assert time.monotonic() < deadline, "the workers never registered"
            time.sleep(0.1)
        yield app, processes
    except BaseException:
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace")[-20000:])
        raise
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        keys = list(connection.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            connection.delete(*keys)


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def the_run(app, run_id: str) -> BillingRun:
    with app.app_context():
        return db.session.get(BillingRun, run_id, populate_existing=True)


def shards_of(app, run_id: str) -> list[BillingRunShard]:
    with app.app_context():
        return list(
            db.session.execute(
                select(BillingRunShard).where(BillingRunShard.run_id == run_id).order_by(BillingRunShard.position)
            ).scalars()
        )


def clean_figures() -> tuple[list, BillingRun]:
    book = build_book()
    run = run_billing(AS_OF)
    assert run.errors == []
    return book, run


def test_two_worker_processes_share_a_run_and_bill_exactly_what_one_run_bills(committed_app, redis_url):
    with committed_app.test_request_context():
        book = [subscription.id for subscription in build_book()]
        url = db.engine.url.render_as_string(hide_password=False)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "worker"]

    with workers(url, redis_url, 2, flask, BILLING_RUN_SHARD_SIZE=2) as (queue_app, processes):
        with queue_app.app_context():
            run_id = runs.request_run("operator", AS_OF).id
            commit()  # the run's job is on the queue now, for whichever worker is free
        wait_until(lambda: the_run(queue_app, run_id).finished, 120, "the run ended")

    shards = shards_of(committed_app, run_id)
    assert len(shards) == 15 and {shard.status for shard in shards} == {"done"}
    takers = {shard.worker for shard in shards}
    assert {int(worker.rsplit(":", 1)[1]) for worker in takers} == {process.pid for process in processes}

    with committed_app.test_request_context():
        shared = db.session.get(BillingRun, run_id)
        shared_book = [db.session.get(Subscription, sid) for sid in book]
        clean_book, clean = clean_figures()
        assert figures(shared) == figures(clean)
        assert snapshot(shared_book) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())


def test_a_worker_killed_in_the_middle_of_a_shard_leaves_a_run_that_resumes_on_the_other(committed_app, redis_url):
    committed_app.config.update(BILLING_RUN_STALLED_AFTER_SECONDS=2)
    with committed_app.test_request_context():
        book = [subscription.id for subscription in build_book()]
        url = db.engine.url.render_as_string(hide_password=False)
    slow = [sys.executable, "-c", SLOW_WORKER]
    settings = {"BILLING_RUN_SHARD_SIZE": 5, "BILLING_RUN_STALLED_AFTER_SECONDS": 2}

    with workers(url, redis_url, 2, slow, **settings) as (queue_app, processes):
        with queue_app.app_context():
            run_id = runs.request_run("operator", AS_OF).id
            commit()

        def a_shard_half_billed() -> list[BillingRunShard]:
            # Running, with a batch committed (its heartbeat moved on), on a worker that is not alone.
            running = [shard for shard in shards_of(queue_app, run_id) if shard.status == "running"]
            if len({shard.worker for shard in running}) < 2:
                return []
            return [shard for shard in running if shard.heartbeat_at > shard.started_at]

        wait_until(a_shard_half_billed, 60, "both workers were billing, one a batch into its shard")
        victim = a_shard_half_billed()[0]
        pid = int(victim.worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed = next(process for process in processes if process.pid == pid)
        killed.wait(timeout=30)
        survivor = next(process for process in processes if process.pid != pid)

        # The survivor bills every other shard; the killed one's stays unfinished, so does the run.
        def only_the_killed_shard_left() -> bool:
            return [shard.id for shard in shards_of(queue_app, run_id) if shard.status != "done"] == [victim.id]

        wait_until(only_the_killed_shard_left, 120, "the other shards were billed")
        assert the_run(queue_app, run_id).status == "running"
        with committed_app.app_context():
            still_due = runs.due_subscription_ids(AS_OF)
        assert 0 < len(still_due) < 5  # part of the killed shard was committed, part was not

        def stalled() -> bool:
            with committed_app.app_context():
                return runs.shown_status(db.session.get(BillingRun, run_id)) == "stalled"

        wait_until(stalled, 30, "it was shown stalled")
        with queue_app.app_context():
            runs.request_resume(run_id)  # the console's Resume…
            commit()
        wait_until(lambda: the_run(queue_app, run_id).finished, 120, "the resumed run ended")
        assert survivor.poll() is None

    # The killed shard was abandoned on resuming; what it left due was cut into a new shard.
    shards = shards_of(committed_app, run_id)
    assert [(shard.position, shard.status) for shard in shards if shard.status != "done"] == [
        (victim.position, "abandoned")
    ]
    assert len(shards) == 7 and len(shards[-1].subscription_ids) == len(still_due)
    with committed_app.test_request_context():
        resumed = db.session.get(BillingRun, run_id)
        resumed_book = [db.session.get(Subscription, sid) for sid in book]
        clean_book, clean = clean_figures()
        assert figures(resumed) == figures(clean)
        assert snapshot(resumed_book) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())
