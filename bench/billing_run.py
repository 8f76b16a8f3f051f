"""Benchmark (not a test): one billing run over N monthly subscriptions, for N = 1,000 and 10,000.

    .venv/bin/python bench/billing_run.py [--sizes 1000,10000] [--profile]

For each N: a scratch PostgreSQL database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres), migrated, catalog synced. One tenant signs up
to Starter through the real services (``create_tenant``, clock fixed at T0); its rows (tenant,
subscription, first invoice and line, audit events) are then cloned N-1 times with bulk
inserts, so every subscription is shaped exactly as the services shape it. Setup is not timed.

Timed: one billing run as the worker runs it, from this process (``runs.create_run`` +
``runs.execute``), as of one period later, when all N subscriptions are due. Checked: no
errors, N invoices of $49.00 for the new period, gap-free numbers. Prints seconds per run,
subscriptions/s, invoices created, and the growth ratio time(largest N) / time(smallest N);
targets: 10,000 in <= 60 s on a 2-core machine, growth <= 11x for 10x the subscriptions.
``--profile`` prints the top of a cProfile of the largest run. Scratch databases are dropped.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api as api_bench  # noqa: E402 - needs ROOT on the path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T0 = datetime(2027, 1, 10, 8, 0, tzinfo=UTC)
AS_OF = datetime(2027, 2, 10, 8, 0, tzinfo=UTC)  # one monthly period later
PRICE = 4900
BATCH = 2000  # rows per executemany
EXTRA: dict = {}


def scratch_database(base_url: str) -> tuple[str, str, str]:
    """(admin URL, scratch database name, SQLAlchemy URL of the scratch database)."""
    return api_bench.scratch_database(base_url, prefix="portal_bench_billing", driver="postgresql+psycopg")


def build_app(database_url: str):
    from flask_migrate import upgrade

    from portal import create_app
    from portal.billing.catalog import load_catalog
    from portal.billing.plans import sync_catalog
    from portal.extensions import db

    app = create_app(
        {
            **EXTRA,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "JOBS_INLINE": True,
            "REDIS_URL": "",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "MAIL_SERVER": "",
            "RATELIMIT_ENABLED": False,
            # AS_OF may be in the future: bill for real on this scratch database, not a preview.
            "BILLING_TEST_CLOCK": True,
        }
    )
    with app.app_context():
        # Alembic configures its own logging to stderr; its one line per migration is noise here.
        with contextlib.redirect_stderr(io.StringIO()):
            upgrade(directory=str(ROOT / "migrations"))
        sync_catalog(load_catalog().plans)
        db.session.commit()
    return app


def _rows(table, where) -> list[dict]:
    from portal.extensions import db

    return [dict(row._mapping) for row in db.session.execute(table.select().where(where))]


def populate(app, count: int) -> None:
    """``count`` Starter subscriptions anchored at T0: one made by the services, the rest cloned."""
    from sqlalchemy import insert, update

    from portal.access import SYSTEM
    from portal.billing import subscriptions
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import AuditEvent, Invoice, InvoiceCounter, InvoiceLine, Subscription, Tenant
    from portal.models.base import new_id
    from portal.tenants.services import create_tenant

    with app.test_request_context():
        with mock.patch.object(subscriptions, "utcnow", return_value=T0):
            template = create_tenant(SYSTEM, "bench_000000", "Bench 000000 Ltd", "billing-000000@example.com")
        commit()
        tenant_row = _rows(Tenant.__table__, Tenant.tenant_id == template.tenant_id)[0]
        subscription_row = _rows(Subscription.__table__, Subscription.tenant_id == template.tenant_id)[0]
        invoice_row = _rows(Invoice.__table__, Invoice.tenant_id == template.tenant_id)[0]
        line_rows = _rows(InvoiceLine.__table__, InvoiceLine.invoice_id == invoice_row["id"])
        audit_rows = _rows(AuditEvent.__table__, AuditEvent.tenant_id == template.tenant_id)
        assert subscription_row["current_period_end"] == AS_OF and invoice_row["total"] == PRICE
        assert invoice_row["number"] == f"INV-{T0.year}-000001"

        for first in range(1, count, BATCH):
            tenants, subs, invoices, lines, audits = [], [], [], [], []
            for i in range(first, min(first + BATCH, count)):
                tenant_id = f"bench_{i:06d}"
                subscription_id, invoice_id = new_id("sub"), new_id("inv")
                tenants.append(
                    {
                        **tenant_row,
                        "tenant_id": tenant_id,
                        "company_name": f"Bench {i:06d} Ltd",
                        "contact_email": f"billing-{i:06d}@example.com",
                    }
                )
                subs.append({**subscription_row, "id": subscription_id, "tenant_id": tenant_id})
                invoices.append(
                    {
                        **invoice_row,
                        "id": invoice_id,
                        "tenant_id": tenant_id,
                        "subscription_id": subscription_id,
                        "number": f"INV-{T0.year}-{i + 1:06d}",
                        "billing_name": f"Bench {i:06d} Ltd",
                        "billing_email": f"billing-{i:06d}@example.com",
                    }
                )
                lines += [{**line, "id": new_id("il"), "invoice_id": invoice_id} for line in line_rows]
                targets = {
                    template.tenant_id: tenant_id,
                    subscription_row["id"]: subscription_id,
                    invoice_row["id"]: invoice_id,
                }
                audits += [
                    {
                        **{k: v for k, v in event.items() if k != "id"},
                        "tenant_id": tenant_id,
                        "target_id": targets.get(event["target_id"], event["target_id"]),
                    }
                    for event in audit_rows
                ]
            for table, rows in (
                (Tenant, tenants),
                (Subscription, subs),
                (Invoice, invoices),
                (InvoiceLine, lines),
                (AuditEvent, audits),
            ):
                if rows:
                    db.session.execute(insert(table.__table__), rows)
            db.session.commit()
        db.session.execute(update(InvoiceCounter).where(InvoiceCounter.year == T0.year).values(last_number=count))
        db.session.commit()
        db.session.execute(__import__("sqlalchemy").text("ANALYZE"))
        db.session.commit()


def _cpu_seconds() -> float:
    """This process and its finished children: a large run is shared among forked processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _leave_emails_to_the_worker() -> None:
    """Each issued invoice queues its email (with a PDF drawn) for a worker, after the commit. In
    production the run only enqueues it; with the embedded inline jobs used here it would be drawn
    inside the timed run, which no deployment does, so jobs on the email queue are dropped."""
    from portal.infra import queues

    enqueue = queues.enqueue

    def enqueue_but_emails(job, args, queue="default", **options):
        if queue != "email":
            enqueue(job, args, queue=queue, **options)

    queues.enqueue = enqueue_but_emails


