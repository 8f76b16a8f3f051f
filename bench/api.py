"""Benchmark (not a test): authenticated ``GET /api/v1/tenants/{id}`` against a bare Flask route.

    .venv/bin/python bench/api.py [--duration 10] [--connections 16] [--runs 5]

Creates a scratch PostgreSQL database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, creates an enterprise tenant and a
key, then runs the portal and a bare Flask app returning the same JSON under the same gunicorn
setup (2 workers; sync by default, --worker-class gthread for 4 threads each) on 127.0.0.1, both
up at once, and loads them in turn (portal, bare, portal, ...; --runs pairs) with the same client
for the same time. Prints req/s, p50 and p99 of each run, each pair's ratio and the median ratio
(target: portal / bare >= 0.6 as the median of 5 alternating runs), with the machine's load
average before and after. The scratch database is dropped at the end.

Rate limiting is switched off for the run (RATELIMIT_ENABLED=false): at 1,000/min even an
enterprise key would be throttled within the first second, and the bench measures the request
path, not the limiter's refusals.

REDIS_URL, when set, is passed to the portal as production would have it; the per-process API
key cache (portal/infra/cache.py) needs it. Without it every request queries PostgreSQL.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"  # loopback only
# gunicorn's default worker class (sync, one request at a time per worker, no keep-alive) is
# what `gunicorn -w 2 wsgi:app` runs; gthread keeps connections alive and serves 4 at a time.
WORKER_CLASSES = {
    "sync": ["--workers", "2", "--worker-class", "sync"],
    "gthread": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
GUNICORN_ARGS = WORKER_CLASSES["sync"] + ["--log-level", "warning"]


def add_worker_class_argument(parser) -> None:
    parser.add_argument(
        "--worker-class",
        choices=sorted(WORKER_CLASSES),
        default="sync",
        help="gunicorn worker class (default sync, gunicorn's own default; gthread: 4 threads each)",
    )


def use_worker_class(name: str) -> None:
    """Every Server started from now on runs this gunicorn worker class."""
    GUNICORN_ARGS[:] = WORKER_CLASSES[name] + ["--log-level", "warning"]


def bare_app():
    """The baseline: Flask and one route returning the portal's JSON, nothing else."""
    from flask import Flask, jsonify

    app = Flask("bare")
    payload = json.loads(os.environ["BENCH_JSON"])

    @app.get("/api/v1/tenants/<tenant_id>")
    def tenant(tenant_id):
        return jsonify(payload)

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def scratch_database(base_url: str, prefix: str = "portal_bench", driver: str = "postgresql") -> tuple[str, str, str]:
    """(admin URL, scratch database name, scratch URL with ``driver``); loopback servers only."""
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    if url.host not in (None, "127.0.0.1", "localhost", "::1"):
        sys.exit(f"DATABASE_URL must point at a loopback PostgreSQL, not {url.host}")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    scratch = url.set(drivername=driver, database=name).render_as_string(hide_password=False)
    return admin, name, scratch


