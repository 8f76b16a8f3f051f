"""Benchmark (not a test): usage ingestion, entitlement checks and the usage query.

    .venv/bin/python bench/ingest.py [--duration 10] [--connections 16] [--events 10000000]
        [--load-budget 1800] [--rounds 3] [--profile 2000]

On a scratch PostgreSQL database (DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432/postgres; dropped at the end) with the portal under
gunicorn (2 sync workers, rate limiting off), in one run:

1. batch ingestion: POST /api/v1/events/batch with 1,000 events per request from 4 connections,
   events/s; against the baseline, raw psycopg ``executemany INSERT ... ON CONFLICT DO NOTHING``
   of the same events, 1,000 per transaction from 4 connections, into an equivalent table
   (same columns, unique constraint and index). Target: batch >= 25 % of raw.
2. single events: POST /api/v1/events, one new event per request, at 16 connections. Target
   >= 1,000 req/s. Baseline in the same run: ``minimal_app``, a bare WSGI callable storing each
   event with the portal's own statement on a raw psycopg connection, under the same gunicorn
   and client: the most this machine gives any Python WSGI app that stores an event. And
   ``bare_flask_app``, the same in a Flask route with nothing else: what Flask itself costs,
   so the ceiling of any Flask endpoint against the minimal app. All three are up at once and
   loaded in turn, --rounds times (portal, minimal, bare Flask, portal, ...), after a VACUUM and
   a CHECKPOINT that clear what the batches left PostgreSQL to do; the median of the rounds'
   portal/minimal ratios counts.
3. entitlement checks: GET /api/v1/entitlements/{tenant}/pipeline_runs with an operator token:
   req/s at 16 connections sending as fast as they are answered (target >= 1,500 req/s), then
   p50/p99 latency of checks arriving as a Poisson stream at half the rate just measured, at
   most 16 at a time (``bench.api.paced``; target p99 <= 10 ms), after another VACUUM and
   CHECKPOINT (the single events' writes). Latency is read at the target rate, not
   at saturation: 16 connections on 2 workers that answer as fast as they can queue behind
   each other (Little's law: 16 / req/s is the mean wait however fast a check is).
4. the usage query: GET /api/v1/tenants/{id}/usage?month=<this month> for a tenant holding
   --events events this month in the month's partition of usage_events (generated in
   PostgreSQL with INSERT ... SELECT generate_series, a million a statement, stopping early
   when --load-budget seconds would be passed; then ``flask usage rebuild-rollups``, as
   ingestion would have kept the hourly roll-ups), one request at a time, p50 and p95. Target
   p95 <= 50 ms at 10,000,000 events. The line says how many were loaded and where they are.
5. a profile (--profile N single events through the WSGI app in process, under cProfile): the
   share of authentication, body parsing, validation, the INSERT, the hard-limit check, the
   quota check queueing, the commit and the response.

Quota checks after ingestion are RQ jobs, as in production: the portal gets a REDIS_URL (db 7 of
REDIS_URL's server, default redis://127.0.0.1:6379) and the queued jobs are deleted at the end.
The load client for single events and checks is wrk when installed (Debian's ``wrk``; Python
threads otherwise), ``bench.api.paced`` for the checks at half their capacity, and Python threads for
batches. The clients share the machine's cores with the server, so the figures are a floor.
"""

import argparse
import hashlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402 - needs ROOT on the path
    GUNICORN_ARGS,
    HOST,
    VENV_BIN,
    Server,
    add_worker_class_argument,
    drive,
    load_wrk,
    paced,
    raw_request,
    scratch_database,
    use_worker_class,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 1000
BATCH_CONNECTIONS = 4


