"""Outbound webhooks through the real queue: a worker process on the real Redis delivers,
retries a failure on RQ's schedule with the same webhook-id, and a worker killed between the
commit and the delivery (mid-request) delivers after it is restarted."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import WebhookDelivery
from tests.conftest import database, make_app
from tests.webhook_support import start_receiver

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own_database(tmp_path_factory):
    with database("webhooks", tmp_path_factory) as url:
        yield url


@pytest.fixture
def worker_env(own_database, redis_url):
    """(app, start_worker): this test's database, its own queue names on the real Redis."""
    prefix = f"hooks-{uuid.uuid4().hex[:8]}-"
    settings = {
        "REDIS_URL": redis_url,
        "JOBS_INLINE": False,
        "RQ_QUEUE_PREFIX": prefix,
        "WEBHOOK_TIMEOUT_SECONDS": 2,
        "WEBHOOK_SWEEP_SECONDS": 1,
        "WEBHOOK_RETRY_SCHEDULE": "1,1,1",
    }
    app = make_app(own_database, **settings)
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PORTAL_ENV")}
    env.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.items()})
    env.update(
        {
            "DATABASE_URL": own_database,
            "SECRET_KEY": "test-secret-key",
            "PYTHONPATH": str(ROOT),
            "BILLING_RUN_INTERVAL_SECONDS": "0",
        }
    )
    workers = []

    def start_worker():
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own CLI
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
            cwd=ROOT,
            env=env,
            stdout=open(os.environ.get("WORKER_LOG", os.devnull), "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        workers.append(process)
        return process

    try:
        yield app, start_worker
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        with app.app_context():
            from portal.infra.queues import redis_connection

            connection = redis_connection()
            keys = list(connection.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                connection.delete(*keys)
            db.session.remove()
            db.engine.dispose()


def _tenant_with_endpoint(app, url):
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.models import Membership
    from portal.tenants.services import create_tenant
    from portal.webhooks.services import create_endpoint
    from tests.conftest import _create_user, unique

    with app.test_request_context():
        tenant_id = unique("t")
        owner = _create_user(f"owner-{tenant_id}@example.com")
        tenant = create_tenant(SYSTEM, tenant_id, "Queue Co", owner.email)
        db.session.add(Membership(tenant_id=tenant_id, user_id=owner.id, role="owner"))
        commit()
        endpoint, secret = create_endpoint(SYSTEM, tenant, url, ["api_key.created"], "")
        commit()
        return tenant_id, endpoint.id, secret


def _create_key(app, tenant_id):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key
    from portal.infra.transactions import commit
    from portal.models import Tenant

    with app.test_request_context():
        key, _ = create_key(SYSTEM, db.session.get(Tenant, tenant_id), "Queued", scopes=None)
        commit()  # the delivery job goes to the real Redis now, for a worker to take
        return key.id


def _delivery(app):
    with app.app_context():
        db.session.expire_all()
        return db.session.execute(select(WebhookDelivery)).scalar_one()


def _once_recorded(app, state: str = "succeeded", seconds: float = 10):
    """The delivery once the worker has recorded ``state`` (it answers before it records)."""
    deadline = time.monotonic() + seconds
    while _delivery(app).state != state and time.monotonic() < deadline:
        time.sleep(0.1)
    return _delivery(app)


def test_the_worker_retries_a_failure_on_schedule_with_the_same_webhook_id(worker_env):
    app, start_worker = worker_env
    receiver, server = start_receiver()
    try:
        receiver.answer_with(500)
        tenant_id, _, secret = _tenant_with_endpoint(app, receiver.url)
        _create_key(app, tenant_id)
        start_worker()
        first, second = receiver.wait_for(2, timeout=90)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        second.verify(secret)
        delivery = _once_recorded(app)
        assert (delivery.state, delivery.attempt_count) == ("succeeded", 2)
    finally:
        server.shutdown()
        server.server_close()


def test_a_worker_killed_mid_delivery_delivers_after_restart(worker_env):
    app, start_worker = worker_env
    receiver, server = start_receiver()
    try:
        receiver.delay = 5  # the first request hangs past the timeout while the worker dies
        tenant_id, _, secret = _tenant_with_endpoint(app, receiver.url)
        _create_key(app, tenant_id)
        worker = start_worker()
        receiver.wait_for(1, timeout=90)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        delivery = _delivery(app)
        assert (delivery.state, delivery.attempt_count) == ("pending", 0)  # nothing recorded: it died first

        receiver.delay = 0
        start_worker()
        # The claim of the dead worker lapses (timeout + 10 s), then the sweep re-queues it.
        requests = receiver.wait_for(2, timeout=90)
        assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
        requests[1].verify(secret)
        assert _once_recorded(app).state == "succeeded"
    finally:
        server.shutdown()
        server.server_close()


def test_deliveries_committed_while_no_worker_ran_go_out_when_one_starts(worker_env):
    """The process that committed died before it could enqueue: the row is all there is."""
    app, start_worker = worker_env
    receiver, server = start_receiver()
    try:
        tenant_id, _, secret = _tenant_with_endpoint(app, receiver.url)
        _create_key(app, tenant_id)
        with app.app_context():
            from portal.infra.queues import get_queue

            get_queue("webhooks").empty()  # the enqueue never happened
        start_worker()
        [request] = receiver.wait_for(1, timeout=90)
        assert request.verify(secret)["event_type"] == "api_key.created"
    finally:
        server.shutdown()
        server.server_close()
