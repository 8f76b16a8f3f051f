"""The per-process API key cache: warm reads touch no database, and every change that matters
(revocation, suspension, a new company name) is seen by the very next request, in this process
and in another one, because commits announce it through Redis.

Needs a real Redis (REDIS_URL); the cache does not exist without one.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.infra import cache as key_cache
from portal.models import ApiKey, utcnow
from tests.api_support import assert_envelope, bearer, issue_key, limit_tenant_to, operator_token, send_json, with_key
from tests.conftest import database, make_app, unique

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache_app(database_url, redis_url):
    """The app as production runs it with Redis: the key cache on, its listener subscribed."""
    app = make_app(database_url, REDIS_URL=redis_url, API_KEY_CACHE_SECONDS=30)
    assert key_cache.active_cache(app).wait_until_subscribed(10), "the cache never subscribed to Redis"
    return app


@pytest.fixture
def cache_client(cache_app):
    return cache_app.test_client()


@pytest.fixture
def tenant_and_key(cache_app, make_tenant):
    tenant = make_tenant()
    key, plaintext = issue_key(cache_app, tenant)
    return tenant, key, plaintext


class DatabaseUse:
    def __init__(self):
        self.statements: list[str] = []
        self.transactions = 0  # times a session took a connection


@contextmanager
def database_use():
    """Every SQL statement (savepoint bookkeeping aside) and connection a session takes, anywhere."""
    use = DatabaseUse()

    def on_statement(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            use.statements.append(statement)

    def on_begin(session, transaction, connection):
        use.transactions += 1

    event.listen(Engine, "before_cursor_execute", on_statement)
    event.listen(Session, "after_begin", on_begin)
    try:
        yield use
    finally:
        event.remove(Engine, "before_cursor_execute", on_statement)
        event.remove(Session, "after_begin", on_begin)


def get_tenant(client, tenant_id, plaintext):
    return client.get(f"/api/v1/tenants/{tenant_id}", headers=with_key(plaintext))


def warm(client, tenant_id, plaintext):
    """Two reads: the first fills the cache, the second is a hit."""
    for _ in range(2):
        assert get_tenant(client, tenant_id, plaintext).status_code == 200


# --- warm reads -------------------------------------------------------------------------


def test_warm_authenticated_get_issues_no_sql_and_still_returns_the_tenant(cache_client, tenant_and_key):
    tenant, _, plaintext = tenant_and_key
    cold = get_tenant(cache_client, tenant.tenant_id, plaintext)
    with database_use() as use:
        response = get_tenant(cache_client, tenant.tenant_id, plaintext)
    assert response.status_code == 200
    assert response.get_json() == cold.get_json()
    assert response.get_json()["company_name"] == tenant.company_name
    assert use.statements == []
    assert use.transactions == 0


def test_warm_reads_of_other_endpoints_work_from_the_cached_tenant(cache_client, tenant_and_key):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    response = cache_client.get(f"/api/v1/tenants/{tenant.tenant_id}/api-keys", headers=with_key(plaintext))
    assert response.status_code == 200
    assert [k["api_key_id"] for k in response.get_json()["api_keys"]] == [key.id]


def test_every_tenant_read_endpoint_works_from_a_warm_cache(cache_client, tenant_and_key):
    """A cached tenant is detached (columns only): a read endpoint that lazy-loaded a relationship
    from it would fail here, on its second call."""
    from portal.api.registry import OPERATIONS, TENANT

    tenant, _, plaintext = tenant_and_key  # a key with every scope
    warm(cache_client, tenant.tenant_id, plaintext)
    reads = [op for op in OPERATIONS if op.method == "GET" and op.auth == TENANT and "tenant_id>" in op.rule]
    assert len(reads) >= 5
    for op in reads:
        path = re.sub(r"<[^>]+>", "unknown", "/api/v1" + re.sub(r"<[^>]*tenant_id>", tenant.tenant_id, op.rule))
        for _ in range(2):
            response = cache_client.get(path, headers=with_key(plaintext))
            assert response.status_code in (200, 404), (path, response.get_data(as_text=True)[:300])


def test_entitlement_checks_and_usage_reads_work_from_a_warm_cache(cache_client, tenant_and_key):
    """Their tenant comes from the cache, detached: they must read it by id, never lazily."""
    tenant, _, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    for path in (
        f"/api/v1/entitlements/{tenant.tenant_id}/pipeline_runs",
        f"/api/v1/tenants/{tenant.tenant_id}/usage?month=2025-11",
        f"/api/v1/tenants/{tenant.tenant_id}/usage/history",
    ):
        for _ in range(2):
            response = cache_client.get(path, headers=with_key(plaintext))
            assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])


def test_cache_is_off_without_redis(database_url, make_tenant):
    app = make_app(database_url, REDIS_URL="", API_KEY_CACHE_SECONDS=30)
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = app.test_client()
    get_tenant(client, tenant.tenant_id, plaintext)
    for _ in range(2):
        with database_use() as use:
            assert get_tenant(client, tenant.tenant_id, plaintext).status_code == 200
        assert len(use.statements) == 1, use.statements


def test_cache_is_off_when_its_lifetime_is_zero(database_url, redis_url, make_tenant):
    app = make_app(database_url, REDIS_URL=redis_url, API_KEY_CACHE_SECONDS=0)
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = app.test_client()
    get_tenant(client, tenant.tenant_id, plaintext)
    with database_use() as use:
        assert get_tenant(client, tenant.tenant_id, plaintext).status_code == 200
    assert len(use.statements) == 1, use.statements


@pytest.fixture
def app_without_reachable_redis(database_url):
    # A fixture, not in the test: migrating reconfigures logging, which would drop caplog's handler.
    return make_app(database_url, REDIS_URL="redis://127.0.0.1:1/0", API_KEY_CACHE_SECONDS=30)


def test_reads_query_the_database_while_redis_is_unreachable(app_without_reachable_redis, make_tenant):
    # No subscription, no cache: nothing could tell this process about a revocation.
    app = app_without_reachable_redis
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = app.test_client()
    get_tenant(client, tenant.tenant_id, plaintext)
    with database_use() as use:
        assert get_tenant(client, tenant.tenant_id, plaintext).status_code == 200
    assert len(use.statements) == 1, use.statements


def test_reads_query_the_database_from_a_lost_subscription_until_it_is_back(
    cache_app, cache_client, tenant_and_key, redis_url, monkeypatch
):
    import redis

    tenant, _, plaintext = tenant_and_key
    cache = key_cache.active_cache(cache_app)
    warm(cache_client, tenant.tenant_id, plaintext)
    monkeypatch.setattr(key_cache, "_RECONNECT_DELAY", 3.0)  # time to look while it is down
    server = redis.Redis.from_url(redis_url)
    ids = [c["id"] for c in server.client_list() if c.get("name") == key_cache.listener_name()]
    assert ids, "no listener connection of this process"
    for client_id in ids:
        server.client_kill_filter(_id=client_id)
    deadline = time.monotonic() + 2
    while cache.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cache.subscribed and len(cache) == 0
    with database_use() as use:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    assert len(use.statements) == 1, "a deaf cache must not answer"

    assert cache.wait_until_subscribed(10)
    warm(cache_client, tenant.tenant_id, plaintext)
    with database_use() as use:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    assert use.statements == []


def test_a_write_succeeds_when_its_invalidation_cannot_be_published(app_without_reachable_redis, make_tenant, caplog):
    app = app_without_reachable_redis
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    response = send_json(
        app.test_client(),
        "patch",
        f"/api/v1/tenants/{tenant.tenant_id}",
        {"company_name": "Renamed Ltd"},
        with_key(plaintext),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["company_name"] == "Renamed Ltd"
    assert "could not publish the invalidation of 1 tenant(s)" in caplog.text
    assert "127.0.0.1:1" not in caplog.text  # no connection details (a URL may carry a password)


def _operator_token_row(app, plaintext):
    from portal.models import OperatorToken
    from portal.security import hash_token

    with app.app_context():
        return db.session.execute(
            sa.select(OperatorToken).where(OperatorToken.token_hash == hash_token(plaintext))
        ).scalar_one()


def test_warm_operator_reads_do_not_look_the_token_up(cache_client, cache_app, tenant_and_key):
    tenant, _, _ = tenant_and_key
    token = bearer(operator_token(cache_app))
    url = f"/api/v1/entitlements/{tenant.tenant_id}/pipeline_runs"
    assert cache_client.get(url, headers=token).status_code == 200
    with database_use() as use:
        response = cache_client.get(url, headers=token)
    assert response.status_code == 200 and response.get_json()["data"]["isAllowed"] is True
    assert use.statements and not [s for s in use.statements if "operator_tokens" in s], use.statements


def test_revoking_an_operator_token_refuses_the_next_get(cache_app, cache_client, tenant_and_key):
    from portal.access import SYSTEM
    from portal.api_keys.services import revoke_operator_token
    from portal.infra.transactions import commit

    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)
    url = f"/api/v1/tenants/{tenant.tenant_id}"
    for _ in range(2):
        assert cache_client.get(url, headers=bearer(plaintext)).status_code == 200
    with cache_app.test_request_context():
        revoke_operator_token(SYSTEM, db.session.merge(_operator_token_row(cache_app, plaintext)))
        commit()
    assert_envelope(cache_client.get(url, headers=bearer(plaintext)), 401, "INVALID_API_KEY")


def _revoke_unannounced(app, token_id):
    with app.app_context():  # revoked behind the ORM's back: nothing announced
        db.session.execute(
            sa.text("UPDATE operator_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"), {"id": token_id}
        )
        db.session.commit()


def test_a_write_always_checks_the_operator_token_in_the_database(cache_app, cache_client, tenant_and_key):
    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)
    url = f"/api/v1/entitlements/{tenant.tenant_id}/pipeline_runs"
    for _ in range(2):
        assert cache_client.get(url, headers=bearer(plaintext)).status_code == 200
    _revoke_unannounced(cache_app, _operator_token_row(cache_app, plaintext).id)
    assert cache_client.get(url, headers=bearer(plaintext)).status_code == 200  # the cached read
    grant = {"tenant_id": tenant.tenant_id, "amount": 500, "reason": "after revoke"}
    assert_envelope(
        send_json(cache_client, "post", "/api/v1/credits/grant", grant, bearer(plaintext)), 401, "INVALID_API_KEY"
    )


def test_usage_ingestion_authenticates_from_the_cache_like_a_read(cache_app, cache_client, tenant_and_key):
    """Ingestion is the operator's highest-volume write: its token comes from the cache, so
    only an announced revocation (or the TTL) refuses it; a revocation through the portal is."""
    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)

    def post(ref):
        event = {"tenant_id": tenant.tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": ref}
        return send_json(cache_client, "post", "/api/v1/events", event, bearer(plaintext))

    assert post("warm").status_code == 201
    with database_use() as use:
        assert post("cached").status_code == 201
    assert not [s for s in use.statements if "operator_tokens" in s], use.statements
    _revoke_unannounced(cache_app, _operator_token_row(cache_app, plaintext).id)
    assert post("unannounced").status_code == 201

    from portal.access import SYSTEM
    from portal.api_keys.services import revoke_operator_token
    from portal.infra.transactions import commit

    with cache_app.test_request_context():
        token = db.session.merge(_operator_token_row(cache_app, plaintext))
        token.revoked_at = None  # undo the unannounced revocation, then revoke as the console does
        commit()
        revoke_operator_token(SYSTEM, db.session.merge(_operator_token_row(cache_app, plaintext)))
        commit()
    assert_envelope(post("announced"), 401, "INVALID_API_KEY")


def test_cached_reads_still_count_against_the_keys_rate_limit(database_url, redis_url, make_tenant):
    app = make_app(database_url, REDIS_URL=redis_url, API_KEY_CACHE_SECONDS=30, RATELIMIT_ENABLED=True)
    assert key_cache.active_cache(app).wait_until_subscribed(10)
    tenant = make_tenant()
    limit_tenant_to(app, tenant, per_minute=3)
    _, plaintext = issue_key(app, tenant)
    client = app.test_client()
    statuses = [get_tenant(client, tenant.tenant_id, plaintext).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_an_entry_older_than_its_lifetime_is_read_again(cache_client, tenant_and_key, monkeypatch):
    tenant, _, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    later = time.monotonic() + 31
    monkeypatch.setattr(key_cache.time, "monotonic", lambda: later)
    with database_use() as use:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    assert len(use.statements) == 1, use.statements


# --- changes are seen at once -------------------------------------------------------------


def test_revoking_the_key_in_the_portal_refuses_the_next_get(cache_app, cache_client, tenant_and_key, make_user, login):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    browser = cache_app.test_client()
    login(browser, make_user(tenant, role="owner"))
    assert browser.post(f"/api-keys/{key.id}/revoke", data={"reason": "leaked"}).status_code == 303
    assert_envelope(get_tenant(cache_client, tenant.tenant_id, plaintext), 401, "INVALID_API_KEY")


def test_revoking_the_key_through_the_api_refuses_the_next_get(cache_app, cache_client, tenant_and_key):
    tenant, key, plaintext = tenant_and_key
    _, admin_key = issue_key(cache_app, tenant, name="Admin key")
    warm(cache_client, tenant.tenant_id, plaintext)
    response = send_json(
        cache_client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/api-keys/{key.id}/revoke",
        {"revocation_reason": "rotated"},
        with_key(admin_key),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_envelope(get_tenant(cache_client, tenant.tenant_id, plaintext), 401, "INVALID_API_KEY")
    # The key that revoked it, cached as well, still works.
    assert get_tenant(cache_client, tenant.tenant_id, admin_key).status_code == 200


def test_suspending_the_tenant_refuses_the_next_get_of_a_closed_endpoint(cache_app, cache_client, tenant_and_key):
    tenant, _, plaintext = tenant_and_key
    keys_url = f"/api/v1/tenants/{tenant.tenant_id}/api-keys"
    warm(cache_client, tenant.tenant_id, plaintext)
    assert cache_client.get(keys_url, headers=with_key(plaintext)).status_code == 200
    response = send_json(
        cache_client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/suspend",
        {"reason": "payment_failed"},
        bearer(operator_token(cache_app)),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_envelope(cache_client.get(keys_url, headers=with_key(plaintext)), 403, "CUSTOMER_SUSPENDED")
    assert get_tenant(cache_client, tenant.tenant_id, plaintext).get_json()["status"] == "suspended"


def test_a_new_company_name_is_visible_on_the_next_get(cache_client, tenant_and_key):
    tenant, _, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    response = send_json(
        cache_client,
        "patch",
        f"/api/v1/tenants/{tenant.tenant_id}",
        {"company_name": "Renamed Ltd", "metadata": {"tier": "gold"}},
        with_key(plaintext),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = get_tenant(cache_client, tenant.tenant_id, plaintext).get_json()
    assert body["company_name"] == "Renamed Ltd"
    assert body["metadata"] == {"tier": "gold"}


def test_an_expired_key_is_refused_even_when_cached(cache_client, tenant_and_key, monkeypatch):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    after_expiry = key.expires_at + timedelta(seconds=1)
    monkeypatch.setattr("portal.models.api_key.utcnow", lambda: after_expiry)
    with database_use() as use:
        assert_envelope(get_tenant(cache_client, tenant.tenant_id, plaintext), 401, "INVALID_API_KEY")
    assert use.statements == []  # refused by the cached entry itself


def test_a_write_always_checks_the_key_in_the_database(cache_app, cache_client, tenant_and_key):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    # Revoked behind the ORM's back: no commit hook sees it, so nothing is announced (the
    # cache's lifetime covers that case for reads).
    with cache_app.app_context():
        db.session.execute(
            sa.text("UPDATE api_keys SET revoked_at = :now WHERE id = :id"),
            {"now": utcnow().replace(tzinfo=None), "id": key.id},
        )
        db.session.commit()
    assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200  # a read, from the cache
    response = send_json(
        cache_client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/api-keys",
        {"key_name": "sneaky"},
        with_key(plaintext),
    )
    assert_envelope(response, 401, "INVALID_API_KEY")


def test_a_bulk_update_of_tenants_empties_the_cache(cache_app, cache_client, tenant_and_key):
    tenant, _, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    from portal.models import Tenant

    with cache_app.app_context():
        db.session.execute(sa.update(Tenant).where(Tenant.tenant_id == tenant.tenant_id).values(status="suspended"))
        db.session.commit()
    assert get_tenant(cache_client, tenant.tenant_id, plaintext).get_json()["status"] == "suspended"


def test_a_rolled_back_change_announces_nothing(cache_app, cache_client, tenant_and_key):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    with cache_app.app_context():
        db.session.get(ApiKey, key.id).name = "never saved"
        db.session.flush()
        db.session.rollback()
    with database_use() as use:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    assert use.statements == []


def test_an_invalidation_during_a_lookup_keeps_that_lookup_out_of_the_cache(cache_app, cache_client, tenant_and_key):
    tenant, _, plaintext = tenant_and_key
    cache = key_cache.active_cache(cache_app)
    cache.evict({tenant.tenant_id})

    def invalidate_meanwhile(conn, cursor, statement, *args):
        if "FROM api_keys" in statement:
            cache.evict({tenant.tenant_id})  # as if another process committed a change just now

    event.listen(Engine, "before_cursor_execute", invalidate_meanwhile)
    try:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    finally:
        event.remove(Engine, "before_cursor_execute", invalidate_meanwhile)
    with database_use() as use:
        assert get_tenant(cache_client, tenant.tenant_id, plaintext).status_code == 200
    assert len(use.statements) == 1, "a lookup overtaken by an invalidation must not be cached"


def test_last_used_is_still_written_at_most_once_a_minute_from_cached_reads(cache_app, cache_client, tenant_and_key):
    tenant, key, plaintext = tenant_and_key
    warm(cache_client, tenant.tenant_id, plaintext)
    with cache_app.app_context():
        db.session.get(ApiKey, key.id).last_used_at = utcnow() - timedelta(minutes=2)
        db.session.commit()
    get_tenant(cache_client, tenant.tenant_id, plaintext)  # read again from the database, refreshes it
    with database_use() as use:
        get_tenant(cache_client, tenant.tenant_id, plaintext)
    assert use.statements == []
    with cache_app.app_context():
        db.session.expire_all()
        assert utcnow() - db.session.get(ApiKey, key.id).last_used_at < timedelta(seconds=30)


# --- across processes -----------------------------------------------------------------------

SERVER = """
from werkzeug.serving import make_server
from portal import create_app
from portal.infra import cache