def timed_run(app, profile: bool) -> tuple[float, object, str]:
    from portal.billing.runs import create_run, execute
    from portal.infra.transactions import commit

    profiler = cProfile.Profile() if profile else None
    with app.app_context():
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        if profiler:
            profiler.enable()
        run = create_run("bench", AS_OF)
        commit()
        run = execute(run)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
        summary = (run.status, run.subscriptions_due, run.invoices_created, dict(run.totals), list(run.errors))
    report = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(
            int(os.environ.get("BENCH_TOP", "35"))
        )
        report = out.getvalue()
    return elapsed, cpu, summary, report


def verify(app, count: int, summary) -> None:
    """The run billed every subscription once, for the right period and amount, numbers gap-free."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Invoice, InvoiceCounter, Subscription

    status, due, created, totals, errors = summary
    problems = []
    if (status, due, created, errors) != ("completed", count, count, []):
        problems.append(f"run: status={status} due={due} invoices={created} errors={errors[:3]}")
    if totals != {"USD": count * PRICE}:
        problems.append(f"run totals {totals}, expected USD {count * PRICE}")
    with app.app_context():
        renewals = db.session.execute(
            select(func.count(), func.sum(Invoice.total), func.count(func.distinct(Invoice.subscription_id))).where(
                Invoice.period_start == AS_OF, Invoice.kind == "period"
            )
        ).one()
        if tuple(renewals) != (count, count * PRICE, count):
            problems.append(f"renewal invoices (count, sum, subscriptions) = {tuple(renewals)}")
        numbers = db.session.execute(
            select(func.count(), func.count(func.distinct(Invoice.number))).select_from(Invoice)
        ).one()
        last = db.session.execute(select(InvoiceCounter.last_number).where(InvoiceCounter.year == AS_OF.year)).scalar()
        if tuple(numbers) != (2 * count, 2 * count) or last != 2 * count:
            problems.append(f"numbers: {tuple(numbers)} invoices/distinct, counter at {last}, expected {2 * count}")
        moved = db.session.execute(
            select(func.count()).select_from(Subscription).where(Subscription.current_period_start == AS_OF)
        ).scalar()
        if moved != count:
            problems.append(f"{moved} of {count} subscriptions moved to the next period")
    if problems:
        sys.exit("billing run is wrong:\n  " + "\n  ".join(problems))


def measure(admin_url: str, base_url: str, count: int, profile: bool) -> tuple[float, float, int, str]:
    import psycopg

    admin, name, scratch = scratch_database(base_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        app = build_app(scratch)
        setup_started = time.perf_counter()
        populate(app, count)
        print(f"  N={count:,}: setup {time.perf_counter() - setup_started:.1f} s (not timed)", flush=True)
        elapsed, cpu, summary, report = timed_run(app, profile)
        verify(app, count, summary)
        with app.app_context():
            from portal.extensions import db

            db.engine.dispose()
        return elapsed, cpu, summary[2], report
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated N (default 1000,10000)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the largest run")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    os.environ.pop("REDIS_URL", None)  # the run itself never enqueues; keep the bench self-contained
    _leave_emails_to_the_worker()
    import logging

    # Warnings and errors only: the migrations and the run would otherwise log a line each.
    logging.basicConfig(level=logging.WARNING)
    base_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    admin_url = scratch_database(base_url)[0]
    results = {}
    load_before = os.getloadavg()[0]
    for count in sizes:
        elapsed, cpu, created, report = measure(admin_url, base_url, count, args.profile and count == sizes[-1])
        results[count] = (elapsed, cpu, created)
        if report:
            print(report)

    print(
        f"Billing run over N monthly Starter subscriptions, all due; PostgreSQL scratch databases on "
        f"{scratch_database(base_url)[0].rsplit('@', 1)[-1]} (dropped); {os.cpu_count()} CPU(s), load average "
        f"{load_before:.2f} before and {os.getloadavg()[0]:.2f} after (other work on the machine slows the run)"
    )
    print(
        f"{'N':>8}{'seconds':>10}{'subs/s':>10}{'invoices':>10}{'CPU s':>10}  (CPU: the run's processes, PostgreSQL aside)"
    )
    for count, (elapsed, cpu, created) in results.items():
        print(f"{count:>8,}{elapsed:>10.2f}{count / elapsed:>10.0f}{created:>10,}{cpu:>10.2f}")
    smallest, largest = sizes[0], sizes[-1]
    if largest != smallest:
        growth = results[largest][0] / results[smallest][0]
        size_ratio = largest / smallest
        print(
            f"growth time({largest:,})/time({smallest:,}): {growth:.2f}x for {size_ratio:.0f}x the subscriptions "
            f"(target <= {1.1 * size_ratio:.3g}x: {'met' if growth <= 1.1 * size_ratio else 'NOT met'})"
        )
    if 10_000 in results:
        seconds = results[10_000][0]
        print(f"10,000 subscriptions in {seconds:.1f} s (target <= 60 s: {'met' if seconds <= 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
