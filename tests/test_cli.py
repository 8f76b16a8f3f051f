"""``flask --app wsgi ...`` commands: operators, demo data, the worker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal.cli import DEMO_INVITEE, DEMO_MEMBERS, DEMO_OPERATOR, DEMO_PASSWORD, DEMO_TENANT
from portal.extensions import db
from portal.models import Invitation, Membership, Tenant, User
from tests.conftest import PASSWORD


@pytest.fixture
def cli(app):
    return app.test_cli_runner()


def user_by_email(app, email: str) -> User | None:
    with app.app_context():
        return db.session.query(User).filter_by(email=email).one_or_none()


# --- operator create -------------------------------------------------------------------


def test_operator_create_makes_an_operator_who_can_reach_the_console(cli, client, app, login):
    result = cli.invoke(
        args=["operator", "create", "Ops@Example.com", "--password", "a long operator pass", "--name", "Olga"]
    )
    assert result.exit_code == 0, result.output
    assert "Operator ops@example.com is ready." in result.output
    user = user_by_email(app, "ops@example.com")
    assert user.is_operator and user.name == "Olga"

    login(client, "ops@example.com", "a long operator pass")
    response = client.get("/admin/tenants")
    assert response.status_code == 200
    assert "<h1>Tenants</h1>" in response.get_data(as_text=True)


def test_operator_password_can_come_from_the_environment(cli, client, login):
    result = cli.invoke(
        args=["operator", "create", "env-ops@example.com"], env={"OPERATOR_PASSWORD": "from the environment"}
    )
    assert result.exit_code == 0, result.output
    login(client, "env-ops@example.com", "from the environment")
    assert client.get("/admin/tenants").status_code == 200


def test_operator_password_is_prompted_for_twice(cli, client, login):
    result = cli.invoke(args=["operator", "create", "prompted@example.com"], input="typed twice ok\ntyped twice ok\n")
    assert result.exit_code == 0, result.output
    assert "typed twice ok" not in result.output  # hidden input
    login(client, "prompted@example.com", "typed twice ok")
    assert client.get("/admin/tenants").status_code == 200


@pytest.mark.parametrize("email", ["not-an-email", "two@@example.com", "spaces in@example.com"])
def test_operator_create_with_invalid_email_fails_with_a_message(cli, app, email):
    result = cli.invoke(args=["operator", "create", email, "--password", "a long operator pass"])
    assert result.exit_code == 1
    # One line naming what is wrong with the address, no traceback.
    assert result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert any(word in result.output for word in ("email", "@-sign"))
    with app.app_context():
        assert db.session.query(User).filter_by(is_operator=True).count() == 0


def test_operator_create_with_short_password_fails_with_a_message(cli, app):
    result = cli.invoke(args=["operator", "create", "short@example.com", "--password", "short"])
    assert result.exit_code == 1
    assert "Error: Password must be 10 to 256 characters." in result.output
    assert user_by_email(app, "short@example.com") is None


def test_operator_create_promotes_an_existing_user_and_says_the_password_is_unchanged(
    cli, client, app, login, make_tenant, make_user
):
    member = make_user(make_tenant(), role="viewer")
    result = cli.invoke(args=["operator", "create", member.email, "--password", "ignored new password"])
    assert result.exit_code == 0, result.output
    assert "its password is unchanged" in result.output
    assert user_by_email(app, member.email).is_operator
    login(client, member.email, PASSWORD)
    assert client.get("/admin/tenants").status_code == 200


# --- demo seed -------------------------------------------------------------------------


def test_demo_seed_creates_the_demo_and_prints_the_sign_ins(cli, client, app, login, outbox):
    result = cli.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "Demo data created." in result.output
    assert "http://portal.test/admin" in result.output
    assert f"{DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}" in result.output
    for email, _, role in DEMO_MEMBERS:
        assert f"Demo {role}" in result.output and f"{email} / {DEMO_PASSWORD}" in result.output

    # The printed sign-ins work.
    login(client, DEMO_MEMBERS[0][0], DEMO_PASSWORD)
    page = client.get("/overview").get_data(as_text=True)
    assert DEMO_TENANT[1] in page and "owner" in page
    operator = app.test_client()
    login(operator, *DEMO_OPERATOR)
    assert DEMO_TENANT[0] in operator.get("/admin/tenants").get_data(as_text=True)
    # The pending invitation's link is in the outbox, as the output says.
    [invitation_email] = outbox(DEMO_INVITEE[0])
    assert "/invite/" in invitation_email.text_body


def test_demo_seed_is_idempotent(cli, app):
    first = cli.invoke(args=["demo", "seed"])
    second = cli.invoke(args=["demo", "seed"])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "Demo data already present." in second.output
    # Still prints the sign-ins, so a restart shows them again.
    assert f"{DEMO_MEMBERS[0][0]} / {DEMO_PASSWORD}" in second.output
    with app.app_context():
        assert db.session.query(Tenant).filter_by(tenant_id=DEMO_TENANT[0]).count() == 1
        assert db.session.query(Membership).filter_by(tenant_id=DEMO_TENANT[0]).count() == len(DEMO_MEMBERS)
        assert db.session.query(Invitation).filter_by(tenant_id=DEMO_TENANT[0]).count() == 1
        assert db.session.query(User).count() == len(DEMO_MEMBERS) + 1


# --- worker ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["worker"], ["worker", "--burst"]])
def test_worker_refuses_to_run_when_jobs_are_inline(cli, app, args):
    assert app.config["JOBS_INLINE"] is True
    # `flask` pushes the app context for every command of app.cli; the runner does not.
    with app.app_context():
        result = cli.invoke(args=args)
    assert result.exit_code == 1
    assert "Error: Jobs run inline in this configuration; set REDIS_URL to use a worker." in result.output


def test_flask_worker_command_refuses_to_run_without_redis(tmp_path):
    """The real entry point, as the README runs it, in embedded mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBS_INLINE", "PORTAL_ENV")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(  # noqa: S603 - our own venv's flask
        [str(flask), "--app", "wsgi", "worker", "--burst"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Error: Jobs run inline in this configuration; set REDIS_URL to use a worker." in result.stderr
