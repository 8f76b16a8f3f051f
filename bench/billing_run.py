"""Benchmark (not a test): billing runs on the queue, billed by real worker processes.

    .venv/bin/python bench/billing_run.py            # 10,000 with 1 worker and with 2; 100,000 with 2
    .venv/bin/python bench/billing_run.py --quick    # 2,000 with 1 and with 2; 20,000 with 2
    .venv/bin/python bench/billing_run.py --profile  # a cProfile of 2,000 billed in this process
    .venv/bin/python bench/billing_run.py --repeat 3 # medians of three runs of each case
    .venv/bin/python bench/billing_run.py --cases 100000:2   # only these cases (N:workers)
    .venv/bin/python bench/billing_run.py --plain    # without VAT and discounts (the default has both)

Needs PostgreSQL (DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres) and
Redis (REDIS_URL, default redis://127.0.0.1:6379/0). For each case: a scratch database,
migrated, catalog, meters and tax rates synced. One tenant signs up to Starter through the real services
(``create_tenant``, clock fixed at T0); its rows (tenant, subscription, first invoice and line,
audit events) are then cloned N-1 times with bulk inserts, so every subscription is shaped
exactly as the services shape it. W ``flask --app wsgi worker`` processes are started on queues
of the case's own (``RQ_QUEUE_PREFIX``) and left to settle. Setup is not timed.

Timed: from the run's job being queued (as the console queues it) to the run's row saying
``completed``: the worker that takes the job lists what is due and cuts it into shard jobs
(``BILLING_RUN_SHARD_SIZE``, 500), the workers bill them, the last shard closes the run. As of
one period later, when all N subscriptions are due. Checked: no errors, N invoices of $49.00 for
the new period, gap-free numbers, every worker took shards. Printed per case: seconds,
subscriptions/s, the workers' CPU seconds (and per subscription), PostgreSQL's CPU seconds and
the share of the machine's CPU time the two used over the run ("busy": near 100 %, the run
is as fast as this machine's cores allow), each worker's shards and peak
RSS (VmHWM), and the machine's load; the median time of a shard early and late in the run;
then the speed-up of 2 workers over 1 and the growth from 10,000 to 100,000. ``BENCH_PROFILE=0``
with ``--profile``: the same in-process run, timed without the profiler. Scratch databases and
queues are dropped.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api as api_bench  # noqa: E402 - needs ROOT on the path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2027, 1, 10, 8, 0, tzinfo=UTC)
AS_OF = datetime(2027, 2, 10, 8, 0, tzinfo=UTC)  # one monthly period later
PRICE = 4900
# With taxes and discounts on (the default; --plain turns them off): every tenant has a German
# billing profile (domestic: the seller is German, VAT 19 %) and a 20 % coupon for ever, so each
# renewal is 4900 - 980 = 3920 net + 745 VAT (744.8 rounded half up) = 4665, in four lines.
B2B_TOTAL = 4665
B2B = True
BATCH = 2000  # rows per executemany
EXTRA: dict = {}


def scratch_database(base_url: str) -> tuple[str, str, str]:
    """(admin URL, scratch database name, SQLAlchemy URL of the scratch database)."""
    return api_bench.scratch_database(base_url, prefix="portal_bench_billing", driver="postgresql+psycopg")


def build_app(database_url: str, **overrides):
    from flask_migrate import upgrade

    from portal import create_app
    from portal.billing.catalog import load_catalog
    from portal.billing.plans import sync_catalog
    from portal.billing.taxes import sync_tax_rates
    from portal.extensions import db
    from portal.usage.meters import sync_meters

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
            **overrides,
        }
    )
    with app.app_context():
        # Alembic configures its own logging to stderr; its one line per migration is noise here.
        with contextlib.redirect_stderr(io.StringIO()):
            upgrade(directory=str(ROOT / "migrations"))
        catalog = load_catalog()
        sync_catalog(catalog.plans)
        sync_meters(catalog.meters)  # as `make run` does: Starter's priced features read usage
        sync_tax_rates(catalog.tax_rates)  # ...and its tax rates
        db.session.commit()
    return app


def _rows(table, where) -> list[dict]:
    from portal.extensions import db

    return [dict(row._mapping) for row in db.session.execute(table.select().where(where))]


def populate(app, count: int, b2b: bool) -> None:
    """``count`` Starter subscriptions anchored at T0: one made by the services, the rest cloned
    (with ``b2b``, its billing profile and discount too)."""
    from sqlalchemy import insert, update

    from portal.access import SYSTEM
    from portal.billing import discounts, subscriptions
    from portal.billing.profile import ProfileData
    from portal.billing.profile import update as update_profile
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import (
        AuditEvent,
        BillingProfile,
        Discount,
        Invoice,
        InvoiceCounter,
        InvoiceLine,
        Subscription,
        Tenant,
    )
    from portal.models.base import new_id
    from portal.tenants.services import create_tenant

    with app.test_request_context():
        with mock.patch.object(subscriptions, "utcnow", return_value=T0):
            template = create_tenant(SYSTEM, "bench_000000", "Bench 000000 Ltd", "billing-000000@example.com")
        commit()
        if b2b:
            update_profile(
                SYSTEM,
                template,
                ProfileData(
                    legal_name="Bench 000000 GmbH",
                    address_line1="Hauptstraße 1",
                    postal_code="10115",
                    city="Berlin",
                    country="DE",
                ),
            )
            coupon = discounts.create_coupon(SYSTEM, "Bench partner", percent_off=20, duration="forever")
            discounts.apply(SYSTEM, subscriptions.subscription_of(template), coupon, by_operator=True, at=T0)
            commit()
        profile_rows = _rows(BillingProfile.__table__, BillingProfile.tenant_id == template.tenant_id)
        discount_rows = _rows(Discount.__table__, Discount.tenant_id == template.tenant_id)
        tenant_row = _rows(Tenant.__table__, Tenant.tenant_id == template.tenant_id)[0]
        subscription_row = _rows(Subscription.__table__, Subscription.tenant_id == template.tenant_id)[0]
        invoice_row = _rows(Invoice.__table__, Invoice.tenant_id == template.tenant_id)[0]
        line_rows = _rows(InvoiceLine.__table__, InvoiceLine.invoice_id == invoice_row["id"])
        audit_rows = _rows(AuditEvent.__table__, AuditEvent.tenant_id == template.tenant_id)
        assert subscription_row["current_period_end"] == AS_OF and invoice_row["total"] == PRICE
        assert invoice_row["number"] == f"INV-{T0.year}-000001"

        for first in range(1, count, BATCH):
            tenants, subs, invoices, lines, audits, profiles, discounted = [], [], [], [], [], [], []
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
                profiles += [{**row, "tenant_id": tenant_id} for row in profile_rows]
                discounted += [
                    {
                        **row,
                        "id": new_id("disc"),
                        "tenant_id": tenant_id,
                        "subscription_id": subscription_id,
                        "active_subscription_id": subscription_id,
                    }
                    for row in discount_rows
                ]
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
                (BillingProfile, profiles),
                (Discount, discounted),
            ):
                if rows:
                    db.session.execute(insert(table.__table__), rows)
            db.session.commit()
        db.session.execute(update(InvoiceCounter).where(InvoiceCounter.year == T0.year).values(last_number=count))
        db.session.commit()
        db.session.execute(__import__("sqlalchemy").text("ANALYZE"))
        db.session.commit()


def _proc(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS in bytes) of a live process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cpu, peak


def postgres_cpu() -> float:
    """CPU seconds used so far by this machine's PostgreSQL processes (the workers' backends
    live through a run, so the difference over a run is what billing cost the database)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                head, tail = stat.read().rsplit(")", 1)
        except OSError:
            continue  # it ended meanwhile
        if head.split("(", 1)[1] == "postgres":
            fields = tail.split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_workers(database_url: str, redis_url: str, prefix: str, count: int, log) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE_PREFIX": prefix,
        "JOBS_INLINE": "false",
        "BILLING_TEST_CLOCK": "true",
        "BILLING_RUN_INTERVAL_SECONDS": "0",
        "MAIL_SERVER": "",
        "RATELIMIT_ENABLED": "false",
        **{key: str(value) for key, value in EXTRA.items()},
    }
    return [
        subprocess.Popen(  # noqa: S603 - our own interpreter running our own app
            # Billing work only: each issued invoice also queues its email (with a PDF drawn),
            # which production leaves to any worker; here those jobs wait on the email queue so
            # the figures are the run's own.
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--queue", "default"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]


def wait_for_workers(app, prefix: str, count: int) -> None:
    from rq import Worker

    from portal.infra.queues import redis_connection

    deadline = time.monotonic() + 60
    with app.app_context():
        connection = redis_connection()
        while True:
            mine = [w for w in Worker.all(connection=connection) if any(q.startswith(prefix) for q in w.queue_names())]
            if len(mine) >= count:
                break
            if time.monotonic() > deadline:
                sys.exit(f"only {len(mine)} of {count} workers came up (see the worker log)")
            time.sleep(0.1)
    time.sleep(1.0)  # let their start-up work (the webhook sweep, scheduling) settle


def timed_run(app, workers: list[subprocess.Popen]) -> tuple[float, float, float, list[tuple[float, int]], tuple]:
    """Queue a run as the console does, wait for its row to say it ended. -> (seconds, workers'
    CPU seconds, PostgreSQL's CPU seconds, per worker (CPU, peak RSS), the run's figures)."""
    from portal.billing.runs import request_run
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import BillingRun

    before = [_proc(worker.pid)[0] for worker in workers]
    database_before = postgres_cpu()
    with app.app_context():
        started = time.perf_counter()
        run = request_run("bench", AS_OF)
        run_id = run.id
        commit()  # the job is queued now
        while True:
            run = db.session.get(BillingRun, run_id, populate_existing=True)
            if run.finished:
                break
            db.session.rollback()
            if any(worker.poll() is not None for worker in workers):
                sys.exit("a worker died during the run (see the worker log)")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        summary = (run.status, run.subscriptions_due, run.invoices_created, dict(run.totals), list(run.errors))
    after = [_proc(worker.pid) for worker in workers]
    database = postgres_cpu() - database_before
    cpu = sum(cpu for cpu, _ in after) - sum(before)
    per_worker = [(cpu - start, peak) for (cpu, peak), start in zip(after, before, strict=True)]
    return elapsed, cpu, database, per_worker, summary


def shards_per_worker(app) -> tuple[dict[str, int], list[float]]:
    """(shards taken per worker, seconds each shard took, in the run's order)."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import BillingRunShard

    with app.app_context():
        taken = dict(
            db.session.execute(select(BillingRunShard.worker, func.count()).group_by(BillingRunShard.worker)).all()
        )
        spans = [
            (finished - started).total_seconds()
            for started, finished in db.session.execute(
                select(BillingRunShard.started_at, BillingRunShard.finished_at).order_by(BillingRunShard.position)
            )
        ]
    return taken, spans


def verify(app, count: int, summary) -> None:
    """The run billed every subscription once, for the right period and amount, numbers gap-free."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Invoice, InvoiceCounter, Subscription

    status, due, created, totals, errors = summary
    each = B2B_TOTAL if B2B else PRICE
    problems = []
    if (status, due, created, errors) != ("completed", count, count, []):
        problems.append(f"run: status={status} due={due} invoices={created} errors={errors[:3]}")
    if totals != {"USD": count * each}:
        problems.append(f"run totals {totals}, expected USD {count * each}")
    with app.app_context():
        renewals = db.session.execute(
            select(func.count(), func.sum(Invoice.total), func.count(func.distinct(Invoice.subscription_id))).where(
                Invoice.period_start == AS_OF, Invoice.kind == "period"
            )
        ).one()
        if tuple(renewals) != (count, count * each, count):
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


@contextlib.contextmanager
def scratch(base_url: str):
    import psycopg

    admin_url, name, url = scratch_database(base_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_queues(app, prefix: str) -> None:
    from portal.infra.queues import redis_connection

    with app.app_context():
        connection = redis_connection()
        keys = list(connection.scan_iter(match=f"*{prefix}*"))
        if keys:
            connection.delete(*keys)


def measure(base_url: str, redis_url: str, count: int, workers: int) -> dict:
    prefix = f"bench-billing-{uuid.uuid4().hex[:8]}-"
    with scratch(base_url) as url:
        app = build_app(url, REDIS_URL=redis_url, JOBS_INLINE=False, RQ_QUEUE_PREFIX=prefix)
        setup_started = time.perf_counter()
        populate(app, count, B2B)
        log = tempfile.NamedTemporaryFile("w+b", prefix="bench-billing-workers-", suffix=".log", delete=False)
        processes = start_workers(url, redis_url, prefix, workers, log)
        try:
            wait_for_workers(app, prefix, workers)
            print(f"  N={count:,}, {workers} worker(s): setup {time.perf_counter() - setup_started:.1f} s (not timed)")
            load = os.getloadavg()[0]
            elapsed, cpu, database, per_worker, summary = timed_run(app, processes)
            shards, spans = shards_per_worker(app)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            drop_queues(app, prefix)
        verify(app, count, summary)
        busy = [worker for worker, taken in shards.items() if taken]
        if workers > 1 and len(busy) < workers:
            print(f"  note: only {len(busy)} of {workers} workers took shards")
        with app.app_context():
            from portal.extensions import db

            db.engine.dispose()
        os.unlink(log.name)
    return {
        "count": count,
        "workers": workers,
        "seconds": elapsed,
        "cpu": cpu,
        "database": database,
        "per_worker": per_worker,
        "shards": sorted(shards.values(), reverse=True),
        "spans": spans,
        "load": (load, os.getloadavg()[0]),
    }


def profile_in_process(base_url: str, redis_url: str, count: int) -> None:
    """cProfile of one run billed in this process (every shard inline), as a worker bills a shard:
    the jobs it queues (invoice emails, charges) go to Redis for other workers, not run here."""
    from portal.billing.runs import create_run, execute
    from portal.infra.transactions import commit

    prefix = f"bench-billing-{uuid.uuid4().hex[:8]}-"
    with scratch(base_url) as url:
        app = build_app(url, REDIS_URL=redis_url, RQ_QUEUE_PREFIX=prefix, JOBS_INLINE=False)
        populate(app, count, B2B)
        profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE", "1") != "0" else None
        with app.app_context():
            started, cpu_started = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            run = create_run("bench", AS_OF)
            commit()
            run = execute(run, inline=True)
            if profiler:
                profiler.disable()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            summary = (run.status, run.subscriptions_due, run.invoices_created, dict(run.totals), list(run.errors))
        verify(app, count, summary)
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(
                int(os.environ.get("BENCH_TOP", "35"))
            )
            print(out.getvalue())
        print(
            f"{count:,} subscriptions in this process{', profiled' if profiler else ''}: {elapsed:.2f} s, "
            f"{cpu:.2f} CPU s ({1000 * cpu / count:.2f} ms per subscription)"
        )
        drop_queues(app, prefix)
        with app.app_context():
            from portal.extensions import db

            db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 and 20,000 subscriptions instead of 10,000 and 100,000"
    )
    parser.add_argument(
        "--plain", action="store_true", help="no billing profiles (so no VAT) and no discounts: the plan fee alone"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each case this many times and report medians")
    parser.add_argument("--profile", action="store_true", help="only a cProfile of 2,000 billed in this process")
    parser.add_argument("--cases", help="only these cases, e.g. 100000:2,10000:1 (N:workers)")
    args = parser.parse_args()
    global B2B  # noqa: PLW0603 - one switch read by populate and verify
    B2B = not args.plain
    import logging

    # Warnings and errors only: the migrations and the run would otherwise log a line each.
    logging.basicConfig(level=logging.WARNING)
    base_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if args.profile:
        profile_in_process(base_url, redis_url, 2000)
        return
    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    cases = [(small, 1), (small, 2), (large, 2)]
    if args.cases:
        cases = [tuple(int(part) for part in case.split(":")) for case in args.cases.split(",")]
    results: dict[tuple[int, int], list[dict]] = {}
    for _ in range(args.repeat):
        for count, workers in cases:
            results.setdefault((count, workers), []).append(measure(base_url, redis_url, count, workers))

    print(
        f"\nBilling runs on the queue over N monthly Starter subscriptions, all due, shards of "
        f"{EXTRA.get('BILLING_RUN_SHARD_SIZE', 500)}; PostgreSQL and Redis on this machine; {os.cpu_count()} CPU(s)"
        f"{f'; medians of {args.repeat} runs' if args.repeat > 1 else ''}"
    )
    print(
        f"{'N':>9}{'workers':>8}{'seconds':>9}{'subs/s':>8}{'CPU s':>8}{'CPU ms/sub':>11}{'PG CPU s':>9}{'busy':>6}"
        f"  {'shards per worker':<18}{'peak RSS per worker (MB)':<26}load before/after"
    )
    medians = {}
    for (count, workers), runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        database = statistics.median(r["database"] for r in runs)
        # Of the machine's CPU time over the run, the share the workers and PostgreSQL used.
        busy = (cpu + database) / (seconds * (os.cpu_count() or 1))
        medians[(count, workers)] = seconds
        last = runs[-1]
        rss = ", ".join(f"{peak / 2**20:.0f}" for _, peak in last["per_worker"])
        shards = "/".join(str(n) for n in last["shards"])
        load = ", ".join(f"{r['load'][0]:.1f}/{r['load'][1]:.1f}" for r in runs)
        print(
            f"{count:>9,}{workers:>8}{seconds:>9.2f}{count / seconds:>8.0f}{cpu:>8.2f}{1000 * cpu / count:>11.2f}"
            f"{database:>9.2f}{busy:>6.0%}  {shards:<18}{rss:<26}{load}"
        )
    for (count, workers), runs in results.items():
        spans = runs[-1]["spans"]
        tenth = max(len(spans) // 10, 1)
        print(
            f"  N={count:,}, {workers} worker(s): seconds per shard, first tenth {statistics.median(spans[:tenth]):.2f}, "
            f"last tenth {statistics.median(spans[-tenth:]):.2f} (median)"
        )
    if (small, 1) not in medians or (small, 2) not in medians or (large, 2) not in medians:
        return
    speedup = medians[(small, 1)] / medians[(small, 2)]
    growth = medians[(large, 2)] / medians[(small, 2)]
    peak = max(peak for runs in results.values() for r in runs for _, peak in r["per_worker"]) / 2**20
    print(
        f"2 workers over 1 at {small:,}: {speedup:.2f}x (target >= 1.6x on 2 cores: {'met' if speedup >= 1.6 else 'NOT met'})"
    )
    print(
        f"growth {large:,}/{small:,} with 2 workers: {growth:.2f}x (target <= 11x: {'met' if growth <= 11 else 'NOT met'})"
    )
    print(f"largest peak RSS of a worker: {peak:.0f} MB (target <= 300 MB: {'met' if peak <= 300 else 'NOT met'})")
    if not args.quick:
        seconds = medians[(small, 2)]
        print(f"10,000 with 2 workers in {seconds:.1f} s (target <= 10 s: {'met' if seconds <= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
