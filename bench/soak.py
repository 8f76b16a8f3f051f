"""Soak test (a benchmark, not a test): mixed load for N minutes against gunicorn and a worker.

    .venv/bin/python bench/soak.py [--minutes 10] [--connections 32] [--worker-class gthread]

On a scratch PostgreSQL database (DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432/postgres; dropped at the end) and Redis (db 8 of
REDIS_URL's server), it migrates, loads the catalog and the demo data (`flask demo seed`),
creates an operator token, then starts the portal under gunicorn (2 workers; gthread with 4
threads each by default) and one `flask --app wsgi worker`, and runs ``--connections`` client
threads, each on its own keep-alive connection, picking for every request one of these kinds:

- ``page``: a portal page signed in as the demo owner (overview, usage, billing, team, API keys,
  invoices, activity), with the session cookie a real sign-in gave (a few sign-ins, shared);
- ``api_read``: GET /api/v1/tenants/{id} with the demo key;
- ``api_write``: PATCH /api/v1/tenants/{id} (the company name) with the demo key;
- ``event``: POST /api/v1/events, a new event each time (quota checks are queued for the worker);
- ``entitlement``: GET /api/v1/entitlements/{id}/pipeline_runs with the operator token;
- ``stripe``: POST /webhooks/stripe, a signed ``customer.updated`` event the worker drains.

It prints the requests, the errors by status (any 5xx or connection error is a failure; a 4xx
is counted but is not expected either), p50/p99 per kind for each minute, each process's RSS
(the gunicorn master and workers, the worker and its scheduler) at the end of each minute, and
its growth over the last 8 minutes (from the first minute's end on runs shorter than 9 minutes;
target: at most 10 %), and whether the worker drained every Stripe event. Rate limiting is off
(RATELIMIT_ENABLED=false): the limiter's 429s are not what a soak test looks for.
"""

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402 - needs ROOT on the path
    DEFAULT_DATABASE_URL,
    HOST,
    VENV_BIN,
    WORKER_CLASSES,
    Server,
    scratch_database,
    use_worker_class,
)
from tests.stripe_support import signature  # noqa: E402 - Stripe's signing scheme, shared with the tests

WEBHOOK_SECRET = "whsec_soak_" + uuid.uuid4().hex
OWNER = ("owner@demo.example.com", "demo portal passphrase")
PAGES = ("/overview", "/usage", "/billing", "/team", "/api-keys", "/billing/invoices", "/activity")
KINDS = {"page": 15, "api_read": 25, "api_write": 5, "event": 30, "entitlement": 20, "stripe": 5}
SIGN_INS = 4


def flask(env: dict, *command: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(VENV_BIN / "flask"), "--app", "wsgi", *command],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def prepare(env: dict) -> tuple[str, str, str]:
    """Schema, catalog, demo data; (tenant id, the demo key, an operator token)."""
    flask(env, "db", "upgrade")
    flask(env, "catalog", "sync")
    seeded = flask(env, "demo", "seed")
    key = re.search(r"Demo API key \(shown this once\): (\S+)", seeded).group(1)
    code = (
        "from portal import create_app\n"
        "from portal.access import SYSTEM\n"
        "from portal.api_keys.services import create_operator_token\n"
        "from portal.infra.transactions import commit\n"
        "app = create_app()\n"
        "with app.test_request_context():\n"
        "    _, token = create_operator_token(SYSTEM, 'soak')\n"
        "    commit()\n"
        "    print(token)\n"
    )
    token = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    return "demo_co", key, token


