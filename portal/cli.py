"""``flask --app wsgi ...`` commands: operator accounts, the RQ worker, demo data."""

import click
from flask import current_app
from flask.cli import AppGroup

from jobs.billing import schedule_tick
from jobs.usage import FLUSH_EVERY_SECONDS, partition_upkeep, schedule_flush, schedule_partition_tick
from jobs.webhooks import deliver, sweep
from portal.access import SYSTEM, Actor
from portal.api_keys.services import create_key
from portal.auth.services import create_user, find_user_by_email, normalize_email
from portal.auth.two_factor.services import rotate_totp_secrets
from portal.billing import invoices, subscriptions
from portal.billing.catalog import DEFAULT_CATALOG_PATH, CatalogError, load_catalog
from portal.billing.money import format_money
from portal.billing.plans import sync_catalog
from portal.billing.runs import claim_stalled, create_run, execute, resume
from portal.billing.taxes import sync_tax_rates
from portal.credentials.crypto import CredentialKeyError, current_keyring, generate_key, parse_keys
from portal.credentials.services import count_by_key, rotate_batch
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.queues import QUEUE_NAMES, queue_name, redis_connection
from portal.infra.transactions import commit, rollback
from portal.infra.worker import AppWorker
from portal.invitations.services import create_invitation
from portal.models import Membership, Tenant, utcnow
from portal.tenants.services import create_tenant
from portal.usage import partitions
from portal.usage.api_request_events import flush
from portal.usage.meters import sync_meters
from portal.usage.rollups import rebuild
from portal.webhooks import delivery as webhook_delivery

operator_cli = AppGroup("operator", help="Operator (SaaS staff) accounts.")
demo_cli = AppGroup("demo", help="Demo data for the embedded mode.")
credentials_cli = AppGroup("credentials", help="The cloud credentials vault's encryption keys.")
catalog_cli = AppGroup("catalog", help="The plan catalog.")
billing_cli = AppGroup("billing", help="Billing runs.")
usage_cli = AppGroup("usage", help="Usage metering.")
webhooks_cli = AppGroup("webhooks", help="Outbound webhooks.")

DEMO_PASSWORD = "demo portal passphrase"  # noqa: S105 - published demo sign-in
DEMO_OPERATOR = ("operator@example.com", "operator console passphrase")
DEMO_TENANT = ("demo_co", "Demo Company")
DEMO_MEMBERS = (
    ("owner@demo.example.com", "Olivia Owner", "owner"),
    ("admin@demo.example.com", "Adam Admin", "admin"),
    ("viewer@demo.example.com", "Vera Viewer", "viewer"),
)
DEMO_INVITEE = ("developer@demo.example.com", "developer")


@operator_cli.command("create")
@click.argument("email")
@click.option(
    "--password",
    envvar="OPERATOR_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Or set OPERATOR_PASSWORD.",
)
@click.option("--name", default="", help="Display name.")
def create_operator(email: str, password: str, name: str) -> None:
    """Create an operator account (or make an existing user an operator)."""
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
    if db.session.get(Tenant, DEMO_TENANT[0]) is None:
        if find_user_by_email(DEMO_OPERATOR[0]) is None:
            create_user(DEMO_OPERATOR[0], DEMO_OPERATOR[1], "Portal Operator", is_operator=True)
        from datetime import timedelta

        # Subscribed 40 days ago: the 14-day trial is over and the first month has been
        # invoiced (and paid by bank transfer), so the billing pages have something to show.
        now = utcnow()
        tenant = create_tenant(
            SYSTEM,
            DEMO_TENANT[0],
            DEMO_TENANT[1],
            DEMO_MEMBERS[0][0],
            "professional",
            subscribed_at=now - timedelta(days=40),
        )
        for invoice in subscriptions.renew(subscriptions.subscription_of(tenant), now):
            invoices.mark_paid(SYSTEM, invoice, "Demo bank transfer", invoice.issued_at + timedelta(days=2))
        owner = None
        for email, name, role in DEMO_MEMBERS:
            user = find_user_by_email(email) or create_user(email, DEMO_PASSWORD, name)
            db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=user.id, role=role))
            owner = owner or user
        db.session.flush()

        create_invitation(Actor(user=owner, label=None), tenant, DEMO_INVITEE[0], DEMO_INVITEE[1])

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
@click.option(
    "--queue",
    "only",
    multiple=True,
    type=click.Choice(QUEUE_NAMES),
    help="Work only this queue (repeatable); default: all of them.",
)
def run_worker(burst: bool, only: tuple[str, ...]) -> None:
    """Run an RQ worker on the app's queues (all, or those named), inside the app context."""
    from rq import Queue

    if current_app.config["JOBS_INLINE"]:
        raise click.ClickException("Jobs run inline in this configuration; set REDIS_URL to use a worker.")
    connection = redis_connection()
    queues = [Queue(queue_name(name), connection=connection) for name in (only or QUEUE_NAMES)]
    interval = current_app.config["BILLING_RUN_INTERVAL_SECONDS"]
    if interval > 0 and not burst:
        schedule_tick(min(interval, 60))  # the first run soon after start, then every interval
    if not burst:
        schedule_flush(FLUSH_EVERY_SECONDS)
        schedule_partition_tick(5)  # usage partitions: soon after start, then every few hours
    # Deliveries committed while no worker ran (or whose worker died mid-attempt) go out first;
    # then every 30 s the sweep looks again.
    sweep(grace_seconds=0, reschedule=not burst)
    # RQ forks its scheduler from this process: a child holding copies of pooled database
    # sockets would keep them open (and any lock on them) if this process were killed.
    db.session.remove()
    db.engine.dispose()
    AppWorker(queues, connection=connection).work(burst=burst, with_scheduler=True)


