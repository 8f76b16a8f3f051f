"""Benchmark (not a test): Stripe webhooks, acknowledged by gunicorn and processed by one worker.

    .venv/bin/python bench/webhooks.py [--events 2000] [--connections 16] [--rate 200] [--redis-db 15]

A scratch PostgreSQL database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres), migrated, with N open Starter invoices (one
tenant made by the services, cloned N-1 times: bench/billing_run.py's ``populate``). Setup is
not timed.

1. **Ack.** The portal under gunicorn with REDIS_URL set and jobs not inline, as production runs
   it: gunicorn's default sync workers, the class the README's deployment command runs
   (``gunicorn -w 4 wsgi:app``), 2 of them on a 2-core machine as bench/api.py runs them.
   N ``invoice.paid`` events, each naming one of our invoices in its metadata, signed exactly as
   Stripe signs them (tests/stripe_support.py's ``signature``), plus a redelivery of every 10th
   one, are POSTed to ``/webhooks/stripe`` from 16 connections (wrk, 2 threads, when installed:
   Debian's ``wrk``; Python threads and http.client otherwise).
   Timed per request: verify, insert + commit, wake the drain (one Redis SET NX; an enqueue only
   when no drain is queued), answer. The first 5 % are a warm-up and not counted. Every answer
   must be 200. The first half is sent as fast as it is answered (the saturated rate; 16
   connections on 2 sync workers then queue, so p99 is about 1.5 x 16 / req/s whatever an
   acknowledgement costs); the second half arrives as a Poisson stream of ``--rate`` a second
   (default 200, what one worker must process), at most 16 at a time, as independent senders
   would send them (``bench.api.paced``): the latency a sender sees, and the target.
2. **Processing.** gunicorn stopped, ONE worker process (this process) drains the queue:
   ``portal.infra.worker.AppWorker`` (the RQ SimpleWorker that ``flask worker`` runs) in burst mode
   against real Redis. The webhooks woke one ``jobs.stripe.drain_stripe_events`` job (one per
   ``ONCE_MARKER_SECONDS`` of acks at most, as no worker runs meanwhile), which processes the
   stored events oldest first, in batches of up to 50: one transaction per batch, each event in
   its own savepoint. Checked: every event
   ``processed`` and every invoice paid. Prints events/s.

``invoice.paid`` is the busiest handler that needs no call to Stripe (it marks our invoice
paid, records the attempt, audits, and checks dunning); handlers that re-read a PaymentIntent
wait on Stripe's API as well, which no local bench can stand for. Stripe is not configured
(no secret key), so an accidental call fails the event and the bench.

Targets: ack p99 <= 25 ms (at --rate); >= 200 events/s per worker. Redis: the given database number of
REDIS_URL's server (default 15) must be empty at the start; the bench empties it after.
"""

import argparse
import contextlib
import http.client
import io
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api as api_bench  # noqa: E402 - needs ROOT on the path
from bench import billing_run  # noqa: E402
from tests.stripe_support import signature  # noqa: E402 - Stripe's signing scheme, shared with the tests

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WEBHOOK_SECRET = "whsec_bench_" + uuid.uuid4().hex
PATH = "/webhooks/stripe"
HOST = api_bench.HOST


def redis_url(base: str, number: int) -> str:
    from redis.connection import parse_url

    parts = parse_url(base)
    if parts.get("host", "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"REDIS_URL must point at a loopback Redis, not {parts['host']}")
    return f"redis://{parts.get('host', '127.0.0.1')}:{parts.get('port', 6379)}/{number}"


def open_invoices(app) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Invoice

    with app.app_context():
        return [
            tuple(row)
            for row in db.session.execute(
                select(Invoice.id, Invoice.tenant_id).where(Invoice.status == "open").order_by(Invoice.number)
            )
        ]


def invoice_paid_event(invoice_id: str, tenant_id: str) -> bytes:
    """Stripe's ``invoice.paid`` for a Stripe invoice that carries ours in its metadata."""
    created = int(time.time())
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "invoice.paid",
            "data": {
                "object": {
                    "id": f"in_{uuid.uuid4().hex[:24]}",
                    "object": "invoice",
                    "amount_due": billing_run.PRICE,
                    "amount_paid": billing_run.PRICE,
                    "amount_remaining": 0,
                    "currency": "usd",
                    "status": "paid",
                    "customer": f"cus_{uuid.uuid4().hex[:14]}",
                    "payment_intent": None,
                    "paid": True,
                    "metadata": {"invoice_id": invoice_id, "tenant_id": tenant_id},
                    "status_transitions": {"paid_at": created},
                }
            },
        },
        indent=2,
    ).encode()