def prepare(env: dict) -> tuple[str, str]:
    """Migrate the scratch database (`make migrate-db`: schema, then the plan catalog); create an
    enterprise tenant and a key. -> (tenant_id, key)."""
    for command in (["db", "upgrade"], ["catalog", "sync"]):
        subprocess.run(  # noqa: S603 - our own venv's flask
            [str(VENV_BIN / "flask"), "--app", "wsgi", *command],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    code = (
        "from portal import create_app\n"
        "from portal.access import SYSTEM\n"
        "from portal.api_keys.services import create_key\n"
        "from portal.infra.transactions import commit\n"
        "from portal.tenants.services import create_tenant\n"
        "app = create_app()\n"
        "with app.test_request_context():\n"
        "    t = create_tenant(SYSTEM, 'bench_tenant', 'Bench Ltd', 'bench@example.com', 'enterprise')\n"
        "    _, key = create_key(SYSTEM, t, 'bench', scopes=None)\n"
        "    commit()\n"
        "    print(t.tenant_id, key)\n"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    tenant_id, key = out.stdout.split()[-2:]
    return tenant_id, key


class Server:
    def __init__(self, target: str, env: dict):
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603 - our own venv's gunicorn
            [str(VENV_BIN / "gunicorn"), *GUNICORN_ARGS, "--bind", f"{HOST}:{self.port}", target],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, path: str, headers: dict, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"gunicorn exited early:\n{self.process.stderr.read()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status != 200:
                    sys.exit(f"GET {path} answered {response.status}: {body[:300]!r}")
                return body
            except OSError:
                time.sleep(0.2)
        sys.exit("gunicorn did not answer in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk(command: list[str], url: str, script_args: list[str] = (), timeouts_ok: bool = False) -> dict:
    out = subprocess.run(  # noqa: S603 - wrk, on loopback
        [*command, url, *(["--", *script_args] if script_args else [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if "Non-2xx" in out or (errors and any(int(n) for n in errors.groups()[: 3 if timeouts_ok else 4])):
        sys.exit(f"the load run had errors:\n{out}")

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * _WRK_UNITS[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
    }


def raw_request(method: str, path: str, headers: dict, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request as sent on the wire, asking the server to close the connection."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def paced(port: int, requests: list[bytes], rate: float, connections: int = 16, seed: int = 1) -> dict:
    """Send ``requests`` as a Poisson stream of ``rate`` a second, as independent clients
    would, at most ``connections`` at a time; each latency counts from the moment its request
    was due, so a request kept waiting (by a slow server, or for a free connection) is charged
    for the wait. -> req/s achieved, p50 and p99 (ms). (wrk's per-connection delay() counts
    the pause itself against a server that closes every connection, as gunicorn's sync
    workers do; hey's rate limit sends its connections' requests in bursts.)

    One thread, non-blocking sockets and ``selectors``: tens of microseconds of client CPU per
    request (asyncio's streams took about a millisecond), so the client, which shares the
    machine's cores with the server, disturbs the latencies it measures as little as it can,
    and keeps up with 1,500 requests a second."""
    import random
    import selectors
    from collections import deque

    draws = random.Random(seed)
    dues = []
    due = 0.0
    for _ in requests:
        due += draws.expovariate(rate)
        dues.append(due)
    selector = selectors.DefaultSelector()
    waiting: deque[int] = deque()  # due but no free connection yet
    latencies: list[float] = []
    failures: list[str] = []
    open_count = sent = 0
    started = time.monotonic()

    def start(index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((HOST, port))
        selector.register(sock, selectors.EVENT_WRITE, [index, requests[index], bytearray()])

    while len(latencies) + len(failures) < len(requests):
        now = time.monotonic() - started
        while sent < len(requests) and dues[sent] <= now:
            waiting.append(sent)
            sent += 1
        while waiting and open_count < connections:
            start(waiting.popleft())
            open_count += 1
        timeout = max(0.0, dues[sent] - now) if sent < len(requests) else None
        for key, events in selector.select(timeout):
            sock, state = key.fileobj, key.data
            index, unsent, answer = state
            if events & selectors.EVENT_WRITE:
                try:
                    state[1] = unsent[sock.send(unsent) :]
                except OSError as error:
                    answer.extend(f"HTTP/1.1 599 {error}".encode())
                    state[1] = b""
                    selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                if not state[1]:
                    selector.modify(sock, selectors.EVENT_READ, state)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                answer.extend(chunk)
                continue
            selector.unregister(sock)
            sock.close()
            open_count -= 1
            latency = (time.monotonic() - started - dues[index]) * 1000
            status = bytes(answer[9:12]).decode(errors="replace")
            if status.startswith("2"):
                latencies.append(latency)
            else:
                failures.append(f"{status} {bytes(answer[-200:])!r}")
    elapsed = time.monotonic() - started
    selector.close()
    if failures:
        sys.exit(f"{len(failures)} paced requests failed, e.g. {failures[0]}")
    cuts = statistics.quantiles(sorted(latencies), n=100)
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": cuts[49], "p99": cuts[98]}


def load_wrk(
    port: int,
    path: str,
    headers: dict,
    connections: int,
    duration: int,
    script: str | None = None,
    script_args: list[str] | None = None,
    timeouts_ok: bool = False,
) -> dict:
    """wrk (C, 2 threads) against one path; ``script``: Lua that builds each request instead,
    given ``script_args``. ``timeouts_ok``: requests left unanswered by threads the script
    stopped are not errors."""
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is None:
        return _wrk(command, f"http://{HOST}:{port}{path}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        return _wrk([*command, "-s", file.name], f"http://{HOST}:{port}{path}", script_args or [], timeouts_ok)


def drive(port: int, make_request, connections: int, duration: float) -> dict:
    """``connections`` threads sending ``make_request()`` -> (method, path, body, headers) for
    ``duration`` seconds; req/s and latency percentiles (ms)."""
    samples: list[list[float]] = [[] for _ in range(connections)]
    failures: list[str] = []
    deadline = time.monotonic() + duration

    def worker(out: list[float]) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while time.monotonic() < deadline:
            method, path, body, headers = make_request()
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
                continue
            out.append((time.perf_counter() - start) * 1000)
            if response.status >= 300:
                failures.append(f"{response.status} {payload[:200]!r}")
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
        conn.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in samples]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if failures:
        sys.exit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    merged = sorted(x for s in samples for x in s)
    cuts = statistics.quantiles(merged, n=100) if len(merged) > 1 else [merged[0]] * 99
    return {
        "requests": len(merged),
        "rps": len(merged) / elapsed,
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "elapsed": elapsed,
    }


def load_threads(port: int, path: str, headers: dict, connections: int, duration: int) -> dict:
    """Fallback without wrk: one keep-alive connection per thread (the GIL caps this client)."""
    figures = drive(port, lambda: ("GET", path, None, headers), connections, duration)
    return {"rps": figures["rps"], "p50": figures["p50"], "p99": figures["p99"]}


def measure(server: Server, path: str, headers: dict, connections: int, duration: int) -> dict:
    load = load_wrk if shutil.which("wrk") else load_threads
    load(server.port, path, headers, connections, 2)  # warm-up: connections, pools, caches
    return load(server.port, path, headers, connections, duration)


LOAD_BEFORE = ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--runs", type=int, default=5, help="alternating portal/bare runs; the median ratio counts")
    add_worker_class_argument(parser)
    args = parser.parse_args()
    use_worker_class(args.worker_class)

    import psycopg

    admin_url, name, scratch_url = scratch_database(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    # REDIS_URL passes through when set: production runs with Redis, and the API key cache
    # (the reason a warm read touches no database) exists only with it.
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(
        {
            "DATABASE_URL": scratch_url,
            "RATELIMIT_ENABLED": "false",
            "PORTAL_ENV": "development",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "JOBS_INLINE": "true",
            "PYTHONPATH": str(ROOT),
        }
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    servers: list[Server] = []
    runs: list[tuple[dict, dict]] = []
    try:
        tenant_id, key = prepare(env)
        path = f"/api/v1/tenants/{tenant_id}"
        headers = {"X-API-Key": key}

        portal = Server("wsgi:app", env)
        servers.append(portal)
        body = portal.wait_ready(path, headers)
        bare = Server("bench.api:bare_app()", {**env, "BENCH_JSON": body.decode()})
        servers.append(bare)
        assert json.loads(bare.wait_ready(path, headers)) == json.loads(body)
        # Both servers up, measured in turn (portal, bare, portal, ...): a burst of load from
        # elsewhere on the machine falls on both sides rather than on one.
        for _ in range(args.runs):
            portal_figures = measure(portal, path, headers, args.connections, args.duration)
            bare_figures = measure(bare, path, headers, args.connections, args.duration)
            runs.append((portal_figures, bare_figures))
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    client = "wrk (2 threads)" if shutil.which("wrk") else "Python threads + http.client keep-alive"
    print(f"GET {path} with X-API-Key, {args.connections} connections, {args.duration}s each, client: {client}")
    print(
        f"gunicorn {' '.join(GUNICORN_ARGS[:-2])} on {HOST}; PostgreSQL scratch database {name} (dropped); "
        "rate limiting off (RATELIMIT_ENABLED=false), enterprise tenant; "
        + ("Redis set (API key cache on)" if env.get("REDIS_URL") else "no REDIS_URL (API key cache off)")
        + f"; load average before: {LOAD_BEFORE}, after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"{'run':5}{'portal req/s':>14}{'p50 / p99 ms':>16}{'bare req/s':>12}{'p50 / p99 ms':>16}{'ratio':>8}")
    ratios = []
    for number, (portal_figures, bare_figures) in enumerate(runs, 1):
        ratio = portal_figures["rps"] / bare_figures["rps"]
        ratios.append(ratio)
        print(
            f"{number:<5}{portal_figures['rps']:>14.0f}{portal_figures['p50']:>8.2f} / {portal_figures['p99']:<6.2f}"
            f"{bare_figures['rps']:>12.0f}{bare_figures['p50']:>8.2f} / {bare_figures['p99']:<6.2f}{ratio:>8.2f}"
        )
    median = statistics.median(ratios)
    print(
        f"median ratio portal/bare req/s over {len(ratios)} alternating run(s): {median:.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.6: {'met' if median >= 0.6 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