@catalog_cli.command("sync")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A catalog file (default: the one shipped in portal/billing/catalog.toml).",
)
def sync_catalog_command(path: str | None) -> None:
    """Load the plan catalog file into the database; a changed price becomes a new version (idempotent)."""
    try:
        catalog = load_catalog(path or DEFAULT_CATALOG_PATH)
    except CatalogError as error:
        raise click.ClickException(str(error)) from None

    result = sync_catalog(catalog.plans)
    meters = sync_meters(catalog.meters)
    rates = sync_tax_rates(catalog.tax_rates)
    commit()
    click.echo(
        f"Catalog synced: {len(result.created)} new plan(s), {len(result.new_versions)} new version(s), "
        f"{len(result.unchanged)} unchanged; meters: {len(meters.created)} new, {len(meters.updated)} "
        f"updated, {len(meters.unchanged)} unchanged; tax rates: {len(rates.created)} new, "
        f"{len(rates.updated)} updated, {len(rates.unchanged)} unchanged, {len(rates.retired)} retired."
    )
    for key in result.new_versions:
        click.echo(f"  {key}: new version (existing subscriptions keep their price until they change plan)")


@billing_cli.command("run")
@click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO8601",
    help="Bill as of this instant, e.g. 2026-01-31T00:00:00Z (default: now). A future instant only "
    "previews what would be billed, unless BILLING_TEST_CLOCK is on.",
)
def billing_run_command(at: str | None) -> None:
    """Run one billing run now, in this process (every shard, one after another), and print its
    summary (a preview for a future --at)."""
    from datetime import UTC, datetime

    instant = None
    if at:
        try:
            instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                f"{at!r} is not an ISO 8601 instant such as 2026-01-31T00:00:00Z", param_hint="--at"
            ) from None
        instant = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
    run = create_run("cli", instant)
    commit()
    _summarize(execute(run, inline=True))


@billing_cli.command("resume")
@click.argument("run_id")
def billing_resume_command(run_id: str) -> None:
    """Resume a stalled billing run (its process died) in this process: what is still due as of
    its instant is billed, what was billed is not billed again."""
    try:
        run = claim_stalled(run_id)
        commit()
    except ServiceError as error:
        rollback()
        raise click.ClickException(error.message) from None
    _summarize(resume(run, inline=True), "resumed")


