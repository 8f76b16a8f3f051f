"""Migrations: an empty database upgraded to head has exactly the schema the models describe."""

import os
import subprocess
import sys
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import portal.models  # noqa: F401 - every model registered on the metadata
from portal import create_app
from portal.extensions import db
from portal.models import is_usage_partition
from tests.conftest import database, need_service

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = str(ROOT / "migrations")
MODEL_TABLES = set(db.metadata.tables)
assert {"tenants", "users", "memberships", "audit_events", "email_messages"} <= MODEL_TABLES


def fresh_app(url: str):
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "SQLALCHEMY_DATABASE_URI": url})


def _not_a_partition(name, type_, _parents) -> bool:
    return not (type_ == "table" and is_usage_partition(name))


def schema_differences(app) -> list:
    """What autogenerate would still want to change after the migrations ran (usage_events'
    monthly partitions on PostgreSQL are not model tables)."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "compare_server_default": True, "include_name": _not_a_partition},
        )
        return compare_metadata(context, db.metadata)


def table_names(app) -> set[str]:
    with app.app_context():
        return {name for name in sa.inspect(db.engine).get_table_names() if not is_usage_partition(name)}


def assert_upgrade_gives_the_model_schema(url: str) -> None:
    app = fresh_app(url)
    try:
        assert table_names(app) == set()
        with app.app_context():
            flask_migrate.upgrade(directory=MIGRATIONS)
        assert table_names(app) == MODEL_TABLES | {"alembic_version"}
        assert schema_differences(app) == []

        # Down to nothing and up again: every migration can be undone and replayed.
        with app.app_context():
            flask_migrate.downgrade(directory=MIGRATIONS, revision="base")
        assert table_names(app) == {"alembic_version"}
        with app.app_context():
            flask_migrate.upgrade(directory=MIGRATIONS)
        assert schema_differences(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def scratch_postgres(tmp_path_factory):
    """A new, empty PostgreSQL database, dropped afterwards."""
    if not os.environ.get("DATABASE_URL"):
        need_service("PostgreSQL", "DATABASE_URL is not set")
    with database("migrations", tmp_path_factory) as url:
        yield url


def test_there_is_one_line_of_migrations():
    heads = ScriptDirectory(MIGRATIONS).get_heads()
    assert len(heads) == 1, f"several heads, merge them: {heads}"


def test_upgrade_on_an_empty_sqlite_file_gives_the_model_schema(tmp_path):
    assert_upgrade_gives_the_model_schema(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_upgrade_on_an_empty_postgresql_database_gives_the_model_schema(scratch_postgres):
    assert_upgrade_gives_the_model_schema(scratch_postgres)


def test_flask_db_upgrade_command_builds_the_schema(tmp_path):
    """The README's command, through the real `flask` entry point."""
    path = tmp_path / "cli.db"
    env = {k: v for k, v in os.environ.items() if k not in ("PORTAL_ENV", "REDIS_URL")}
    env["DATABASE_URL"] = f"sqlite:///{path}"
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(  # noqa: S603 - our own venv's flask
        [str(flask), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        assert set(sa.inspect(engine).get_table_names()) == MODEL_TABLES | {"alembic_version"}
    finally:
        engine.dispose()