def flask_command(env: dict, *command: str) -> None:
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(VENV_BIN / "flask"), "--app", "wsgi", *command],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def prepare(env: dict) -> tuple[str, str, str]:
    """Schema, catalog, an enterprise tenant, its key and an operator token."""
    for command in (["db", "upgrade"], ["catalog", "sync"]):
        flask_command(env, *command)
    code = (
        "from portal import create_app\n"
        "from portal.access import SYSTEM\n"
        "from portal.api_keys.services import create_key, create_operator_token\n"
        "from portal.infra.transactions import commit\n"
        "from portal.tenants.services import create_tenant\n"
        "app = create_app()\n"
        "with app.test_request_context():\n"
        "    t = create_tenant(SYSTEM, 'bench_tenant', 'Bench Ltd', 'bench@example.com', 'enterprise')\n"
        "    create_tenant(SYSTEM, 'bench_big', 'Big Ltd', 'big@example.com', 'enterprise')\n"
        "    _, key = create_key(SYSTEM, t, 'bench', scopes=None)\n"
        "    _, token = create_operator_token(SYSTEM, 'bench')\n"
        "    commit()\n"
        "    print(t.tenant_id, key, token)\n"
    )
    out = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    tenant_id, key, token = out.stdout.split()[-3:]
    return tenant_id, key, token


def event_factory(tenant_id: str, prefix: str):
    counter = itertools.count()
    lock = threading.Lock()
    now = datetime.now(UTC).isoformat()

    def make() -> dict:
        with lock:
            n = next(counter)
        return {
            "tenant_id": tenant_id,
            "eventIdempotencyKey": f"{prefix}-{n}",
            "eventName": "compute_usage",
            "occurredAt": now,
            "quantity": 1.5,
            "properties": {"job": f"job-{n % 97}"},
        }

    return make


# One event per request, each with its own idempotency key: "<run>-<wrk thread>-<n>".
SINGLE_EVENT_LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", "%(run)s-" .. threads)
end
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"tenant_id":"%(tenant)s","eventIdempotencyKey":"%%s-%%d","eventName":"compute_usage",'
    .. '"occurredAt":"%(now)s","quantity":1.5,"properties":{"job":"job-%%d"}}', prefix, counter, counter %% 97)
  return wrk.format("POST", nil, nil, body)
