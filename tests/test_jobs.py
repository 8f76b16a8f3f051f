"""Background jobs on RQ: enqueued after commit, run by the worker, safe to run twice.

The worker tests use a real Redis (REDIS_URL). Queue names get a prefix unique to the
test, and only the keys those queues and their jobs created are deleted afterwards:
the Redis may be shared with other runs.
"""

import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from rq import Queue
from rq.job import Job

from portal.extensions import db
from portal.infra import queues as infra_queues
from portal.infra import transactions
from portal.infra.worker import AppWorker
from portal.mail import opened
from portal.models import EmailMessage, Tenant
from tests.conftest import make_app


def email_to(app, address: str) -> EmailMessage | None:
    with app.app_context():
        return db.session.query(EmailMessage).filter_by(to=address).one_or_none()


def queue_suspension_email(app, tenant, to: str) -> str:
    """Queue one email the way a service does, commit, and return the message id."""
    from portal.mail import send_email

    with app.test_request_context():
        message = send_email(
            to, "Suspended", "tenant_suspended", tenant=tenant, tenant_obj=db.session.get(Tenant, tenant.tenant_id)
        )
        transactions.commit()
        return message.id


@pytest.fixture
def jobs_app(database_url, redis_url):
    """The app as production runs it: Redis configured, jobs not inline."""
    return make_app(database_url, REDIS_URL=redis_url, JOBS_INLINE=False)


@contextmanager
def own_queues(app, monkeypatch):
    """This test's own queues on the real Redis; everything they created is removed after."""
    prefix = f"portal-test-{uuid.uuid4().hex[:10]}-"
    real_get_queue = infra_queues.get_queue
    monkeypatch.setattr(infra_queues, "get_queue", lambda name="default": real_get_queue(prefix + name))
    with app.app_context():
        connection = infra_queues.redis_connection()
    named = {name: Queue(prefix + name, connection=connection) for name in infra_queues.QUEUE_NAMES}

    def work() -> None:
        """Drain this test's queues with the portal's worker, inside the app context."""
        with app.app_context():
            AppWorker(list(named.values()), connection=connection, name=f"{prefix}worker").work(burst=True)

    try:
        yield SimpleNamespace(connection=connection, work=work, **named)
    finally:
        job_ids = set()
        for queue in named.values():
            job_ids.update(queue.job_ids)
            for registry in (
                queue.finished_job_registry,
                queue.failed_job_registry,
                queue.scheduled_job_registry,
                queue.started_job_registry,
                queue.deferred_job_registry,
                queue.canceled_job_registry,
            ):
                job_ids.update(registry.get_job_ids())
            connection.srem(Queue.redis_queues_keys, queue.key)
        # One pass over the keyspace, many keys a call: a SCAN per job id, 10 keys a call (the
        # default), was thousands of round trips once the Redis held a suite's worth of jobs.
        job_ids = {job_id.encode() for job_id in job_ids}
        keys = {
            key
            for key in connection.scan_iter(count=1000)
            if prefix.encode() in key or (key.startswith(b"rq:") and any(job_id in key for job_id in job_ids))
        }
        if keys:
            connection.delete(*keys)


@pytest.fixture
def queues(jobs_app, monkeypatch):
    with own_queues(jobs_app, monkeypatch) as named:
        yield named


def test_invitation_email_is_queued_and_a_worker_delivers_it(jobs_app, queues, make_tenant, make_user, login):
    tenant = make_tenant(company_name="Queued Co")
    owner = make_user(tenant, role="owner")
    client = jobs_app.test_client()
    login(client, owner)

    response = client.post(
        "/team/invitations", data={"email": "queued@example.com", "role": "viewer", "expires_in_days": 7}
    )
    assert response.status_code == 303

    # The request answered without sending: the email waits on the 'email' queue.
    message = email_to(jobs_app, "queued@example.com")
    assert (message.status, message.attempts, message.sent_at) == ("queued", 0, None)
    assert queues.email.count == 1 and queues.default.count == 0
    [job] = queues.email.get_jobs()
    assert job.func_name == "jobs.email.deliver_email"
    assert job.args == (message.id,)
    assert job.retries_left == 3

    # The worker runs the job inside this test's transaction (the shared db.session).
    queues.work()
    message = email_to(jobs_app, "queued@example.com")
    assert message.status == "outbox"
    assert message.attempts == 1
    assert message.sent_at is not None
    # Delivered to the outbox (embedded mode), where the link is read.
    with jobs_app.app_context():
        assert "/invite/" in opened(message).text_body
    assert queues.email.count == 0
    assert Job.fetch(job.id, connection=queues.connection).get_status() == "finished"


def test_send_email_then_commit_enqueues_exactly_one_job(jobs_app, queues, make_tenant):
    tenant = make_tenant()
    message_id = queue_suspension_email(jobs_app, tenant, "direct@example.com")
    assert queues.email.job_ids and len(queues.email.job_ids) == 1
    assert email_to(jobs_app, "direct@example.com").id == message_id
    queues.work()
    assert email_to(jobs_app, "direct@example.com").status == "outbox"


def test_the_jobs_of_one_commit_are_queued_together_in_order_with_their_retries(jobs_app, queues, make_tenant):
    from portal.mail import send_email

    tenant = make_tenant()
    addresses = [f"batch-{i}@example.com" for i in range(4)]
    with jobs_app.test_request_context():
        tenant_obj = db.session.get(Tenant, tenant.tenant_id)
        ids = [
            send_email(to, "Suspended", "tenant_suspended", tenant=tenant, tenant_obj=tenant_obj).id for to in addresses
        ]
        transactions.commit()
    jobs = queues.email.get_jobs()
    assert [job.args for job in jobs] == [(message_id,) for message_id in ids]
    assert [(job.retries_left, job.retry_intervals, job.timeout) for job in jobs] == [(3, [10, 60, 300], 120)] * 4
    queues.work()
    assert [email_to(jobs_app, to).status for to in addresses] == ["outbox"] * 4


