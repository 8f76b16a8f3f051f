"""Fixtures: the app (schema built by the real migrations), a database rolled back per
test, clients, factories that always take a tenant, and the real local services.

Runs on SQLite by default; on PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
set (CI sets both). Under CI=true a test that needs an unreachable service fails.
"""

import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event
from sqlalchemy.engine import make_url

from portal import create_app, security
from portal.extensions import PortalSession, db

IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery staple"
# Unique per run, so two suites on one PostgreSQL server never drop each other's databases.
RUN_ID = uuid.uuid4().hex[:8]

# Still argon2id, at its lowest cost: the production cost is ~0.5 s a hash on this machine,
# and the suite hashes on every sign-up, sign-in and member it creates.
security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


# Started first under pytest-xdist (`--dist worksteal`, pyproject.toml): the modules that take a
# worker a minute or more, longest first (measured with --durations). A worker that runs out of
# tests steals the other's last ones, which are then short: no worker is left alone at the end
# with a long test. The other modules keep their order.
LONGEST_FIRST = (
    "tests/test_api_live_conformance.py",
    "tests/test_billing_runs.py",
    "tests/browser/test_every_page_fits.py",
    "tests/test_billing_run_resume.py",
    "tests/test_billing_run_workers.py",
    "tests/test_page_queries.py",
    "tests/test_billing_properties.py",
    "tests/test_api_key_cache.py",
    "tests/test_webhooks_worker.py",
    "tests/test_credits_properties.py",
    "tests/test_migrations.py",
)


def pytest_collection_modifyitems(items):
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: modules stay whole


def need_service(what: str, reason: str) -> None:
    """Skip locally; under CI a missing service is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(f"{what} not available: {reason}")


def terminate_backend(database_url: str, pid: int) -> None:
    """Have PostgreSQL drop the connection served by backend ``pid``, as a restart or a network
    fault would, behind the pool's back."""
    import psycopg

    plain = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@contextmanager
def database(kind: str, tmp_path_factory):
    """A fresh database for one purpose ("test", "live", "migrations"), dropped afterwards.

    SQLite file by default; a scratch PostgreSQL database on DATABASE_URL's server when set.
    """
    base = os.environ.get("DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp(kind) / (kind + '.db')}"
        return
    import psycopg

    name = f"portal_{kind}_{RUN_ID}_{_worker_suffix()}_{uuid.uuid4().hex[:6]}"
    admin_url = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        need_service("PostgreSQL", str(error))
    try:
        yield make_url(base).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fix_sqlite_savepoints(engine, begin: str = "BEGIN") -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy drive it.
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql(begin)


def make_app(database_url: str, sqlite_begin: str = "BEGIN", **overrides):
    """``sqlite_begin="BEGIN IMMEDIATE"`` for a server that writes from several threads at once:
    a deferred transaction that later wants to write fails with "database is locked" at once,
    where an immediate one waits its turn."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "JOBS_INLINE": True,
        "MAIL_SERVER": "",
        "PUBLIC_BASE_URL": "http://portal.test",
        "SERVER_NAME": None,
        # Tests roll their transactions back behind the session's back: a meter read by one
        # test must not be reused by the next (tests/test_usage_rollups.py turns it on).
        "METER_CACHE_SECONDS": 0,
        # Requests are counted in Redis at once, so a test reads them straight after
        # (tests/test_api_usage.py checks the counts added up over a second).
        "API_REQUEST_COUNT_SECONDS": 0,
        # The billing tests travel in time (subscriptions in 2027, runs as of months later), as
        # staging does; tests of the production behaviour (a future run is a preview) turn it off.
        "BILLING_TEST_CLOCK": True,
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade(directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
        _fix_sqlite_savepoints(db.engine, sqlite_begin)
        # What `make run` does after migrating: every tenant starts a subscription on a plan.
        from portal.billing.catalog import load_catalog
        from portal.billing.plans import sync_catalog
        from portal.billing.taxes import sync_tax_rates
        from portal.usage.meters import sync_meters

        catalog = load_catalog()
        sync_catalog(catalog.plans)
        sync_meters(catalog.meters)
        sync_tax_rates(catalog.tax_rates)
        db.session.commit()
    return app


class _ConnectionBoundSession(PortalSession):
    """Flask-SQLAlchemy's get_bind ignores the session's own bind and picks the app's engine,
    which would commit past the test's transaction; the test's connection must win."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind if bind is not None else self.bind


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    with database("test", tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="session")
def app(database_url):
    return make_app(database_url)


@pytest.fixture(autouse=True)
def _db_transaction(request, app):
    """Each test runs inside a transaction that is rolled back afterwards.

    Code under test commits as usual; those commits release savepoints only. Tests with a
    server of their own (another thread or process) use a committed database instead.
    """
    if {"live_server", "portal_process", "gunicorn_portal", "stripe_portal", "own_database"} & set(
        request.fixturenames
    ):
        yield
        return
    # No app context stays pushed during the test: each request must get its own `g`,
    # or Flask-Login's cached user would leak from one client to the next.
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original_session = db.session
        db.session = db._make_scoped_session(
            {
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
                "expire_on_commit": False,
                "class_": _ConnectionBoundSession,
            }
        )
    try:
        yield
    finally:
        with app.app_context():
            db.session.remove()
            db.session = original_session
            outer.rollback()
            connection.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    """A request context for calling services directly (not for tests that also use a client)."""
    with app.test_request_context():
        yield


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class Member:
    user: object
    membership: object
    email: str
    password: str = PASSWORD


@pytest.fixture
def make_tenant(app):
    """make_tenant(status="active") -> Tenant, with a fresh owner."""

    def factory(company_name: str | None = None, status: str = "active", owner_email: str | None = None):
        from portal.access import SYSTEM
        from portal.infra.transactions import commit
        from portal.models import Membership
        from portal.tenants.services import create_tenant

        with app.test_request_context():
            tenant_id = unique("t")
            owner = _create_user(owner_email or f"owner-{tenant_id}@example.com")
            tenant = create_tenant(SYSTEM, tenant_id, company_name or f"Company {tenant_id}", owner.email)
            db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=owner.id, role="owner"))
            tenant.status = status
            if status == "suspended":
                tenant.suspension_reason = "payment_failed"
            commit()
            return tenant

    return factory