end
"""


def single_events(port: int, tenant_id: str, headers: dict, connections: int, duration: int) -> dict:
    """POST /api/v1/events at ``connections``, one new event per request."""
    if not shutil.which("wrk"):
        make = event_factory(tenant_id, f"single{duration}")
        return drive(port, lambda: ("POST", "/api/v1/events", json.dumps(make()), headers), connections, duration)
    script = SINGLE_EVENT_LUA % {"run": uuid.uuid4().hex[:8], "tenant": tenant_id, "now": datetime.now(UTC).isoformat()}
    return load_wrk(port, "/api/v1/events", headers, connections, duration, script=script)


_minimal_connections: dict[int, object] = {}


def _store_plainly(event: dict) -> tuple[str, bool]:
    """Store ``event`` with the portal's own single-event statement
    (``portal.usage.ingest._SINGLE_INSERT``: the event and its roll-up) on one autocommit psycopg
    connection per process, nothing checked; (its id, whether it was a duplicate)."""
    import secrets

    import psycopg

    from portal.usage.ingest import _SINGLE_INSERT

    connection = _minimal_connections.get(os.getpid())
    if connection is None:
        connection = _minimal_connections[os.getpid()] = psycopg.connect(os.environ["BENCH_PLAIN_URL"], autocommit=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    event_id = f"evt_{secrets.token_hex(8)}"
    stored = connection.execute(
        _SINGLE_INSERT,
        (
            event_id,
            event["tenant_id"],
            event["eventIdempotencyKey"],
            event["eventName"],
            now,
            event["quantity"],
            json.dumps(event["properties"]),
            now,
        ),
    ).fetchone()
    return event_id, stored is None


def minimal_app(environ, start_response):
    """The single-event baseline: a bare WSGI callable (no Flask, no authentication, no
    validation) that stores the posted event (``_store_plainly``). What gunicorn, the client and
    PostgreSQL cost on their own."""
    event = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    event_id, duplicate = _store_plainly(event)
    body = json.dumps({"success": True, "event_id": event_id, "duplicate": duplicate}).encode()
    start_response("201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _bare_flask_app():
    from flask import Flask, jsonify, request

    app = Flask("bench_ingest_bare_flask")

    @app.post("/api/v1/events")
    def store():
        event_id, duplicate = _store_plainly(request.get_json())
        return jsonify(success=True, event_id=event_id, duplicate=duplicate), 201

    return app


# The framework's own share: a bare Flask app (no extension, no hook, no authentication or
# validation) storing the event as ``minimal_app`` does. Between the two is what any Flask
# endpoint pays before doing anything; the portal's single events cannot come nearer
# ``minimal_app`` than this does.
bare_flask_app = _bare_flask_app()


def start_baseline(env: dict, plain_url: str, tenant_id: str, app: str) -> Server:
    """A baseline app of this module (``minimal_app``, ``bare_flask_app``) under the same
    gunicorn, up and answering."""
    server = Server(f"bench.ingest:{app}", {**env, "BENCH_PLAIN_URL": plain_url})
    deadline = time.monotonic() + 30
    while True:  # ready when it accepts connections (it has no GET to ask)
        try:
            raw = raw_request(
                "POST",
                "/api/v1/events",
                {"Content-Type": "application/json"},
                json.dumps(
                    {
                        "tenant_id": tenant_id,
                        "eventIdempotencyKey": f"minimal-ready-{uuid.uuid4().hex}",
                        "eventName": "compute_usage",
                        "quantity": 1,
                        "properties": {},
                    }
                ).encode(),
            )
            with socket.create_connection((HOST, server.port), timeout=2) as sock:
                sock.sendall(raw)
                if sock.recv(12).endswith(b"201"):
                    return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                sys.exit(f"the baseline single-event app {app} did not answer in time")
            time.sleep(0.2)


def settle(plain_url: str) -> None:
    """Vacuum and checkpoint the scratch database, so the work the batch phase left PostgreSQL
    (autovacuum of the tables it filled, its dirty pages written out) falls on none of the
    single-event measurements that follow."""
    import psycopg

    with psycopg.connect(plain_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def single_event_rounds(servers: dict[str, Server], tenant_id: str, headers: dict, args) -> list[dict]:
    """``args.rounds`` rounds, each loading every server in ``servers`` in turn (portal,
    minimal, bare Flask, portal, ...), with a warm-up before each: a burst of load from
    elsewhere on the machine, or PostgreSQL's own background work, falls on every side
    rather than on one. -> one {name: figures} per round."""
    rounds = []
    for _ in range(args.rounds):
        figures = {}
        for name, server in servers.items():
            single_events(server.port, tenant_id, headers, args.connections, 2)  # warm-up
            figures[name] = single_events(server.port, tenant_id, headers, args.connections, args.duration)
        rounds.append(figures)
    return rounds


def offered_rate(port: int, path: str, headers: dict, connections: int, rate: int, duration: int) -> dict:
    """Latency of checks arriving as a Poisson stream of ``rate`` a second, at most
    ``connections`` at a time (``bench.api.paced``)."""
    return paced(port, [raw_request("GET", path, headers)] * int(rate * duration), rate, connections)


def raw_baseline(scratch_url: str, tenant_id: str, total: int) -> float:
    """events/s of psycopg executemany ... ON CONFLICT DO NOTHING into an equivalent table."""
    import psycopg
    from psycopg.types.json import Jsonb  # noqa: F401 - json column below takes text

    with psycopg.connect(scratch_url, autocommit=True) as conn:
        # usage_events is partitioned; its dedupe lives in usage_event_keys: the baseline table
        # gets the same columns and indexes, and that unique index, on one plain table.
        conn.execute("CREATE TABLE raw_events (LIKE usage_events INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.execute("CREATE UNIQUE INDEX raw_events_key ON raw_events (tenant_id, idempotency_key)")
    make = event_factory(tenant_id, "raw")
    per_thread = max(total // BATCH_CONNECTIONS // BATCH, 1)
    now = datetime.now(UTC).replace(tzinfo=None)

    def worker() -> None:
        with psycopg.connect(scratch_url) as conn:
            for _ in range(per_thread):
                rows = []
                for _ in range(BATCH):
                    e = make()
                    rows.append(
                        (
                            f"evt_{uuid.uuid4().hex[:16]}",
                            e["tenant_id"],
                            e["eventIdempotencyKey"],
                            e["eventName"],
                            now,
                            e["quantity"],
                            json.dumps(e["properties"]),
                            now,
                        )
                    )
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO raw_events (id, tenant_id, idempotency_key, name, occurred_at, quantity, "
                        "properties, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        rows,
                    )
                conn.commit()

    threads = [threading.Thread(target=worker) for _ in range(BATCH_CONNECTIONS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return per_thread * BATCH_CONNECTIONS * BATCH / (time.monotonic() - started)


LOAD_STEP = 1_000_000


def load_big_tenant(scratch_url: str, tenant_id: str, count: int, budget_seconds: float) -> tuple[int, float]:
    """Up to ``count`` pipeline runs spread over this month so far, generated in PostgreSQL
    (``INSERT ... SELECT generate_series``, a million rows a statement), stopping early when the
    next step would not fit in ``budget_seconds``. Returns (rows loaded, seconds)."""
    import psycopg

    now = datetime.now(UTC).replace(tzinfo=None)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - start).total_seconds() - 60, 1)
    loaded, started = 0, time.monotonic()
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        while loaded < count:
            step = min(LOAD_STEP, count - loaded)
            step_started = time.monotonic()
            conn.execute(
                "INSERT INTO usage_events (id, tenant_id, idempotency_key, name, occurred_at, quantity, properties, "
                "received_at) SELECT 'evt_big' || lpad(n::text, 16, '0'), %(tenant)s, 'big-' || n, 'pipeline_run', "
                "%(start)s + make_interval(secs => %(span)s * n / %(count)s), 1, '{}'::json, %(now)s "
                "FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS n",
                {
                    "tenant": tenant_id,
                    "start": start,
                    "span": span,
                    "count": count,
                    "now": now,
                    "low": loaded,
                    "high": loaded + step - 1,
                },
            )
            loaded += step
            took = time.monotonic() - step_started
            print(f"  loaded {loaded:,} events ({took:.0f} s for the last {step:,})", file=sys.stderr)
            if time.monotonic() - started + took > budget_seconds and loaded < count:
                print(f"  stopping: the next step would pass --load-budget {budget_seconds:.0f} s", file=sys.stderr)
                break
        conn.execute("ANALYZE usage_events")
    return loaded, time.monotonic() - started


PHASES = (
    # (what, the function whose cumulative time it is: module suffix, name)
    ("authentication (key/token, tenant)", "portal/api/registry.py", "_authenticate"),
    ("body parsing and pydantic validation", "portal/api/registry.py", "_parse_body"),
    ("event validation (fields, tenant terms)", "portal/usage/ingest.py", "validate"),
    ("storing (the one INSERT statement)", "portal/usage/ingest.py", "store"),
    ("hard-limit check (limits.reached)", "portal/usage/limits.py", "reached"),
    ("quota check queueing (_defer_quota_checks)", "portal/api/usage.py", "_defer_quota_checks"),
    ("commit (and enqueueing deferred jobs)", "portal/infra/transactions.py", "commit"),
    ("response (pydantic model, JSON)", "portal/api/usage.py", "dump"),
)


def profile_child(requests: int, tenant_id: str, token: str) -> None:
    """In this process (DATABASE_URL and REDIS_URL from the environment): ``requests`` single
    events through the whole WSGI app (no HTTP), under cProfile; the share of each phase."""
    import cProfile
    import pstats

    from portal import create_app

    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    make = event_factory(tenant_id, f"profile-{uuid.uuid4().hex[:6]}")
    for _ in range(200):  # warm: caches, pools, compiled statements
        client.post("/api/v1/events", json=make(), headers=headers)
    bodies = [make() for _ in range(requests)]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for body in bodies:
        response = client.post("/api/v1/events", json=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
    profiler.disable()
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    print(
        f"profile of {requests:,} single events in process (test client, no HTTP): {elapsed / requests * 1e3:.2f} ms each under cProfile"
    )
    accounted = 0.0
    for what, module, name in PHASES:
        cumulative = sum(
            ct for (path, _, func), (_, _, _, ct, _) in stats.items() if func == name and path.endswith(module)
        )
        accounted += cumulative
        print(f"  {what:45} {cumulative / requests * 1e3:6.3f} ms  {cumulative / total:5.1%}")
    rest = total - accounted
    print(
        f"  {'the rest (Flask, Werkzeug routing, request/response objects, hooks)':45} {rest / requests * 1e3:6.3f} ms  {rest / total:5.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP measurement (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="connections for single events and checks")
    parser.add_argument("--events", type=int, default=10_000_000, help="events of the usage-query tenant this month")
    parser.add_argument(
        "--load-budget", type=float, default=1800, help="seconds loading those events may take (stops early)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of single events (portal, minimal, bare Flask)"
    )
    parser.add_argument("--profile", type=int, default=2000, help="single events profiled in process (0: none)")
    parser.add_argument(
        "--usage-only", action="store_true", help="only load the events and measure the usage query (part 4)"
    )
    parser.add_argument("--profile-child", nargs=3, metavar=("N", "TENANT", "TOKEN"), help=argparse.SUPPRESS)
    add_worker_class_argument(parser)
    args = parser.parse_args()
    if args.profile_child:
        profile_child(int(args.profile_child[0]), args.profile_child[1], args.profile_child[2])
        return
    use_worker_class(args.worker_class)
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    import psycopg
    import redis

    admin_url, name, scratch_url = scratch_database(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    plain_url = scratch_url  # plain postgresql://, for psycopg (the portal picks its own driver)
    redis_url = (os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/7"
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(
        {
            "DATABASE_URL": scratch_url,
            "REDIS_URL": redis_url,
            "RATELIMIT_ENABLED": "false",
            "PORTAL_ENV": "development",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "PYTHONPATH": str(ROOT),
            "BILLING_RUN_INTERVAL_SECONDS": "0",
        }
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    server = None
    figures = {}
    try:
        tenant_id, key, token = prepare(env)
        operator = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        server = Server("wsgi:app", env)
        server.wait_ready(f"/api/v1/tenants/{tenant_id}", {"X-API-Key": key})

        if not args.usage_only:
            make = event_factory(tenant_id, "batch")
            batch_request = lambda: (  # noqa: E731 - a request factory beside the others
                "POST",
                "/api/v1/events/batch",
                json.dumps({"events": [make() for _ in range(BATCH)]}),
                operator,
            )
            drive(server.port, batch_request, BATCH_CONNECTIONS, 2)  # warm-up
            batch = drive(server.port, batch_request, BATCH_CONNECTIONS, args.duration)
            figures["batch_events_per_s"] = batch["rps"] * BATCH
            figures["raw_events_per_s"] = raw_baseline(
                plain_url, tenant_id, int(batch["requests"] * BATCH) or BATCH * 4
            )

            settle(plain_url)
            baselines = {}
            try:
                for app in ("minimal_app", "bare_flask_app"):
                    baselines[app] = start_baseline(env, plain_url, tenant_id, app)
                figures["single_rounds"] = single_event_rounds(
                    {"portal": server, "minimal": baselines["minimal_app"], "flask": baselines["bare_flask_app"]},
                    tenant_id,
                    operator,
                    args,
                )
            finally:
                for baseline in baselines.values():
                    baseline.stop()

            settle(plain_url)  # the single events' writes, likewise, before the checks' latency
            check_path = f"/api/v1/entitlements/{tenant_id}/pipeline_runs"
            if shutil.which("wrk"):
                load_wrk(server.port, check_path, operator, args.connections, 2)
                figures["entitlement"] = load_wrk(server.port, check_path, operator, args.connections, args.duration)
            else:
                check = ("GET", check_path, None, operator)
                drive(server.port, lambda: check, args.connections, 2)
                figures["entitlement"] = drive(server.port, lambda: check, args.connections, args.duration)
            # Offered at half the capacity just measured: the latency a check gets with headroom.
            figures["entitlement_rate"] = max(int(figures["entitlement"]["rps"] / 2), 1)
            figures["entitlement_at_rate"] = offered_rate(
                server.port, check_path, operator, args.connections, figures["entitlement_rate"], args.duration
            )

            if args.profile:
                profiled = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    [sys.executable, str(Path(__file__)), "--profile-child", str(args.profile), tenant_id, token],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                figures["profile"] = profiled.stdout

        # The same query before the events are loaded: what the machine gives it with no data.
        month = datetime.now(UTC).strftime("%Y-%m")
        usage = ("GET", f"/api/v1/tenants/bench_big/usage?month={month}", None, operator)
        drive(server.port, lambda: usage, 1, 2)
        figures["usage_empty"] = drive(server.port, lambda: usage, 1, args.duration)
        figures["loaded"], figures["load_seconds"] = load_big_tenant(
            plain_url, "bench_big", args.events, args.load_budget
        )
        # Loaded behind ingestion's back, which keeps the hourly roll-ups: recompute them, as an
        # operator would after loading events with SQL.
        flask_command(env, "usage", "rebuild-rollups")
        with psycopg.connect(plain_url) as conn:
            figures["partition"] = conn.execute(
                "SELECT tableoid::regclass::text, count(*) FROM usage_events WHERE tenant_id = 'bench_big' "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
            ).fetchone()
            figures["partitions"] = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_events'::regclass"
            ).fetchone()[0]
        drive(server.port, lambda: usage, 1, 2)
        figures["usage"] = drive(server.port, lambda: usage, 1, args.duration)
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(redis_url)
        # The portal's keys of the scratch database: "portal:<digest of its SQLAlchemy URL>:..."
        # (portal.infra.queues.database_key; the URL as portal.config normalises it).
        digest = hashlib.sha256(scratch_url.replace("postgresql://", "postgresql+psycopg://", 1).encode())
        stale = list(client.scan_iter(match="rq:*")) + list(
            client.scan_iter(match=f"portal:{digest.hexdigest()[:12]}:*")
        )
        if stale:
            client.delete(*stale)

    usage = figures["usage"]
    if not args.usage_only:
        ratio = figures["batch_events_per_s"] / figures["raw_events_per_s"]
        check, usage = figures["entitlement"], figures["usage"]
        at_rate = figures["entitlement_at_rate"]
        client = "wrk (2 threads)" if shutil.which("wrk") else "Python threads + http.client"
        print(
            f"gunicorn {' '.join(GUNICORN_ARGS[:-2])} on {HOST}; PostgreSQL scratch database {name} (dropped); rate limiting off; "
            f"Redis {redis_url} (quota checks queued as RQ jobs); client: {client} for single events and checks, "
            f"Python threads for batches; {os.cpu_count()} CPU(s)"
        )
        print(
            f"batch ingestion     {figures['batch_events_per_s']:>10,.0f} events/s  ({BATCH_CONNECTIONS} connections, "
            f"{BATCH} events per request)"
        )
        print(
            f"raw psycopg         {figures['raw_events_per_s']:>10,.0f} events/s  (executemany ... ON CONFLICT DO NOTHING)"
        )
        print(f"ratio batch/raw: {ratio:.2f} (target >= 0.25: {'met' if ratio >= 0.25 else 'NOT met'})")
        rounds = figures["single_rounds"]
        print(
            f"single events, {len(rounds)} alternating round(s) (portal, minimal WSGI app, bare Flask app; "
            f"{args.connections} connections, {args.duration} s each):"
        )
        print(
            "  minimal WSGI app: no Flask, no auth or validation, the same INSERT on a raw psycopg connection; "
            "bare Flask app: the same INSERT in a Flask route, nothing else (the ceiling of any Flask endpoint here)"
        )
        print(
            f"  {'round':<7}{'portal req/s':>13}{'p50 / p99 ms':>16}{'minimal req/s':>15}{'bare Flask req/s':>18}"
            f"{'portal/minimal':>16}{'bare Flask/minimal':>20}{'portal/bare Flask':>19}"
        )
        ratios = []
        for number, figures_of in enumerate(rounds, 1):
            portal, minimal, bare = figures_of["portal"], figures_of["minimal"], figures_of["flask"]
            ratios.append(portal["rps"] / minimal["rps"])
            print(
                f"  {number:<7}{portal['rps']:>13,.0f}{portal['p50']:>8.1f} / {portal['p99']:<6.1f}{minimal['rps']:>15,.0f}"
                f"{bare['rps']:>18,.0f}{ratios[-1]:>16.2f}{bare['rps'] / minimal['rps']:>20.2f}"
                f"{portal['rps'] / bare['rps']:>19.2f}"
            )
        single_ratio = statistics.median(ratios)
        single_rps = statistics.median(r["portal"]["rps"] for r in rounds)
        print(
            f"  median portal/minimal over {len(ratios)} round(s): {single_ratio:.3f} (range {min(ratios):.2f}-"
            f"{max(ratios):.2f}; target >= 0.5: {'met' if single_ratio >= 0.5 else 'NOT met'}); "
            f"median portal {single_rps:,.0f} req/s (target >= 1,000: {'met' if single_rps >= 1000 else 'NOT met'})"
        )
        print(
            f"entitlement checks  {check['rps']:>10,.0f} req/s     p50 {check['p50']:.1f} ms, p99 {check['p99']:.1f} ms "
            f"({args.connections} connections, as fast as they answer; target >= 1,500 req/s: "
            f"{'met' if check['rps'] >= 1500 else 'NOT met'})"
        )
        print(
            f"  at half capacity, {figures['entitlement_rate']:,} req/s offered: {at_rate['rps']:>6,.0f} req/s, "
            f"p50 {at_rate['p50']:.1f} ms, p99 {at_rate['p99']:.1f} ms ({args.connections} connections at most; "
            f"target p99 <= 10 ms: {'met' if at_rate['p99'] <= 10 else 'NOT met'})"
        )
    partition, in_partition = figures["partition"]
    print(
        f"usage query         {figures['loaded']:,} events this month (loaded in {figures['load_seconds']:.0f} s; "
        f"{in_partition:,} in partition {partition} of {figures['partitions']}): p50 {usage['p50']:.1f} ms, "
        f"p95 {usage['p95']:.1f} ms (target p95 <= 50 ms at 10,000,000: "
        f"{'met' if usage['p95'] <= 50 and figures['loaded'] >= 10_000_000 else 'NOT met' if usage['p95'] > 50 else 'not reached: fewer events loaded'})"
    )
    empty = figures["usage_empty"]
    print(
        f"  the same query before loading (0 events): p50 {empty['p50']:.1f} ms, p95 {empty['p95']:.1f} ms "
        f"(10,000,000 events / none, p95: {usage['p95'] / empty['p95']:.2f})"
    )
    if figures.get("profile"):
        print(figures["profile"].rstrip())
    print(f"load average before: {load_before}; after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
