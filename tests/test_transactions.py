"""Units of work without a transaction (``autocommit_statements``) on PostgreSQL: their
statements run on the autocommit pool, a single usage event costs its one statement there and
nothing on the transactional pool, and the unit of work after them is a transaction again.
Also: the usage outbox announces the first change at once and a burst in few messages."""

import json
import time
import uuid

import pytest
from sqlalchemy import event, select, text

from portal.access import SYSTEM
from portal.extensions import autocommit_engine, db
from portal.infra import cache as key_cache
from portal.infra.transactions import autocommit_statements, commit, rollback
from portal.models import Tenant, UsageEvent
from portal.tenants.services import create_tenant
from tests.api_support import bearer, operator_token, send_json
from tests.conftest import make_app, terminate_backend, unique


class Checkouts:
    def __init__(self, pool):
        self.pool, self.count = pool, 0

    def __enter__(self):
        event.listen(self.pool, "checkout", self._counted)
        return self

    def __exit__(self, *exc):
        event.remove(self.pool, "checkout", self._counted)

    def _counted(self, *args):
        self.count += 1


def app_with_cache(committed_app, redis_url: str, **overrides):
    """``committed_app``'s database with the key and tenant cache on as deployed, subscribed."""
    app = make_app(
        committed_app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=redis_url, API_KEY_CACHE_SECONDS=30, **overrides
    )
    assert key_cache.active_cache(app).wait_until_subscribed(10), "the cache never subscribed to Redis"
    return app


@pytest.fixture
def cached_app(committed_app, redis_url):
    """Real commits, and the key and tenant cache on as deployed: ingestion reads nothing before
    its statement, so it runs without a transaction."""
    return app_with_cache(committed_app, redis_url, METER_CACHE_SECONDS=5)


@pytest.fixture
def tenant_id(committed_app):
    with committed_app.test_request_context():
        tenant = create_tenant(SYSTEM, unique("t"), "Autocommit Ltd", "owner@example.com")
        commit()
        return tenant.tenant_id


def test_a_single_event_takes_one_autocommit_connection_and_none_of_the_transactional_pool(cached_app, tenant_id):
    token = operator_token(cached_app)
    client = cached_app.test_client()
    # An event no quota counts: no quota check is queued (inline in tests, a job of its own).
    body = {"tenant_id": tenant_id, "eventName": "unmetered", "eventIdempotencyKey": "one"}
    assert send_json(client, "post", "/api/v1/events", body, bearer(token)).status_code == 201  # warm
    with cached_app.app_context():
        main, twin = db.engine, autocommit_engine(db.engine)
    assert twin is not main and twin.dialect.name == "postgresql"

    with Checkouts(main.pool) as transactional, Checkouts(twin.pool) as autocommitted:
        response = send_json(client, "post", "/api/v1/events", {**body, "eventIdempotencyKey": "two"}, bearer(token))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert (transactional.count, autocommitted.count) == (0, 1)
    # Stored for good: another connection reads it.
    with main.connect() as connection:
        stored = connection.execute(
            select(UsageEvent.idempotency_key)
            .where(UsageEvent.tenant_id == tenant_id)
            .order_by(UsageEvent.idempotency_key)
        )
        assert stored.scalars().all() == ["one", "two"]
    # A repeat of the key is a duplicate naming the stored event, found on the same pool.
    repeat = send_json(client, "post", "/api/v1/events", {**body, "eventIdempotencyKey": "two"}, bearer(token))
    assert (repeat.status_code, repeat.get_json()["event_id"]) == (200, response.get_json()["event_id"])


def test_a_connection_the_database_dropped_under_a_single_event_is_not_served_again(
    committed_app, redis_url, tenant_id
):
    """The single-event INSERT runs on the driver's own cursor: a connection that broke under it
    must be discarded as SQLAlchemy would, or every event given it after would fail too. (No
    ping here: the connection was used a moment ago.)"""
    app = app_with_cache(committed_app, redis_url, DATABASE_PING_IDLE_SECONDS=3600)
    token = operator_token(app)
    client = app.test_client()

    def post(ref: str):
        body = {"tenant_id": tenant_id, "eventName": "unmetered", "eventIdempotencyKey": ref}
        return send_json(client, "post", "/api/v1/events", body, bearer(token))

    assert post("warm").status_code == 201  # the credential cached: the next runs outside a transaction
    assert post("before").status_code == 201
    with app.app_context():
        twin = autocommit_engine(db.engine)
    assert twin.pool.checkedin() == 1  # the connection the event used, and the next will
    with twin.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    terminate_backend(app.config["SQLALCHEMY_DATABASE_URI"], pid)

    during = post("during")  # the statement that met the dropped connection
    # Not a bug but a passing failure: seed 000's 503, with how long to wait before the retry.
    assert during.status_code == 503, during.get_data(as_text=True)
    assert during.get_json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert during.headers["Retry-After"] == str(during.get_json()["retry_after_seconds"]) == "5"
    after = post("after")
    assert after.status_code == 201, after.get_data(as_text=True)
    with twin.connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        stored = connection.execute(
            select(UsageEvent.idempotency_key).where(UsageEvent.tenant_id == tenant_id)
        ).scalars()
        assert sorted(stored) == ["after", "before", "warm"]
    with app.app_context():
        db.engine.dispose()