def post_all(port: int, bodies: list[bytes], connections: int) -> tuple[list[float], float]:
    """POST every body once, ``connections`` at a time -> (latencies in ms, elapsed s)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        samples = []
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            body = bodies[index]
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signature(body, WEBHOOK_SECRET),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            start = time.perf_counter()
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            samples.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                failures.append(f"{response.status}")
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
        conn.close()
        with lock:
            latencies.extend(samples)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"{len(failures)} webhook deliveries failed, e.g. status {failures[0]}")
    return latencies, elapsed


# Each wrk thread POSTs its share of the pre-signed deliveries (record i goes to thread i mod n)
# in order. With its share sent, a connection re-sends the thread's first delivery (a
# redelivery: still a 200) until the thread stops, once every delivery of its share has been
# answered (those few re-sends are in wrk's latency figures, and not in the rate, which is
# read off the stored events: wrk measures its whole -d, however early its threads stop).
WEBHOOK_LUA = """
local count = 0
function setup(thread)
  thread:set("index", count)
  count = count + 1
end
function init(args)
  records = {}
  local n, file = tonumber(args[1]), assert(io.open(args[2], "rb"))
  per_thread = tonumber(args[3])
  local i = 0
  while true do
    local length = file:read("*l")
    if not length then break end
    local signature = file:read("*l")
    local body = file:read(tonumber(length))
    if i % n == index then
      table.insert(records, wrk.format("POST", nil, {["Stripe-Signature"] = signature}, body))
    end
    i = i + 1
  end
  file:close()
  sent, answered = 0, 0
end
request = function()
  sent = sent + 1
  return records[sent] or records[1]
end
response = function(status, headers, body)
  answered = answered + 1
  if answered >= #records + per_thread then wrk.thread:stop() end
