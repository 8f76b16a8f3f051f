"""Platform plumbing: health check, security headers, request ids, error pages, config."""

import logging
import re
from datetime import datetime

import pytest

from portal import create_app
from portal.config import DEV_SECRET_KEY, check_production, load_config
from tests.conftest import make_app

STRONG_KEY = "k" * 40
PG_URL = "postgresql+psycopg://portal@db.internal/portal"


def directives(csp: str) -> dict[str, str]:
    return {part.split()[0]: " ".join(part.split()[1:]) for part in (p.strip() for p in csp.split(";")) if part}


def cookie_attributes(response, name: str = "session") -> set[str]:
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]
    return {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]} | {
        part.strip().lower() for part in cookie.split(";")[1:] if part.strip().lower().startswith("samesite")
    }


@pytest.fixture(scope="module")
def boom_app(database_url):
    """An app of its own with routes that fail the way a bug would."""
    app = make_app(database_url)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/api/v1/boom")
    def api_boom():
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/api/v1/bad-statement")
    def bad_statement():
        from sqlalchemy import text

        from portal.extensions import db

        db.session.execute(text("SELECT * FROM no_such_table"))

    return app


# --- health ----------------------------------------------------------------------------


def test_healthz_reports_the_database(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    # Redis is only checked when one is configured.
    assert ("redis" in body["checks"]) == bool(app.config["REDIS_URL"])


def test_healthz_reports_redis_when_configured(database_url, redis_url):
    app = make_app(database_url, REDIS_URL=redis_url)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_is_unhealthy_when_redis_is_unreachable(database_url):
    app = make_app(database_url, REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")
    # The reason names the failure, not connection details.
    assert "127.0.0.1" not in body["checks"]["redis"]


# --- security headers ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/signin", "/signup", "/healthz", "/no-such-page", "/api/v1/nothing"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    csp = directives(response.headers["Content-Security-Policy"])
    assert csp["script-src"] == "'self'"
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("no-referrer", "strict-origin-when-cross-origin", "same-origin")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_scripts_or_event_handlers(client, make_tenant, make_user, make_operator, login, app):
    """The CSP forbids inline script, so none may be relied on."""
    tenant = make_tenant()
    pages = ["/signin", "/signup", "/forgot-password"]
    login(client, make_user(tenant, role="owner"))
    pages += ["/overview", "/team", "/settings", "/activity"]
    for path in pages:
        page = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", page):
            assert "src=" in tag, (path, tag)
        assert not re.search(r"\son[a-z]+\s*=", page), path
        assert "javascript:" not in page, path
    operator_client = app.test_client()
    login(operator_client, make_operator())
    page = operator_client.get("/admin/tenants").get_data(as_text=True)
    assert not re.search(r"<script\b(?![^>]*src=)", page)


def test_session_cookie_is_httponly_and_samesite_lax(client, make_tenant, make_user):
    tenant = make_tenant()
    owner = make_user(tenant, role="owner")
    response = client.post("/signin", data={"email": owner.email, "password": owner.password})
    assert response.status_code == 303
    attributes = cookie_attributes(response)
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    # Plain http in development: a Secure cookie would never come back.
    assert "secure" not in attributes
    assert "Strict-Transport-Security" not in response.headers


def test_session_cookie_is_secure_when_configured(database_url, make_tenant, make_user):
    app = make_app(database_url, SESSION_COOKIE_SECURE=True)
    tenant = make_tenant()
    owner = make_user(tenant, role="owner")
    client = app.test_client()
    response = client.post(
        "/signin", data={"email": owner.email, "password": owner.password}, base_url="https://portal.test"
    )
    assert response.status_code == 303
    attributes = cookie_attributes(response)
    assert {"secure", "httponly", "samesite=lax"} <= attributes
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_production_defaults_to_secure_cookies(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    assert load_config()["SESSION_COOKIE_SECURE"] is True
    monkeypatch.setenv("PORTAL_ENV", "development")
    assert load_config()["SESSION_COOKIE_SECURE"] is False


# --- request ids -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/signin", "/", "/healthz", "/no-such-page", "/api/v1/nothing", "/static/app.css"])
def test_every_response_has_a_request_id(client, path):
    response = client.get(path)
    assert re.fullmatch(r"req_[0-9a-f]{16}", response.headers["X-Request-ID"])


def test_request_ids_differ_between_requests(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("sent", ["abc-123", "7f9c2ba4-e88f-11ee-b3f1-0242ac120002", "trace:Root=1-65a/xyz"])
def test_a_sane_client_request_id_is_echoed(client, sent):
    assert client.get("/healthz", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


@pytest.mark.parametrize("junk", ["x" * 101, "tab\there", "bell\x07"])
def test_a_junk_client_request_id_is_replaced(client, junk):
    response = client.get("/healthz", headers={"X-Request-ID": junk})
    assert re.fullmatch(r"req_[0-9a-f]{16}", response.headers["X-Request-ID"])


# --- error pages -----------------------------------------------------------------------


def test_unknown_page_shows_the_friendly_404_in_the_layout(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>Page not found</h1>" in page
    assert "There is nothing here" in page
    assert '<header class="site">' in page and "<footer" in page
    assert 'href="/"' in page


def test_htmx_request_for_an_unknown_page_replaces_the_whole_body(client):
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "body"
    assert "Page not found" in response.get_data(as_text=True)


def test_wrong_method_gets_a_friendly_page(client):
    response = client.delete("/signin")
    assert response.status_code == 405
    assert "That did not work" in response.get_data(as_text=True)


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_path_answers_with_the_json_envelope(client, method):
    response = getattr(client, method)("/api/v1/no-such-thing", headers={"X-Request-ID": "client-req-1"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"detail", "error_code", "timestamp", "request_id"}
    assert body["error_code"] == "NOT_FOUND"
    assert body["detail"]
    assert body["request_id"] == "client-req-1" == response.headers["X-Request-ID"]
    datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")


def test_unexpected_error_shows_the_friendly_500_page(boom_app, caplog):
    with caplog.at_level(logging.ERROR):
        response = boom_app.test_client().get("/boom", headers={"X-Request-ID": "boom-page-1"})
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "<h1>Something went wrong</h1>" in page
    assert '<header class="site">' in page
    assert "hunter2" not in page and "RuntimeError" not in page and "Traceback" not in page
    assert response.headers["X-Request-ID"] == "boom-page-1"
    assert response.headers["Content-Security-Policy"]
    # The operator can find it in the log by its request id.
    assert any("boom-page-1" in record.getMessage() and record.exc_info for record in caplog.records)


def test_unexpected_error_on_the_api_answers_with_the_json_envelope(boom_app):
    response = boom_app.test_client().get("/api/v1/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert set(body) == {"detail", "error_code", "timestamp", "request_id"}
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "request_id" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "hunter2" not in response.get_data(as_text=True)


def test_the_app_keeps_working_after_an_unexpected_error(boom_app):
    client = boom_app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/healthz").get_json()["checks"]["database"] == "ok"


def test_a_statement_the_database_refuses_is_a_bug_not_an_outage(boom_app):
    """Only failures that pass answer 503: a statement that can never work is still a 500."""
    response = boom_app.test_client().get("/api/v1/bad-statement")
    assert response.status_code == 500
    assert response.get_json()["error_code"] == "INTERNAL_ERROR"
    assert "Retry-After" not in response.headers and "no_such_table" not in response.get_data(as_text=True)


@pytest.fixture
def unreachable_app():
    """The app with its database gone: nothing listens on the port (a restart, a failover). Its
    sessions are its own, not bound to the test's transaction on the test database."""
    from tests.conftest import real_sessions

    config = {
        "TESTING": True,
        "SECRET_KEY": STRONG_KEY,
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://postgres@127.0.0.1:1/portal?connect_timeout=2",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "JOBS_INLINE": True,
        "REDIS_URL": "",
    }
    with real_sessions():
        yield create_app(config)


def test_the_api_answers_503_with_retry_after_while_the_database_is_unreachable(unreachable_app, caplog):
    with caplog.at_level(logging.WARNING):
        response = unreachable_app.test_client().get(
            "/api/v1/tenants/acme", headers={"Authorization": "Bearer opt_x", "X-Request-ID": "down-1"}
        )
    assert response.status_code == 503
    body = response.get_json()
    assert body["error_code"] == "SERVICE_UNAVAILABLE"
    assert body["detail"] == "The service is briefly unavailable. Please try again in 5 seconds."
    assert response.headers["Retry-After"] == "5" and body["retry_after_seconds"] == 5
    assert body["request_id"] == "down-1"
    # Logged as an outage, by request id, without a traceback or the connection string.
    [record] = [r for r in caplog.records if "down-1" in r.getMessage()]
    assert record.levelno == logging.WARNING and not record.exc_info
    assert "127.0.0.1:1" not in record.getMessage()


def test_a_link_opened_while_the_database_is_unreachable_keeps_its_token_out_of_the_log(unreachable_app, caplog):
    with caplog.at_level(logging.WARNING):
        response = unreachable_app.test_client().get("/reset-password/live-reset-token-0123456789")
    assert response.status_code == 503
    logged = [record.getMessage() for record in caplog.records if record.name == "portal.errors"]
    assert logged and all("/reset-password/<token>" in line for line in logged)
    assert not any("live-reset-token" in line for line in logged)


def test_signing_in_while_the_database_is_unreachable_shows_a_page_that_says_to_wait(unreachable_app):
    response = unreachable_app.test_client().post(
        "/signin", data={"email": "owner@example.com", "password": "correct horse battery staple"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    page = response.get_data(as_text=True)
    assert "<h1>Briefly unavailable</h1>" in page
    assert "Please try again in 5 seconds." in page
    assert "OperationalError" not in page and "Traceback" not in page
    assert response.headers["Content-Security-Policy"]


# --- htmx ------------------------------------------------------------------------------


def test_pages_vary_on_hx_request(client, make_tenant, make_user, login):
    assert "HX-Request" in client.get("/signin").headers["Vary"]
    login(client, make_user(make_tenant(), role="viewer"))
    for path in ("/overview", "/settings", "/activity", "/team"):
        assert "HX-Request" in client.get(path).headers["Vary"], path


# --- CSRF ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csrf_app(database_url):
    return make_app(database_url, WTF_CSRF_ENABLED=True)


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)


def test_form_post_without_csrf_token_is_refused_with_a_clear_message(csrf_app, make_tenant, make_user):
    owner = make_user(make_tenant(), role="owner")
    client = csrf_app.test_client()
    response = client.post("/signin", data={"email": owner.email, "password": owner.password})
    assert response.status_code == 400
    assert "Your form expired or was sent from elsewhere." in response.get_data(as_text=True)


def test_htmx_sends_the_csrf_token_as_a_header(csrf_app, make_tenant, make_user, app):
    tenant = make_tenant(company_name="Csrf Co")
    owner = make_user(tenant, role="owner")
    client = csrf_app.test_client()
    token = _token(client.get("/signin").get_data(as_text=True))
    response = client.post("/signin", data={"email": owner.email, "password": owner.password, "csrf_token": token})
    assert response.status_code == 303

    page = client.get("/settings").get_data(as_text=True)
    header_token = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", page).group(1)
    data = {"company_name": "Csrf Renamed", "contact_email": tenant.contact_email}
    refused = client.post("/settings", data=data, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    accepted = client.post("/settings", data=data, headers={"HX-Request": "true", "X-CSRFToken": header_token})
    assert accepted.status_code == 204
    assert "Csrf Renamed" in client.get("/settings").get_data(as_text=True)


# --- configuration ---------------------------------------------------------------------


def test_production_refuses_the_development_secret_key():
    config = {"PORTAL_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY, "SQLALCHEMY_DATABASE_URI": PG_URL}
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        check_production(config)


def test_production_refuses_a_short_secret_key():
    config = {"PORTAL_ENV": "production", "SECRET_KEY": "short", "SQLALCHEMY_DATABASE_URI": PG_URL}
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        check_production(config)


def test_production_refuses_sqlite():
    config = {"PORTAL_ENV": "production", "SECRET_KEY": STRONG_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"}
    with pytest.raises(RuntimeError, match="DATABASE_URL must point at PostgreSQL"):
        check_production(config)


def test_production_names_every_problem_at_once():
    config = {"PORTAL_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"}
    with pytest.raises(RuntimeError) as error:
        check_production(config)
    assert "SECRET_KEY" in str(error.value) and "DATABASE_URL" in str(error.value)


def test_production_refuses_to_send_mail_to_the_outbox():
    config = {"PORTAL_ENV": "production", "SECRET_KEY": STRONG_KEY, "SQLALCHEMY_DATABASE_URI": PG_URL}
    with pytest.raises(RuntimeError, match="MAIL_SERVER must be set"):
        check_production({**config, "CREDENTIALS_KEYS": "A" * 43, "MAIL_SERVER": ""})


def test_production_with_real_settings_starts():
    check_production(
        {
            "PORTAL_ENV": "production",
            "SECRET_KEY": STRONG_KEY,
            "SQLALCHEMY_DATABASE_URI": PG_URL,
            "CREDENTIALS_KEYS": "A" * 43,
            "MAIL_SERVER": "smtp.internal",
        }
    )
    # Development happily runs on the defaults.
    check_production(
        {"PORTAL_ENV": "development", "SECRET_KEY": DEV_SECRET_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )


def test_create_app_refuses_to_start_production_on_defaults(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PORTAL_ENV", "production")
    with pytest.raises(RuntimeError, match="Refusing to start in production"):
        create_app()


def test_database_url_is_given_the_psycopg_driver(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/portal")
    assert load_config()["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.internal:5432/portal"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/portal")
    assert load_config()["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/portal"
    monkeypatch.delenv("DATABASE_URL")
    assert load_config()["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")


def test_jobs_run_inline_unless_redis_is_configured(monkeypatch):
    monkeypatch.delenv("JOBS_INLINE", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert load_config()["JOBS_INLINE"] is True
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    assert load_config()["JOBS_INLINE"] is False
    monkeypatch.setenv("JOBS_INLINE", "true")
    assert load_config()["JOBS_INLINE"] is True


def test_a_pooled_connection_that_died_while_idle_is_replaced_not_served(database_url):
    """An idle connection is pinged before use (here at once: DATABASE_PING_IDLE_SECONDS=0);
    the database having dropped it costs the request nothing."""
    from portal.extensions import db
    from tests.conftest import need_service, terminate_backend

    if not database_url.startswith("postgresql"):
        need_service("postgres", "connections are killed with pg_terminate_backend")
    app = make_app(database_url, DATABASE_PING_IDLE_SECONDS=0)
    with app.app_context():
        with db.engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        terminate_backend(database_url, pid)
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        db.engine.dispose()


def test_the_wsgi_app_keeps_its_own_objects_out_of_the_collectors_full_passes(tmp_path):
    # A full collection over the app's own objects paused a worker for ~185 ms; frozen, they are
    # not scanned (bench/ingest.py shows the entitlement checks' 99th percentile).
    import subprocess
    import sys
    from pathlib import Path

    code = "import gc, wsgi; print(gc.get_freeze_count())"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'gc.db'}", "PORTAL_ENV": "development"}
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout.split()[-1]) > 100_000