def test_an_event_stored_without_a_transaction_is_counted_by_the_next_check(cached_app, tenant_id):
    """Its commit has no session transaction to end: the cached usage is evicted as the
    statement returns, not by a commit hook."""
    token = operator_token(cached_app)
    client = cached_app.test_client()

    def used() -> int:
        response = client.get(f"/api/v1/entitlements/{tenant_id}/pipeline_runs", headers=bearer(token))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["data"]["usage"]["used"]

    before = used()
    assert used() == before  # warm: served from the cache
    for ref in ("a", "b", "c"):
        body = {"tenant_id": tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": ref}
        assert send_json(client, "post", "/api/v1/events", body, bearer(token)).status_code == 201
        assert used() == before + "abc".index(ref) + 1


def test_a_usage_change_noted_before_its_write_waits_for_the_commit(cached_app, tenant_id):
    """Noted with no transaction open yet (a rebuild notes before it writes): a rollback must
    leave the cached usage alone, so the next check is still answered from the cache."""
    token = operator_token(cached_app)
    client = cached_app.test_client()
    path = f"/api/v1/entitlements/{tenant_id}/pipeline_runs"
    for _ in range(2):
        assert client.get(path, headers=bearer(token)).status_code == 200
    with cached_app.test_request_context():
        key_cache.note_usage_changed(db.session(), {tenant_id})
        rollback()
        main, twin = db.engine, autocommit_engine(db.engine)
    with Checkouts(main.pool) as transactional, Checkouts(twin.pool) as autocommitted:
        assert client.get(path, headers=bearer(token)).status_code == 200
    assert (transactional.count, autocommitted.count) == (0, 0)


def test_the_unit_of_work_after_an_autocommitted_one_is_a_transaction_again(committed_app, tenant_id):
    with committed_app.test_request_context():
        autocommit_statements()
        autocommit_statements()  # a second call changes nothing (and makes no twin of the twin)
        assert db.session.get_bind() is autocommit_engine(db.engine)
        assert db.session.get(Tenant, tenant_id).company_name == "Autocommit Ltd"
        commit()
        # The same request, next unit of work: a rollback undoes it.
        assert db.session.get_bind() is db.engine
        db.session.get(Tenant, tenant_id).company_name = "Never Saved Ltd"
        db.session.flush()
        rollback()
    with committed_app.app_context():
        assert db.session.get(Tenant, tenant_id).company_name == "Autocommit Ltd"


def test_an_autocommitted_write_stays_written_whatever_follows_it(committed_app, tenant_id):
    with committed_app.test_request_context():
        autocommit_statements()
        db.session.execute(
            text("UPDATE tenants SET company_name = 'Written Ltd' WHERE tenant_id = :id"), {"id": tenant_id}
        )
        rollback()  # nothing to roll back: the statement was its own transaction
    with committed_app.app_context():
        assert db.session.get(Tenant, tenant_id).company_name == "Written Ltd"


def test_disposing_the_engine_closes_the_autocommit_pool_too(committed_app, tenant_id):
    """A worker disposes its engine before RQ forks; the twin's sockets must not be inherited."""
    with committed_app.test_request_context():
        autocommit_statements()
        db.session.get(Tenant, tenant_id)
        commit()
        twin = autocommit_engine(db.engine)
        assert twin.pool.checkedin() >= 1
        db.engine.dispose()
        assert twin.pool.checkedin() == 0


def test_the_usage_outbox_sends_the_first_change_at_once_and_a_burst_in_few_messages(redis_url):
    import redis

    channel = f"test-outbox-{uuid.uuid4().hex}"
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(channel)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    outbox = key_cache._UsageOutbox(redis_url, channel)

    def received(timeout: float) -> list[set[str]]:
        messages, deadline = [], time.monotonic() + timeout
        while (message := listener.get_message(timeout=max(deadline - time.monotonic(), 0))) is not None:
            messages.append(set(json.loads(message["data"])["tenants"]))
        return messages

    try:
        outbox.add({"first"})
        # Sent without waiting out the gathering interval (measured generously: a busy machine).
        first = listener.get_message(timeout=key_cache.USAGE_GATHER_SECONDS * 50)
        assert first is not None and set(json.loads(first["data"])["tenants"]) == {"first"}

        started = time.monotonic()
        for n in range(200):
            outbox.add({f"t{n % 7}"})
            time.sleep(0.0005)
        elapsed = time.monotonic() - started
        messages = received(1.0)
        assert set().union(*messages) == {f"t{n}" for n in range(7)}
        # One message per interval at most (sleeping never ends an interval early).
        assert len(messages) <= elapsed / key_cache.USAGE_GATHER_SECONDS + 2
    finally:
        listener.close()