app = create_app()
with app.app_context():
    assert cache.active_cache().wait_until_subscribed(10)
server = make_server("127.0.0.1", 0, app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture
def portal_process(tmp_path_factory, redis_url):
    """(this process's app, port of the portal served by another process), one committed database."""
    with database("keycache", tmp_path_factory) as database_url:
        app = make_app(database_url, REDIS_URL=redis_url, API_KEY_CACHE_SECONDS=30)
        env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PORTAL_ENV")}
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "RATELIMIT_ENABLED": "false",
                "SECRET_KEY": "test-secret-key",
                "JOBS_INLINE": "true",
                "PYTHONPATH": str(ROOT),
            }
        )
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", SERVER],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            port = process.stdout.readline().strip()
            assert port.isdigit(), process.stderr.read() if process.poll() is not None else "no port"
            yield app, int(port)
        finally:
            process.terminate()
            process.wait(timeout=10)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def test_revoking_in_one_process_refuses_the_key_in_another_within_a_second(portal_process):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key, revoke_key
    from portal.infra.transactions import commit
    from portal.models import Tenant
    from portal.tenants.services import create_tenant

    app, port = portal_process
    with app.test_request_context():
        tenant = create_tenant(SYSTEM, unique("t"), "Cross Process Ltd", "owner@example.com")
        key, plaintext = create_key(SYSTEM, tenant, "shared")
        commit()
        tenant_id, key_id = tenant.tenant_id, key.id
    other = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def get() -> tuple[int, dict]:
        other.request("GET", f"/api/v1/tenants/{tenant_id}", headers=with_key(plaintext))
        response = other.getresponse()
        return response.status, json.loads(response.read())

    try:
        status, cold = get()
        assert status == 200
        assert get() == (200, cold)
        # Renamed behind the ORM's back, unannounced: the other process still answers the old
        # name, so what it answers below comes from its cache, not from the database.
        with app.app_context():
            db.session.execute(
                sa.text("UPDATE tenants SET company_name = 'Unannounced' WHERE tenant_id = :id"), {"id": tenant_id}
            )
            db.session.commit()
        assert get() == (200, {**cold, "company_name": "Cross Process Ltd"})

        with app.test_request_context():
            revoke_key(SYSTEM, db.session.get(Tenant, tenant_id), db.session.get(ApiKey, key_id), "leaked")
            commit()
        deadline = time.monotonic() + 1
        status, _ = get()
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
            status, _ = get()
        assert status == 401
        assert get()[0] == 401
    finally:
        other.close()