end
"""
WRK_THREADS = 2


def post_all_wrk(port: int, bodies: list[bytes], connections: int) -> dict:
    """POST every body with wrk, as fast as they are answered -> its latency figures."""
    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "deliveries"
        with records.open("wb") as file:
            for body in bodies:
                file.write(f"{len(body)}\n{signature(body, WEBHOOK_SECRET)}\n".encode() + body)
        # Long enough for every delivery at 200/s; the threads stop as soon as they are done.
        return api_bench.load_wrk(
            port,
            PATH,
            {"Content-Type": "application/json", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
            connections,
            5 + len(bodies) // 200,
            script=WEBHOOK_LUA,
            script_args=[str(WRK_THREADS), str(records), str(-(-connections // WRK_THREADS))],
            timeouts_ok=True,
        )


def ack_rate(app, count: int, since) -> float:
    """Deliveries answered per second: ``count`` of them over the span of the arrival times of
    the new events stored since ``since`` (the redeliveries among them are interleaved)."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import StripeEvent

    with app.app_context():
        first, last = db.session.execute(
            select(func.min(StripeEvent.received_at), func.max(StripeEvent.received_at)).where(
                StripeEvent.received_at > since
            )
        ).one()
        db.session.remove()
    return count / max((last - first).total_seconds(), 1e-3)


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process and its children, from /proc (None elsewhere).
    On a shared machine a request's CPU cost moves far less than its latency does."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for process in [pid, *map(int, children)]:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(server: api_bench.Server, timeout: float = 30) -> None:
    """The webhook endpoint answers (a 400 for an unsigned body is an answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            sys.exit(f"gunicorn exited early:\n{server.process.stderr.read()}")
        try:
            conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
            conn.request("POST", PATH, body=b"{}")
            status = conn.getresponse().status
            conn.close()
            if status != 400:
                sys.exit(f"POST {PATH} without a signature answered {status}, not 400")
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("gunicorn did not answer in time")


def process_queue(config: dict, expected: int) -> tuple[float, float, int]:
    """Drain the default queue with one AppWorker in this process -> (seconds, CPU s, jobs run)."""
    from rq import Queue
    from sqlalchemy import func, select

    from portal import create_app
    from portal.extensions import db
    from portal.infra.queues import redis_connection
    from portal.infra.worker import AppWorker
    from portal.models import Invoice, StripeEvent

    app = create_app(config)
    with app.app_context():
        queue = Queue("default", connection=redis_connection())
        jobs = queue.count
        # The webhook wakes one drain job, not one job per event; another only once the "queued"
        # marker has expired (ONCE_MARKER_SECONDS) with no worker running, as here.
        if not 1 <= jobs <= 10:
            sys.exit(f"{jobs} jobs queued, expected one drain job (a few at most)")
        worker = AppWorker([queue], connection=redis_connection(), name=f"bench-{uuid.uuid4().hex[:8]}")
        started, cpu_started = time.perf_counter(), time.process_time()
        worker.work(burst=True, logging_level="WARNING")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        statuses = dict(db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all())
        errors = (
            db.session.execute(select(StripeEvent.last_error).where(StripeEvent.last_error.is_not(None)).limit(3))
            .scalars()
            .all()
        )
        still_open = db.session.execute(
            select(func.count()).select_from(Invoice).where(Invoice.status == "open")
        ).scalar()
        db.session.remove()
        db.engine.dispose()
    if statuses != {"processed": expected} or still_open:
        sys.exit(f"processing went wrong: events {statuses}, {still_open} invoices still open, errors {errors}")
    return elapsed, cpu, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="distinct events, one per invoice (default 2000)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--redis-db", type=int, default=15, help="an empty Redis database number (default 15)")
    parser.add_argument(
        "--rate",
        type=float,
        default=200,
        help="deliveries/s offered in the paced half (default 200: what one worker must process)",
    )
    api_bench.add_worker_class_argument(parser)
    args = parser.parse_args()
    api_bench.use_worker_class(args.worker_class)
    logging.basicConfig(level=logging.WARNING)

    import psycopg
    from redis import Redis

    base_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    admin_url, name, scratch_url = api_bench.scratch_database(
        base_url, prefix="portal_bench_webhooks", driver="postgresql+psycopg"
    )
    queue_url = redis_url(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL, args.redis_db)
    redis = Redis.from_url(queue_url)
    if redis.dbsize():
        sys.exit(f"Redis database {args.redis_db} is not empty; pick an empty one with --redis-db")
    config = {
        "SQLALCHEMY_DATABASE_URI": scratch_url,
        "REDIS_URL": queue_url,
        "JOBS_INLINE": False,
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "MAIL_SERVER": "",
        "RATELIMIT_ENABLED": False,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": "",
        "STRIPE_PUBLISHABLE_KEY": "",
    }
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(
        {
            "DATABASE_URL": scratch_url,
            "REDIS_URL": queue_url,
            "JOBS_INLINE": "false",
            "RATELIMIT_ENABLED": "false",
            "PORTAL_ENV": "development",
            "SECRET_KEY": config["SECRET_KEY"],
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_SECRET_KEY": "",
            "STRIPE_PUBLISHABLE_KEY": "",
            "MAIL_SERVER": "",
            "PYTHONPATH": str(ROOT),
        }
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = None
    load_before = os.getloadavg()[0]
    try:
        app = billing_run.build_app(scratch_url)
        with contextlib.redirect_stdout(io.StringIO()):
            billing_run.populate(app, args.events)
        invoices = open_invoices(app)
        with app.app_context():
            from portal.extensions import db

            db.engine.dispose()
        assert len(invoices) == args.events, f"{len(invoices)} open invoices, expected {args.events}"
        bodies = [invoice_paid_event(*invoice) for invoice in invoices]
        warm = max(args.events // 20, 1)

        server = api_bench.Server("wsgi:app", env)
        wait_ready(server)
        # Every 10th event delivered again a little later, as Stripe does after a slow answer.
        deliveries = []
        for index, body in enumerate(bodies[warm:]):
            deliveries.append(body)
            if index % 10 == 9:
                deliveries.append(bodies[warm + index - 5])
        half = len(deliveries) // 2
        if shutil.which("wrk"):
            from portal.models import utcnow

            post_all_wrk(server.port, bodies[:warm], args.connections)  # warm-up: imports, pools, connections
            cpu_before, since = tree_cpu_seconds(server.process.pid), utcnow()
            ack = post_all_wrk(server.port, deliveries[:half], args.connections)
            cpu_after = tree_cpu_seconds(server.process.pid)
            ack["rps"] = ack_rate(app, half, since)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            paced = api_bench.paced(
                server.port,
                [
                    api_bench.raw_request(
                        "POST", PATH, {**headers, "Stripe-Signature": signature(body, WEBHOOK_SECRET)}, body
                    )
                    for body in deliveries[half:]
                ],
                args.rate,
                args.connections,
            )
            measured = half
        else:
            post_all(server.port, bodies[:warm], args.connections)
            cpu_before = tree_cpu_seconds(server.process.pid)
            latencies, elapsed = post_all(server.port, deliveries, args.connections)
            cpu_after = tree_cpu_seconds(server.process.pid)
            latencies.sort()
            cuts = statistics.quantiles(latencies, n=100)
            ack = {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": cuts[49], "p99": cuts[98]}
            paced, measured = None, len(deliveries)
        server.stop()
        server = None

        seconds, cpu, jobs = process_queue(config, args.events)
    finally:
        if server is not None:
            server.stop()
        for key in redis.scan_iter():  # the database was empty at the start: all of it is ours
            redis.delete(key)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    rate = args.events / seconds
    client = "wrk, 2 threads" if shutil.which("wrk") else "Python threads + http.client"
    redelivered = len(deliveries) - (len(bodies) - warm)
    print(
        f"POST {PATH}: {len(deliveries)} signed deliveries ({len(bodies) - warm} new invoice.paid, {redelivered} "
        f"redeliveries; {warm} more as warm-up), {args.connections} connections ({client}), gunicorn "
        f"{' '.join(api_bench.GUNICORN_ARGS[:-2])}, jobs to Redis db {args.redis_db}; PostgreSQL scratch database "
        f"{name} (dropped); {os.cpu_count()} CPU(s), load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(
        f"ack, as fast as answered ({measured} deliveries): {ack['rps']:>5.0f} req/s   p50 {ack['p50']:6.2f} ms   "
        f"p99 {ack['p99']:6.2f} ms   (16 connections on 2 sync workers queue: p99 is about 1.5 x 16 / req/s)"
    )
    if cpu_before is not None and cpu_after is not None:
        print(f"         gunicorn CPU {(cpu_after - cpu_before) / ack['requests'] * 1000:.2f} ms per delivery")
    if paced is not None:
        print(
            f"ack at {args.rate:.0f}/s offered ({len(deliveries) - measured} deliveries): {paced['rps']:>5.0f} req/s   "
            f"p50 {paced['p50']:6.2f} ms   p99 {paced['p99']:6.2f} ms   (target p99 <= 25 ms: "
            f"{'met' if paced['p99'] <= 25 else 'NOT met'})"
        )
    print(
        f"worker   {rate:>8.0f} events/s   {args.events} invoice.paid events in {seconds:.2f} s ({cpu:.2f} s CPU in "
        f"the worker process), one AppWorker (RQ SimpleWorker) in burst mode running {jobs} drain job(s) "
        f"(target >= 200/s: {'met' if rate >= 200 else 'NOT met'}); {cpu / args.events * 1000:.2f} ms CPU per event"
    )


if __name__ == "__main__":
    main()