def test_job_deferred_in_a_rolled_back_transaction_is_never_enqueued(jobs_app, queues, make_tenant):
    from portal.mail import send_email

    tenant = make_tenant()
    with jobs_app.test_request_context():
        send_email(
            "never@example.com",
            "Never",
            "tenant_suspended",
            tenant=tenant,
            tenant_obj=db.session.get(Tenant, tenant.tenant_id),
        )
        transactions.rollback()
        # A later commit in the same unit of work must not resurrect the dropped job.
        transactions.commit()
    assert queues.email.count == 0
    assert email_to(jobs_app, "never@example.com") is None


def test_job_deferred_in_a_rolled_back_savepoint_is_dropped_and_the_rest_of_the_transaction_kept(
    jobs_app, queues, make_tenant
):
    from portal.mail import send_email

    tenant = make_tenant()
    with jobs_app.test_request_context():
        tenant_obj = db.session.get(Tenant, tenant.tenant_id)
        send_email("kept@example.com", "Kept", "tenant_suspended", tenant=tenant, tenant_obj=tenant_obj)
        with pytest.raises(RuntimeError), transactions.savepoint():
            send_email("undone@example.com", "Undone", "tenant_suspended", tenant=tenant, tenant_obj=tenant_obj)
            raise RuntimeError("the savepoint's work fails")
        transactions.commit()
    [job] = queues.email.get_jobs()
    assert job.args == (email_to(jobs_app, "kept@example.com").id,)
    assert email_to(jobs_app, "undone@example.com") is None


def test_nothing_is_enqueued_before_the_commit(jobs_app, queues, make_tenant):
    from portal.mail import send_email

    tenant = make_tenant()
    with jobs_app.test_request_context():
        send_email(
            "later@example.com",
            "Later",
            "tenant_suspended",
            tenant=tenant,
            tenant_obj=db.session.get(Tenant, tenant.tenant_id),
        )
        db.session.flush()
        # A worker picking this up now would not see the row yet.
        assert queues.email.count == 0
        transactions.commit()
    assert queues.email.count == 1


def test_failed_commit_drops_its_jobs(jobs_app, queues, make_tenant):
    from portal.errors import Conflict
    from portal.mail import send_email

    tenant = make_tenant()
    with jobs_app.test_request_context():
        send_email(
            "dup@example.com",
            "Dup",
            "tenant_suspended",
            tenant=tenant,
            tenant_obj=db.session.get(Tenant, tenant.tenant_id),
        )
        # The same tenant id twice: the commit fails on the primary key.
        db.session.add(
            Tenant(tenant_id=tenant.tenant_id, company_name="Clash", contact_email="c@example.com", metadata_json={})
        )
        with pytest.raises(Conflict):
            transactions.commit()
    assert queues.email.count == 0
    assert email_to(jobs_app, "dup@example.com") is None


def test_running_deliver_email_twice_changes_nothing_the_second_time(jobs_app, queues, make_tenant):
    from jobs.email import deliver_email

    tenant = make_tenant()
    message_id = queue_suspension_email(jobs_app, tenant, "twice@example.com")
    with jobs_app.app_context():
        deliver_email(message_id)
    first = email_to(jobs_app, "twice@example.com")
    assert (first.status, first.attempts) == ("outbox", 1)

    with jobs_app.app_context():
        deliver_email(message_id)
    second = email_to(jobs_app, "twice@example.com")
    assert (second.status, second.attempts, second.sent_at) == ("outbox", 1, first.sent_at)

    # The queued job, run by the worker afterwards, is a no-op as well.
    queues.work()
    third = email_to(jobs_app, "twice@example.com")
    assert (third.status, third.attempts, third.sent_at) == ("outbox", 1, first.sent_at)


def test_deliver_email_for_a_missing_message_is_a_no_op(app):
    from jobs.email import deliver_email

    with app.app_context():
        assert deliver_email("msg_does_not_exist") is None


def test_smtp_failure_is_recorded_and_the_job_is_retried_later(database_url, redis_url, monkeypatch, make_tenant):
    app = make_app(database_url, REDIS_URL=redis_url, JOBS_INLINE=False, MAIL_SERVER="127.0.0.1", MAIL_PORT=1)
    tenant = make_tenant()
    with own_queues(app, monkeypatch) as queues:
        queue_suspension_email(app, tenant, "unreachable@example.com")
        [job_id] = queues.email.job_ids
        queues.work()
        message = email_to(app, "unreachable@example.com")
        assert message.status == "failed"
        assert message.attempts == 1
        assert message.last_error.startswith(("ConnectionRefusedError", "OSError"))
        # RQ keeps the job for another try rather than dropping it.
        assert Job.fetch(job_id, connection=queues.connection).retries_left == 2
        assert job_id in queues.email.scheduled_job_registry.get_job_ids()


def test_inline_jobs_deliver_at_once_inside_the_unit_of_work(app, make_tenant):
    """The embedded default: the same RQ code path runs the job inline after the commit."""
    assert app.config["JOBS_INLINE"] is True
    tenant = make_tenant()
    queue_suspension_email(app, tenant, "inline@example.com")
    message = email_to(app, "inline@example.com")
    assert (message.status, message.attempts) == ("outbox", 1)