# --- entitlement snapshots ------------------------------------------------------------------


def _check(client, tenant_id, plaintext):
    response = client.get(f"/api/v1/entitlements/{tenant_id}/pipeline_runs", headers=bearer(plaintext))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["data"]


def test_a_warm_entitlement_check_issues_no_sql(cache_app, cache_client, tenant_and_key):
    tenant, _, _ = tenant_and_key
    cache_app.config["METER_CACHE_SECONDS"] = 5  # as deployed (tests read meters afresh by default)
    plaintext = operator_token(cache_app)
    cold = _check(cache_client, tenant.tenant_id, plaintext)
    with database_use() as use:
        assert _check(cache_client, tenant.tenant_id, plaintext) == cold
    assert use.statements == [] and use.transactions == 0, use.statements


def test_an_ingested_event_and_a_suspension_are_seen_by_the_next_check(cache_app, cache_client, tenant_and_key):
    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)
    before = _check(cache_client, tenant.tenant_id, plaintext)
    assert before["isAllowed"] is True
    for ref in ("one", "two"):
        event = {"tenant_id": tenant.tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": ref}
        assert send_json(cache_client, "post", "/api/v1/events", event, bearer(plaintext)).status_code == 201
    after = _check(cache_client, tenant.tenant_id, plaintext)
    assert after["usage"]["used"] == before["usage"]["used"] + 2

    response = send_json(
        cache_client,
        "post",
        f"/api/v1/tenants/{tenant.tenant_id}/suspend",
        {"reason": "payment_failed"},
        bearer(plaintext),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    suspended = _check(cache_client, tenant.tenant_id, plaintext)
    assert (suspended["isAllowed"], suspended["meta"]["reason"]["code"]) == (False, "TENANT_SUSPENDED")


def test_deleting_events_is_seen_by_the_next_check(cache_app, cache_client, tenant_and_key):
    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)
    event = {"tenant_id": tenant.tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": "gone"}
    assert send_json(cache_client, "post", "/api/v1/events", event, bearer(plaintext)).status_code == 201
    used = _check(cache_client, tenant.tenant_id, plaintext)["usage"]["used"]
    response = send_json(
        cache_client,
        "post",
        "/api/v1/events/delete-by-refs",
        {"tenant_id": tenant.tenant_id, "refs": ["gone"]},
        bearer(plaintext),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _check(cache_client, tenant.tenant_id, plaintext)["usage"]["used"] == used - 1


def test_events_and_a_suspension_in_one_process_are_seen_by_checks_in_another(portal_process):
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.models import Tenant
    from portal.tenants.services import create_tenant, suspend

    app, port = portal_process
    with app.test_request_context():
        tenant = create_tenant(SYSTEM, unique("t"), "Cross Process Ltd", "owner@example.com")
        commit()
        tenant_id = tenant.tenant_id
    plaintext = operator_token(app)
    other = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    client = app.test_client()

    def check() -> dict:
        other.request("GET", f"/api/v1/entitlements/{tenant_id}/pipeline_runs", headers=bearer(plaintext))
        response = other.getresponse()
        assert response.status == 200
        return json.loads(response.read())["data"]

    def eventually(predicate) -> dict:
        deadline = time.monotonic() + 1
        data = check()
        while not predicate(data) and time.monotonic() < deadline:
            time.sleep(0.01)
            data = check()
        return data

    try:
        used = check()["usage"]["used"]
        assert check()["usage"]["used"] == used  # warm in the other process
        event = {"tenant_id": tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": "x-1"}
        assert send_json(client, "post", "/api/v1/events", event, bearer(plaintext)).status_code == 201
        assert eventually(lambda d: d["usage"]["used"] == used + 1)["usage"]["used"] == used + 1
        with app.test_request_context():
            suspend(SYSTEM, db.session.get(Tenant, tenant_id), "payment_failed")
            commit()
        assert eventually(lambda d: not d["isAllowed"])["meta"]["reason"]["code"] == "TENANT_SUSPENDED"
    finally:
        other.close()


def test_a_period_renewed_by_the_billing_run_is_seen_by_the_next_check(cache_app, cache_client, tenant_and_key):
    """The run writes the periods it moves on behind the unit of work (``bulk.write_changes``):
    the snapshot cached before must still go, or the check goes on counting the old period."""
    from portal.billing.periods import add_interval, period_bounds
    from portal.billing.runs import create_run, execute
    from portal.billing.subscriptions import to_second
    from portal.infra.transactions import commit
    from portal.usage.services import subscription_for
    from tests.usage_support import record

    tenant, _, _ = tenant_and_key
    plaintext = operator_token(cache_app)
    with cache_app.app_context():
        # A monthly period that ended within the last few days (an hour ago but for month
        # lengths), not yet billed.
        subscription = subscription_for(tenant.tenant_id)
        anchor = add_interval(to_second(utcnow() - timedelta(hours=1)), "month", -1)
        subscription.billing_anchor, subscription.period_index = anchor, 0
        subscription.current_period_start, subscription.current_period_end = period_bounds(anchor, "month", 0)
        commit()
        record(tenant.tenant_id, "pipeline_run", at=subscription.current_period_end - timedelta(minutes=1))
    used = _check(cache_client, tenant.tenant_id, plaintext)["usage"]["used"]
    assert used >= 1
    assert _check(cache_client, tenant.tenant_id, plaintext)["usage"]["used"] == used  # warm

    with cache_app.app_context():
        run = create_run("test", utcnow())
        commit()
        assert execute(run, inline=True).invoices_created == 1

    assert _check(cache_client, tenant.tenant_id, plaintext)["usage"]["used"] == 0  # the new period's
