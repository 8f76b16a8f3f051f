"""``flask --app wsgi ...`` commands: operator accounts, the RQ worker, demo data."""

import click
from flask import current_app
from flask.cli import AppGroup

from portal.access import SYSTEM
from portal.errors import ServiceError
from portal.extensions import db

operator_cli = AppGroup("operator", help="Operator (SaaS staff) accounts.")
demo_cli = AppGroup("demo", help="Demo data for the embedded mode.")
credentials_cli = AppGroup("credentials", help="The cloud credentials vault's encryption keys.")

DEMO_PASSWORD = "demo-password"  # noqa: S105 - published demo sign-in
DEMO_OPERATOR = ("operator@example.com", "operator-password")
DEMO_TENANT = ("demo_co", "Demo Company")
DEMO_MEMBERS = (
    ("owner@demo.example.com", "Olivia Owner", "owner"),
    ("admin@demo.example.com", "Adam Admin", "admin"),
    ("viewer@demo.example.com", "Vera Viewer", "viewer"),
)
DEMO_INVITEE = ("developer@demo.example.com", "developer")


@operator_cli.command("create")
@click.argument("email")
@click.option("--password", envvar="OPERATOR_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="Or set OPERATOR_PASSWORD.")
@click.option("--name", default="", help="Display name.")
def create_operator(email: str, password: str, name: str) -> None:
    """Create an operator account (or make an existing user an operator)."""
    from portal.auth.services import create_user, find_user_by_email, normalize_email
    from portal.tasks import commit

    try:
        existing = find_user_by_email(normalize_email(email))
        if existing:
            existing.is_operator = True
            user = existing
        else:
            user = create_user(email, password, name, is_operator=True)
        commit()
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    if existing:
        # Say so: whoever typed a password would otherwise believe it is now the one to use.
        click.echo(f"Operator {user.email} is ready (an existing account: its password is unchanged).")
    else:
        click.echo(f"Operator {user.email} is ready.")


@demo_cli.command("seed")
def seed_demo() -> None:
    """Create the demo operator, tenant, members and a pending invitation (idempotent)."""
    from portal.auth.services import create_user, find_user_by_email
    from portal.invitations.services import create_invitation
    from portal.models import Membership, Tenant
    from portal.tasks import commit
    from portal.tenants.services import create_tenant

    if db.session.get(Tenant, DEMO_TENANT[0]) is None:
        if find_user_by_email(DEMO_OPERATOR[0]) is None:
            create_user(DEMO_OPERATOR[0], DEMO_OPERATOR[1], "Portal Operator", is_operator=True)
        tenant = create_tenant(SYSTEM, DEMO_TENANT[0], DEMO_TENANT[1], DEMO_MEMBERS[0][0], "professional")
        owner = None
        for email, name, role in DEMO_MEMBERS:
            user = find_user_by_email(email) or create_user(email, DEMO_PASSWORD, name)
            db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=user.id, role=role))
            owner = owner or user
        db.session.flush()
        from portal.access import Actor

        create_invitation(Actor(user=owner, label=None), tenant, DEMO_INVITEE[0], DEMO_INVITEE[1])
        from portal.api_keys.services import create_key

        _, demo_key = create_key(Actor(user=owner, label=None), tenant, "Demo key", scopes=None, expires_in_days=None)
        commit()
        click.echo("Demo data created.")
        click.echo(f"  Demo API key (shown this once): {demo_key}")
    else:
        click.echo("Demo data already present.")
    base = current_app.config["PUBLIC_BASE_URL"]
    click.echo(f"\n  Portal:            {base}/")
    click.echo(f"  Operator console:  {base}/admin  ({DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]})")
    for email, _, role in DEMO_MEMBERS:
        click.echo(f"  Demo {role:<13} {email} / {DEMO_PASSWORD}")
    click.echo(f"  Pending invitation for {DEMO_INVITEE[0]}: its link is in the operator's Outbox.")
    click.echo(f"  API:               curl -H 'X-API-Key: <key>' {base}/api/v1/tenants/{DEMO_TENANT[0]}\n")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Drain the queues, then exit.")
def run_worker(burst: bool) -> None:
    """Run an RQ worker on all of the app's queues, inside the app context."""
    from rq import Queue

    from portal.tasks import QUEUE_NAMES, redis_connection
    from portal.worker import AppWorker

    if current_app.config["JOBS_INLINE"]:
        raise click.ClickException("Jobs run inline in this configuration; set REDIS_URL to use a worker.")
    connection = redis_connection()
    queues = [Queue(name, connection=connection) for name in QUEUE_NAMES]
    AppWorker(queues, connection=connection).work(burst=burst, with_scheduler=True)


@credentials_cli.command("rotate-keys")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="Credentials re-encrypted per transaction.")
def rotate_credential_keys(batch_size: int) -> None:
    """Re-encrypt every credential under the primary (first) CREDENTIALS_KEYS key; safe to re-run."""
    from portal.credentials.crypto import CredentialKeyError, current_keyring
    from portal.credentials.services import count_by_key, rotate_batch
    from portal.tasks import commit

    try:
        keyring = current_keyring()
    except CredentialKeyError as error:
        raise click.ClickException(str(error)) from None
    already, pending = count_by_key(keyring)
    click.echo(f"Primary key {keyring.primary_id}: {already} credential(s) already under it, {pending} to rotate.")
    rotated, failed, after = 0, [], ""
    while True:
        done, batch_failed, after = rotate_batch(keyring, after, batch_size)
        if after is None:
            break
        commit()  # one transaction per batch: an interrupted run resumes where it stopped
        rotated += done
        failed += batch_failed
        click.echo(f"  rotated {rotated} so far")
    click.echo(f"Rotated {rotated} credential(s); {len(failed)} could not be decrypted.")
    if failed:
        raise click.ClickException(
            "Not rotated (their key is missing from CREDENTIALS_KEYS, or the row is damaged): " + ", ".join(failed)
        )
    click.echo("Every credential is under the primary key; keys after the first can now be removed.")


@credentials_cli.command("generate-key")
def generate_credentials_key() -> None:
    """Print a new random key for CREDENTIALS_KEYS (put it first to make it the primary)."""
    from portal.credentials.crypto import generate_key, parse_keys

    key = generate_key()
    click.echo(key)
    click.echo(f"(key id {parse_keys(key).primary_id})", err=True)


def register_cli(app) -> None:
    app.cli.add_command(operator_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(credentials_cli)
    app.cli.add_command(run_worker)
