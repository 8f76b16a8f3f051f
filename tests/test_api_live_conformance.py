"""The API as an outside client meets it: schemathesis, with every check on, over HTTP against a
real gunicorn server on PostgreSQL and Redis, once with an operator token and once with a
tenant key, the stateful phase included (it follows the document's links, so the keys,
credentials, invitations, events and meters it creates are used again). Any finding fails.

Bounded for CI's two cores: a few examples per operation and a time cap per run; the test
prints how long each run took.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from portal.models import ADMIN_SCOPE
from tests.api_support import issue_key, operator_token
from tests.conftest import database, make_app, need_service, unique

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("st")
MAX_EXAMPLES = 4
# --max-time would make fuzzing and the stateful phase repeat until it is spent: the examples
# cap bounds a run (about a minute here), and this timeout catches a run that hangs.
TIMEOUT_SECONDS = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(base: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/api/v1/openapi.json", timeout=2) as response:  # noqa: S310 - localhost
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer within 30 s")


@pytest.fixture(scope="module")
def gunicorn_portal(tmp_path_factory):
    """(app on the server's database, base URL of gunicorn serving it in processes of its own)."""
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        need_service("PostgreSQL and Redis", "the live run needs DATABASE_URL and REDIS_URL")
    redis_url = os.environ["REDIS_URL"]
    with database("live", tmp_path_factory) as database_url:
        app = make_app(database_url, REDIS_URL=redis_url)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PORTAL_ENV")}
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                # Rate limits would turn most of a run into 429s; they are tested on their own.
                "RATELIMIT_ENABLED": "false",
                "SECRET_KEY": "test-secret-key",
                "JOBS_INLINE": "true",
                "PYTHONPATH": str(ROOT),
            }
        )
        process = subprocess.Popen(  # noqa: S603 - this interpreter's gunicorn, fixed arguments
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--no-control-socket",
                # gunicorn answers a request line over 4094 bytes with its own HTML 414, before the
                # API: a limit of the HTTP server in front (as a proxy's would be), not of the API
                # this run checks, and long generated query strings reach it.
                "--limit-request-line",
                "0",
                "--timeout",
                "60",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(base, process)
            yield app, base
        finally:
            process.terminate()
            process.wait(timeout=20)
            from portal.extensions import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _seed_tenant(app) -> tuple[str, str]:
    """A tenant of its own per run (a run may suspend or delete it): (tenant_id, key with every scope)."""
    from portal.access import SYSTEM
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import Tenant
    from portal.tenants.services import create_tenant

    tenant_id = unique("live")
    with app.test_request_context():
        create_tenant(SYSTEM, tenant_id, "Live Conformance Ltd", "owner@live.example.com")
        commit()
        tenant = db.session.get(Tenant, tenant_id)
    _, plaintext = issue_key(app, tenant, scopes=[ADMIN_SCOPE])
    return tenant_id, plaintext


def _config(tmp_path: Path, auth: dict[str, dict[str, str]], tenant_id: str) -> Path:
    lines = [
        # Rules the document states in words only (tests/schemathesis_hooks.py); filtering
        # cases for them trips hypothesis's health checks, which are about generation speed.
        'hooks = "tests.schemathesis_hooks"',
        'suppress-health-check = ["all"]',
        "",
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        "database = 'none'",
        # The document says no text may hold a NUL (U+0000); a JSON Schema pattern on every
        # string would say it to the generator only at the price of unreadable schemas.
        "allow-x00 = false",
        "",
        "[checks.negative_data_rejection]",
        # A body over MAX_CONTENT_LENGTH is refused before it is read: a rejection too.
        "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]",
        "",
        # Aim path parameters named tenant_id at the run's own tenant (and let the generator
        # vary them too), so requests get past the 403/404 guards.
        "[parameters]",
        f'"path.tenant_id" = "{tenant_id}"',
        "",
    ]
    for scheme, values in auth.items():
        lines.append(f"[auth.openapi.{scheme}]")
        lines += [f'{name} = "{value}"' for name, value in values.items()]
        lines.append("")
    path = tmp_path / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def _run_schemathesis(base: str, config: Path, tmp_path: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - the pinned schemathesis, fixed arguments
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{base}/api/v1/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--workers",
            "2",
            "--seed",
            "21",
            "--no-shrink",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def _summary(output: str) -> str:
    return output[output.rfind("SUMMARY") - 40 :] if "SUMMARY" in output else output[-6000:]


def test_schemathesis_finds_nothing_with_an_operator_token(gunicorn_portal, tmp_path):
    app, base = gunicorn_portal
    tenant_id, _ = _seed_tenant(app)
    config = _config(tmp_path, {"BearerAuth": {"bearer": operator_token(app)}}, tenant_id)
    code, output, seconds = _run_schemathesis(base, config, tmp_path)
    print(f"schemathesis (operator token): {seconds:.0f} s\n{_summary(output)}")
    assert code == 0, output[-30000:]
    assert "✅ Stateful" in output and "❌" not in output


def test_schemathesis_finds_nothing_with_a_tenant_key(gunicorn_portal, tmp_path):
    app, base = gunicorn_portal
    tenant_id, key = _seed_tenant(app)
    # The key in both headers: on operator-only operations, where only the bearer scheme is
    # declared, it is a valid credential without permission (403, as declared).
    auth = {"ApiKeyHeader": {"api_key": key}, "BearerAuth": {"bearer": key}}
    code, output, seconds = _run_schemathesis(base, _config(tmp_path, auth, tenant_id), tmp_path)
    print(f"schemathesis (tenant key): {seconds:.0f} s\n{_summary(output)}")
    assert code == 0, output[-30000:]
    assert "✅ Stateful" in output and "❌" not in output