def sign_in(port: int) -> str:
    """A real sign-in (CSRF token from the form, then the POST); the session cookie."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("GET", "/signin")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = _cookie(response)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    fields = {"email": OWNER[0], "password": OWNER[1]}
    if csrf:
        fields["csrf_token"] = csrf.group(1)
    body = urllib.parse.urlencode(fields)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    conn.close()
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("POST", "/signin", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 303:
        sys.exit(f"sign-in answered {response.status}")
    return _cookie(response) or cookie


def _cookie(response) -> str:
    cookies = [value.split(";", 1)[0] for name, value in response.getheaders() if name.lower() == "set-cookie"]
    return "; ".join(cookies)


def stripe_event() -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "customer.updated",
            "data": {"object": {"id": f"cus_{uuid.uuid4().hex[:14]}", "object": "customer", "metadata": {}}},
        }
    ).encode()


class Load:
    def __init__(self, port: int, tenant_id: str, key: str, token: str, cookies: list[str], seconds: float):
        self.port, self.tenant_id, self.key, self.token, self.cookies = port, tenant_id, key, token, cookies
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.records: list[tuple[int, str, float, int]] = []  # (minute, kind, ms, status; 0 = connection error)
        self.lock = threading.Lock()
        self.counter = 0
        self.stripe_sent = 0
        self.stripe_ids: list[str] = []

    def request(self, kind: str, rng: random.Random) -> tuple[str, str, bytes | None, dict]:
        api = {"X-API-Key": self.key}
        operator = {"Authorization": f"Bearer {self.token}"}
        if kind == "page":
            return "GET", rng.choice(PAGES), None, {"Cookie": rng.choice(self.cookies)}
        if kind == "api_read":
            return "GET", f"/api/v1/tenants/{self.tenant_id}", None, api
        if kind == "api_write":
            body = json.dumps({"company_name": f"Demo Company {rng.randrange(1000)}"}).encode()
            return "PATCH", f"/api/v1/tenants/{self.tenant_id}", body, {**api, "Content-Type": "application/json"}
        if kind == "event":
            with self.lock:
                self.counter += 1
                n = self.counter
            body = {
                "tenant_id": self.tenant_id,
                "eventIdempotencyKey": f"soak-{n}",
                "eventName": "pipeline_run",
                "occurredAt": datetime.now(UTC).isoformat(),
            }
            return "POST", "/api/v1/events", json.dumps(body).encode(), {**operator, "Content-Type": "application/json"}
        if kind == "entitlement":
            return "GET", f"/api/v1/entitlements/{self.tenant_id}/pipeline_runs", None, operator
        body = stripe_event()
        with self.lock:
            self.stripe_sent += 1
        headers = {"Stripe-Signature": signature(body, WEBHOOK_SECRET), "Content-Type": "application/json"}
        return "POST", "/webhooks/stripe", body, headers

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        kinds, weights = list(KINDS), list(KINDS.values())
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        local = []
        while (now := time.monotonic()) < self.deadline:
            kind = rng.choices(kinds, weights)[0]
            method, path, body, headers = self.request(kind, rng)
            started = time.perf_counter()
            status = 0
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            local.append((int((now - self.started) // 60), kind, (time.perf_counter() - started) * 1000, status))
        conn.close()
        with self.lock:
            self.records.extend(local)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def processes(gunicorn_pid: int, worker_pid: int) -> dict[str, int]:
    found = {"gunicorn master": gunicorn_pid}
    for n, pid in enumerate(sorted(_children(gunicorn_pid)), 1):
        found[f"gunicorn worker {n} (pid {pid})"] = pid
    found["rq worker"] = worker_pid
    for n, pid in enumerate(sorted(_children(worker_pid)), 1):
        found[f"rq worker child {n} (pid {pid}, scheduler)"] = pid
    return found


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100)[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long the load runs (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="client connections (default 32)")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="gthread")
    args = parser.parse_args()
    use_worker_class(args.worker_class)
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    import psycopg
    import redis

    admin_url, name, scratch_url = scratch_database(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, "portal_soak"
    )
    redis_url = (os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/8"
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(
        {
            "DATABASE_URL": scratch_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE_PREFIX": f"soak-{uuid.uuid4().hex[:6]}-",
            "RATELIMIT_ENABLED": "false",
            "PORTAL_ENV": "development",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "PYTHONPATH": str(ROOT),
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BILLING_RUN_INTERVAL_SECONDS": "60",
        }
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = worker = None
    rss: dict[str, list[float | None]] = defaultdict(list)
    drained: dict[str, int] = {}
    try:
        tenant_id, key, token = prepare(env)
        server = Server("wsgi:app", env)
        server.wait_ready(f"/api/v1/tenants/{tenant_id}", {"X-API-Key": key})
        worker = subprocess.Popen(  # noqa: S603 - our own venv's flask
            [str(VENV_BIN / "flask"), "--app", "wsgi", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cookies = [sign_in(server.port) for _ in range(SIGN_INS)]
        seconds = args.minutes * 60
        load = Load(server.port, tenant_id, key, token, cookies, seconds)
        threads = [threading.Thread(target=load.client, args=(n,), daemon=True) for n in range(args.connections)]
        for thread in threads:
            thread.start()
        minutes = max(int(round(args.minutes)), 1)
        for minute in range(minutes):
            time.sleep(max(load.started + 60 * (minute + 1) - time.monotonic(), 0))
            found = processes(server.process.pid, worker.pid)
            for label in set(found) | set(rss):
                samples = rss[label]
                samples.extend([None] * (minute - len(samples)))
                samples.append(_rss_mb(found[label]) if label in found else None)
        for thread in threads:
            thread.join()
        # The worker drains what is left; wait for it (at most a minute).
        with psycopg.connect(scratch_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while True:
                drained = dict(conn.execute("SELECT status, count(*) FROM stripe_events GROUP BY 1").fetchall())
                if not drained.get("received") or time.monotonic() > deadline:
                    break
                time.sleep(1)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if server is not None:
            server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(redis_url)
        stale = [key for key in client.scan_iter(match="*soak-*")]
        if stale:
            client.delete(*stale)

    records = load.records
    statuses = Counter(status for *_, status in records)
    failures = sum(n for status, n in statuses.items() if status == 0 or status >= 500)
    print(
        f"soak: {args.minutes:g} min, {args.connections} connections, gunicorn {' '.join(WORKER_CLASSES[args.worker_class])} "
        f"+ one `flask --app wsgi worker`, PostgreSQL scratch database {name} (dropped), Redis {redis_url}; "
        f"{os.cpu_count()} CPU(s); load average before: {load_before}, after: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"requests: {len(records):,} ({len(records) / (args.minutes * 60):,.0f}/s)")
    print(
        "by status: "
        + ", ".join(f"{'connection error' if s == 0 else s}: {n:,}" for s, n in sorted(statuses.items()))
        + f"; failures (5xx or connection errors): {failures} ({'none: met' if not failures else 'NOT met'})"
    )
    other = {s: n for s, n in statuses.items() if 300 <= s < 500 and s != 303}
    if other:
        print(f"unexpected 3xx/4xx: {other}")
    waiting = drained.get("received", 0)
    print(
        f"stripe events sent: {load.stripe_sent:,}; stored, by status, once the worker drained them: "
        f"{dict(sorted(drained.items()))} ({'all drained' if not waiting else f'{waiting} NOT drained'})"
    )
    by_minute: dict[tuple[int, str], list[float]] = defaultdict(list)
    for minute, kind, ms, _ in records:
        by_minute[(minute, kind)].append(ms)
    minutes_seen = sorted({minute for minute, _ in by_minute})
    print("\np50 / p99 ms per kind, per minute (requests)")
    print(f"{'minute':>6}  " + "  ".join(f"{kind:>22}" for kind in KINDS))
    for minute in minutes_seen:
        cells = []
        for kind in KINDS:
            values = by_minute.get((minute, kind), [])
            cells.append(
                f"{percentile(values, 50):7.1f} / {percentile(values, 99):6.1f} ({len(values):>4})"
                if values
                else " " * 22
            )
        print(f"{minute + 1:>6}  " + "  ".join(f"{cell:>22}" for cell in cells))
    print("\nRSS MB at the end of each minute, and its growth over the last 8 minutes (target <= 10 %)")
    worst = 0.0
    for label, samples in sorted(rss.items()):
        present = [(n, v) for n, v in enumerate(samples) if v is not None]
        if len(present) < 2:
            line = "  ".join(f"{v:6.1f}" if v is not None else "     -" for v in samples)
            print(f"  {label:42} {line}")
            continue
        last_n, last = present[-1]
        base_candidates = [(n, v) for n, v in present if n >= max(last_n - 8, 1)] or present
        base_n, base = base_candidates[0]
        growth = (last - base) / base * 100 if base else 0.0
        worst = max(worst, growth)
        line = "  ".join(f"{v:6.1f}" if v is not None else "     -" for v in samples)
        print(f"  {label:42} {line}   growth min {base_n + 1}->{last_n + 1}: {growth:+.1f} %")
    print(f"worst RSS growth: {worst:+.1f} % (target <= 10 %: {'met' if worst <= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
