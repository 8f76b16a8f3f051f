"""Redis and the RQ queues. Without Redis the connection is an in-memory fakeredis and the
queues run jobs inline (``is_async=False``), through the very same RQ code path.

Domain code names a job by its dotted path (``"jobs.billing.execute_billing_run"``), never
by importing ``jobs/``: RQ imports it in the worker, so the domain never depends on its
entry points."""

import hashlib

from flask import current_app
from rq import Queue, Retry

QUEUE_NAMES = ("default", "email", "webhooks")


def redis_connection():
    """The app's Redis connection (fakeredis in embedded mode), created once per app."""
    ext = current_app.extensions
    if "portal_redis" not in ext:
        url = current_app.config.get("REDIS_URL")
        if url:
            from redis import Redis

            ext["portal_redis"] = Redis.from_url(url)
        else:
            from fakeredis import FakeStrictRedis

            ext["portal_redis"] = FakeStrictRedis()
    return ext["portal_redis"]


def queue_name(name: str) -> str:
    """``RQ_QUEUE_PREFIX`` + name: deployments (or test runs) sharing one Redis keep apart."""
    return current_app.config.get("RQ_QUEUE_PREFIX", "") + name


def get_queue(name: str = "default") -> Queue:
    inline = current_app.config["JOBS_INLINE"]
    return Queue(queue_name(name), connection=redis_connection(), is_async=not inline)


def runs_inline() -> bool:
    """Jobs run in the process that enqueues them (the embedded mode): work meant to be shared
    among workers is then done in process, one piece after another."""
    return bool(current_app.config["JOBS_INLINE"])


def _retry(retries: int) -> Retry | None:
    return Retry(max=retries, interval=[10, 60, 300][:retries]) if retries else None


def enqueue(job: str, args: tuple, queue: str = "default", retries: int = 3, timeout: int = 120) -> None:
    """Put ``job(*args)`` on a queue now, with RQ's ``Retry`` (10 s, 1 min, 5 min) for transient
    failures. Callers inside a unit of work use ``transactions.defer`` instead."""
    get_queue(queue).enqueue(job, *args, job_timeout=timeout, retry=_retry(retries))


def enqueue_all(jobs: list[tuple[str, tuple, str, int, int]]) -> None:
    """``enqueue`` each of ``jobs`` (job, args, queue, retries, timeout), in order: on Redis
    in one round trip (a billing run's batch queues an email per invoice), inline one by one."""
    if runs_inline() or len(jobs) < 2:
        for job, args, queue, retries, timeout in jobs:
            enqueue(job, args, queue=queue, retries=retries, timeout=timeout)
        return
    by_queue: dict[str, list] = {}
    for job, args, queue, retries, timeout in jobs:
        data = Queue.prepare_data(job, args, timeout=timeout, retry=_retry(retries))
        by_queue.setdefault(queue, []).append(data)
    with redis_connection().pipeline() as pipeline:
        for queue, datas in by_queue.items():
            get_queue(queue).enqueue_many(datas, pipeline=pipeline)
        pipeline.execute()


def claim(key: str, seconds: int) -> bool:
    """Take a ``once`` key: False while another job standing for this one is still queued."""
    try:
        return bool(redis_connection().set(key, 1, nx=True, ex=seconds))
    except Exception:  # noqa: BLE001 - without Redis the enqueue fails loudly afterwards anyway
        return True


def release(key: str) -> None:
    """A ``once`` job starting: the next commit enqueues another."""
    redis_connection().delete(key)


def database_key(name: str) -> str:
    """A Redis key of this database's own: staging, test runs and production may share a Redis."""
    app = current_app._get_current_object()
    prefix = app.extensions.get("portal_redis_prefix")
    if prefix is None:
        digest = hashlib.sha256(app.config["SQLALCHEMY_DATABASE_URI"].encode()).hexdigest()[:12]
        prefix = app.extensions["portal_redis_prefix"] = f"portal:{digest}"
    return f"{prefix}:{name}"