def _summarize(run, how: str = "") -> None:
    """A finished run's figures; exit status 1 when a subscription failed."""
    totals = ", ".join(format_money(amount, currency) for currency, amount in sorted(run.totals.items())) or "nothing"
    label = f"Billing run {run.id}{f' ({how})' if how else ''}"
    if run.preview:
        click.echo(
            f"Preview ({label}) as of {run.as_of.isoformat()}: {run.subscriptions_due} due, would bill "
            f"{run.subscriptions_billed}, {run.invoices_created} invoice(s), {totals}, {len(run.errors)} error(s). "
            "Nothing was billed: the instant is in the future (BILLING_TEST_CLOCK is off)."
        )
        for item in run.preview_items or []:
            click.echo(
                f"  {item['tenant_id']} ({item['plan']}): {item['invoices']} invoice(s), "
                f"{format_money(item['total'], item['currency'])}"
            )
        if run.subscriptions_billed > len(run.preview_items or []):
            click.echo(f"  … and {run.subscriptions_billed - len(run.preview_items or [])} more")
    else:
        click.echo(
            f"{label} as of {run.as_of.isoformat()}: {run.subscriptions_due} due, "
            f"{run.subscriptions_billed} billed, {run.invoices_created} invoice(s), {totals} invoiced, "
            f"{len(run.errors)} error(s)."
        )
    for error in run.errors:
        click.echo(f"  {error['subscription_id']}: {error['error']}", err=True)
    if run.errors:
        raise SystemExit(1)


@usage_cli.command("rebuild-rollups")
def rebuild_rollups_command() -> None:
    """Recompute the hourly usage roll-ups from the events (after loading events with COPY or psql)."""
    rows = rebuild()
    commit()
    click.echo(f"Rebuilt {rows} hourly usage roll-up(s) from the events.")


@usage_cli.command("partitions")
def usage_partitions_command() -> None:
    """Create usage events' monthly partitions ahead and retire old ones (USAGE_RETENTION_MONTHS), as the worker does."""
    if not partitions.is_partitioned():
        click.echo("usage_events is not partitioned here (SQLite): nothing to do.")
        return
    created, retired, held = partition_upkeep()
    for name in created:
        click.echo(f"Created {name}.")
    for item in retired:
        click.echo(f"Retired {item.name}: " + (f"detached, kept as {item.kept_as}." if item.kept_as else "dropped."))
    for name in held:
        click.echo(f"Kept {name}: a subscription may still invoice its events.")
    names = ", ".join(p.name for p in partitions.attached()) or "none"
    click.echo(f"Monthly partitions: {names} (and {partitions.DEFAULT_PARTITION}).")


@usage_cli.command("flush")
def flush_usage_command() -> None:
    """Turn the API request counters waiting in Redis into usage events now."""
    click.echo(f"Flushed {flush()} API request(s) into usage events.")


@credentials_cli.command("rotate-keys")
@click.option(
    "--batch-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Credentials re-encrypted per transaction.",
)
def rotate_credential_keys(batch_size: int) -> None:
    """Re-encrypt every credential under the primary (first) CREDENTIALS_KEYS key; safe to re-run."""
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
    # Authenticator-app secrets are sealed under the same keys (one row per person who has one).
    resealed, totp_failed = rotate_totp_secrets(keyring)
    commit()
    click.echo(f"Re-sealed {resealed} authenticator-app secret(s); {len(totp_failed)} could not be decrypted.")
    failed += [f"authenticator app of {user_id}" for user_id in totp_failed]
    if failed:
        raise click.ClickException(
            "Not rotated (their key is missing from CREDENTIALS_KEYS, or the row is damaged): " + ", ".join(failed)
        )
    click.echo("Every credential is under the primary key; keys after the first can now be removed.")


@credentials_cli.command("generate-key")
def generate_credentials_key() -> None:
    """Print a new random key for CREDENTIALS_KEYS (put it first to make it the primary)."""
    key = generate_key()
    click.echo(key)
    click.echo(f"(key id {parse_keys(key).primary_id})", err=True)


@webhooks_cli.command("retry-due")
def webhooks_retry_due() -> None:
    """Attempt every webhook delivery whose retry is due, here and now (the embedded mode has
    no worker to do it)."""
    ids = webhook_delivery.due()
    commit()
    states = [deliver(delivery_id) for delivery_id in ids]
    click.echo(
        f"{len(ids)} due: {states.count('succeeded')} delivered, {states.count('pending')} to retry later, "
        f"{states.count('failed')} failed for good."
    )


def register_cli(app) -> None:
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(operator_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(credentials_cli)
    app.cli.add_command(catalog_cli)
    app.cli.add_command(billing_cli)
    app.cli.add_command(usage_cli)
    app.cli.add_command(run_worker)