def _create_user(email: str, name: str = "", is_operator: bool = False):
    from portal.auth.services import create_user

    return create_user(email, PASSWORD, name or email.split("@")[0].title(), is_operator=is_operator)


@pytest.fixture
def make_user(app):
    """make_user(tenant=t, role="admin") -> Member (user + membership); tenant is required."""

    def factory(tenant, role: str = "developer", email: str | None = None, name: str = ""):
        from portal.infra.transactions import commit
        from portal.models import Membership, User

        with app.test_request_context():
            if role == "owner":
                membership = db.session.query(Membership).filter_by(tenant_id=tenant.tenant_id, role="owner").one()
                user = db.session.get(User, membership.user_id)
                return Member(user=user, membership=membership, email=user.email)
            user = _create_user(email or f"{unique(role)}@example.com", name)
            membership = Membership(tenant_id=tenant.tenant_id, user_id=user.id, role=role)
            db.session.add(membership)
            commit()
            return Member(user=user, membership=membership, email=user.email)

    return factory


@pytest.fixture
def make_operator(app):
    def factory(email: str | None = None):
        from portal.infra.transactions import commit

        with app.test_request_context():
            user = _create_user(email or f"{unique('op')}@example.com", is_operator=True)
            commit()
            return Member(user=user, membership=None, email=user.email)

    return factory


def sign_in(client, email: str, password: str = PASSWORD):
    response = client.post("/signin", data={"email": email, "password": password})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response


@pytest.fixture
def login():
    """login(client, member_or_email) signs that client in."""

    def do(client, who, password: str = PASSWORD):
        email = who if isinstance(who, str) else who.email
        return sign_in(client, email, password)

    return do


@pytest.fixture
def outbox(app):
    """outbox(to) -> emails sent to that address, newest first, as the embedded outbox shows them.

    Invoice emails (every tenant's first invoice sends one to its contact) are left out unless
    ``invoices=True``, so a test of another email reads only that one."""

    def read(to: str, invoices: bool = False):
        from portal.mail import opened
        from portal.models import EmailMessage

        with app.app_context():
            query = db.session.query(EmailMessage).filter(EmailMessage.to == to.lower())
            if not invoices:
                query = query.filter(~EmailMessage.subject.startswith("Invoice INV-"))
            return [opened(message) for message in query.order_by(EmailMessage.created_at.desc()).all()]

    return read


HTMX = {"HX-Request": "true"}


def field_error(page: str, field_id: str) -> str:
    """The message shown beside one form field ("" when there is none)."""
    match = re.search(rf'<small class="field-error" id="{re.escape(field_id)}-error">([^<]*)</small>', page)
    return match.group(1) if match else ""


def form_error(page: str) -> str:
    """The form-wide message at the top of a form ("" when there is none)."""
    match = re.search(r'<div class="form-errors" role="alert">(.*?)</div>', page, flags=re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).strip() if match else ""


def signed_in(client) -> bool:
    """Whether this browser currently reaches the portal (not bounced to sign-in)."""
    return client.get("/overview").status_code == 200


def link_in(text: str, path_prefix: str) -> str:
    """The first URL path in ``text`` starting with ``path_prefix`` (e.g. "/invite/")."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s\"<]+)", text)
    assert match, f"no {path_prefix} link in: {text}"
    return match.group(1)


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        need_service("Redis", "REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url).ping()
    except Exception as error:  # noqa: BLE001
        need_service("Redis", str(error))
    return url


@pytest.fixture
def committed_app(request, tmp_path_factory):
    """An app on a scratch database of its own where commits are real, one session per app
    context (so per thread): for races that need PostgreSQL's row locks and constraints."""
    if not os.environ.get("DATABASE_URL"):
        need_service("postgres", "races are tested on PostgreSQL (set DATABASE_URL)")
    with real_sessions():
        with database(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:20], tmp_path_factory) as url:
            yield make_app(url)


@contextmanager
def real_sessions():
    """Real sessions, one per app context, in place of the one bound to the test's transaction
    on the test database: for an app on a database of its own."""
    test_session = db.session
    db.session = db._make_scoped_session({"class_": PortalSession})
    try:
        yield
    finally:
        # Each app context removed its own session when it was popped.
        db.session = test_session


@pytest.fixture
def receiver():
    """A real HTTP receiver of outbound webhooks on loopback, for one test (tests/webhook_support.py)."""
    from tests.webhook_support import start_receiver

    found, server = start_receiver()
    yield found
    server.shutdown()
    server.server_close()
