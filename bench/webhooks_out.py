"""Benchmark (not a test): outbound webhooks, sent by one worker to a local receiver.

    .venv/bin/python bench/webhooks_out.py [--deliveries 2000] [--samples 200] [--redis-db 14] [--runs 3]

A scratch PostgreSQL database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres, dropped at the end), REDIS_URL's server (db 14 by
default, queues under a prefix of this run's own), and a receiver in a process of its own: a
``ThreadingHTTPServer`` on loopback that answers 200 and writes each request's ``webhook-id``
and arrival time to a file. Setup is not timed.

1. **Throughput.** N ``webhook.test`` events to one endpoint are committed (N delivery jobs on
   the queue), then ONE worker process (``flask --app wsgi worker --burst``, the production
   worker) sends them: claim, sign (Standard Webhooks HMAC-SHA256), POST pinned to the checked
   address, record the attempt, each step its own transaction. Deliveries per second = the
   arrivals at the receiver, first to last. Baseline in the same run: a bare loop of
   ``requests.post`` of the same body to the same receiver from one process (no database, no
   signing, no queue). Target: >= 300 deliveries/s; the ratio to the bare loop is printed, and
   so is the ceiling one RQ worker puts on any job-per-delivery design: no-op jobs per second
   through the same worker class in the same run.
2. **Delay.** One worker running with an idle queue; --samples times, one at a time: an API key
   is created (the change), and the clock runs from just before its commit to the event's
   arrival at the receiver. p50/p99 printed; target p99 <= 1 s.

Each figure is the median of --runs runs (this machine has 2 cores shared with the receiver
and the database, so the figures are a floor).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import DEFAULT_DATABASE_URL, VENV_BIN, scratch_database  # noqa: E402 - needs ROOT on the path

RECEIVER = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[1], "a", buffering=1)
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        log.write(f"{self.headers.get('webhook-id') or '-'} {time.time():.6f}\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def arrivals(path: Path) -> list[tuple[str, float]]:
    with open(path) as handle:
        return [(parts[0], float(parts[1])) for parts in (line.split() for line in handle) if len(parts) == 2]


def start_receiver(log_path: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", RECEIVER, str(log_path)], stdout=subprocess.PIPE, text=True
    )
    port = process.stdout.readline().strip()
    return process, f"http://127.0.0.1:{port}/hooks"


def bare_loop(url: str, body: bytes, count: int) -> float:
    """requests.post of the same body, one after the other: what one process gets on its own."""
    import requests

    started = time.perf_counter()
    for _ in range(count):
        requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    return count / (time.perf_counter() - started)


def rq_ceiling(redis_url: str, prefix: str, count: int) -> float:
    """No-op jobs per second through one RQ worker (the class ``flask worker`` runs, in burst
    mode): the most one worker can start, whatever a job does."""
    from redis import Redis
    from rq import Queue
    from rq.worker import SimpleWorker

    connection = Redis.from_url(redis_url)
    queue = Queue(f"{prefix}noop", connection=connection)
    for _ in range(count):
        queue.enqueue("builtins.len", "noop")
    worker = SimpleWorker([queue], connection=connection, name=f"{prefix}noop-{uuid.uuid4().hex[:6]}")
    started = time.perf_counter()
    worker.work(burst=True)
    rate = count / (time.perf_counter() - started)
    queue.delete(delete_jobs=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import psycopg

    admin_url, name, scratch_url = scratch_database(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    redis_base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PORTAL_ENV")},
        "DATABASE_URL": scratch_url,
        "REDIS_URL": f"{redis_base}/{args.redis_db}",
        "RQ_QUEUE_PREFIX": prefix,
        "JOBS_INLINE": "false",
        "BILLING_RUN_INTERVAL_SECONDS": "0",
        "SECRET_KEY": "bench-secret-key-bench-secret-key-0123",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    workdir = Path(tempfile.mkdtemp(prefix="webhooks-out-"))
    receivers = []
    try:
        for command in (["db", "upgrade"], ["catalog", "sync"]):
            subprocess.run(  # noqa: S603 - our own venv's flask
                [str(VENV_BIN / "flask"), "--app", "wsgi", *command],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        from portal import create_app
        from portal.access import SYSTEM
        from portal.api_keys.services import create_key
        from portal.extensions import db
        from portal.infra.transactions import commit
        from portal.models import Tenant, WebhookEndpoint, WebhookEvent
        from portal.tenants.services import create_tenant
        from portal.webhooks.services import create_endpoint, send_test

        app = create_app()
        throughput, baseline, ceiling, delays = [], [], [], []
        for run in range(args.runs):
            log_path = workdir / f"arrivals-{run}.log"
            receiver, url = start_receiver(log_path)
            receivers.append(receiver)
            with app.test_request_context():
                tenant = create_tenant(SYSTEM, f"bench_{run}_{uuid.uuid4().hex[:6]}", "Bench Ltd", "bench@example.com")
                endpoint, _ = create_endpoint(SYSTEM, tenant, url, ["*"], "bench")
                commit()
                endpoint = db.session.get(WebhookEndpoint, endpoint.id)
                for _ in range(args.deliveries):
                    send_test(SYSTEM, tenant, endpoint)
                commit()  # N delivery jobs on the queue now
                body = db.session.query(WebhookEvent.body).filter(WebhookEvent.tenant_id == tenant.tenant_id).first()[0]
                tenant_id = tenant.tenant_id

            subprocess.run(  # noqa: S603 - our own venv's flask
                [str(VENV_BIN / "flask"), "--app", "wsgi", "worker", "--burst"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            got = arrivals(log_path)
            assert len(got) >= args.deliveries, f"{len(got)} of {args.deliveries} arrived"
            times = sorted(at for _, at in got)
            throughput.append((len(times) - 1) / (times[-1] - times[0]))
            baseline.append(bare_loop(url, body.encode(), args.deliveries))
            ceiling.append(rq_ceiling(env["REDIS_URL"], prefix, args.deliveries))

            # Delay from a committed change to its arrival, one worker, idle queue.
            worker = subprocess.Popen(  # noqa: S603 - our own venv's flask
                [str(VENV_BIN / "flask"), "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(3)  # the worker starts and sweeps
                seen = len(arrivals(log_path))
                run_delays = []
                for _ in range(args.samples):
                    with app.test_request_context():
                        create_key(SYSTEM, db.session.get(Tenant, tenant_id), "bench", scopes=None)
                        started = time.time()
                        commit()
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        got = arrivals(log_path)
                        if len(got) > seen:
                            seen = len(got)
                            run_delays.append(got[-1][1] - started)
                            break
                        time.sleep(0.001)
                    else:
                        raise SystemExit("a delivery did not arrive within 10 s")
                delays.append(run_delays)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            print(
                f"run {run + 1}: {throughput[-1]:.0f} deliveries/s, bare requests.post {baseline[-1]:.0f}/s, "
                f"RQ no-op jobs {ceiling[-1]:.0f}/s; "
                f"delay p50 {statistics.median(run_delays) * 1000:.0f} ms, "
                f"p99 {sorted(run_delays)[int(len(run_delays) * 0.99) - 1] * 1000:.0f} ms",
                flush=True,
            )

        rate, bare = statistics.median(throughput), statistics.median(baseline)
        all_delays = sorted(d for run in delays for d in run)
        p50 = statistics.median(all_delays) * 1000
        p99 = all_delays[max(int(len(all_delays) * 0.99) - 1, 0)] * 1000
        print(json.dumps({"deliveries": args.deliveries, "runs": args.runs}))
        print(f"one worker: {rate:.0f} deliveries/s signed and recorded (target >= 300)")
        print(f"bare requests.post loop: {bare:.0f} posts/s; ratio {rate / bare:.2f}")
        noop = statistics.median(ceiling)
        print(f"RQ's own ceiling, no-op jobs through one worker: {noop:.0f}/s; ratio {rate / noop:.2f}")
        print(
            f"commit -> delivery: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(all_delays)} changes (target p99 <= 1000)"
        )
    finally:
        for receiver in receivers:
            receiver.terminate()
        try:
            from portal.extensions import db as _db

            with app.app_context():
                _db.session.remove()
                _db.engine.dispose()
        except Exception:  # noqa: BLE001, S110 - setup may have failed before the app existed
            pass
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redis

        connection = redis.Redis.from_url(env["REDIS_URL"])
        for key in connection.scan_iter(f"*{prefix}*"):
            connection.delete(key)


if __name__ == "__main__":
    main()
