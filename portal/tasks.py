"""Background jobs on RQ, enqueued only after the transaction that feeds them commits.

Services call ``defer(job, *ids)``; the request or job calls ``commit()``, which commits
and then enqueues. Without Redis the queue is an in-memory fakeredis with
``is_async=False``, so jobs run inline through the very same RQ code path.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import current_app
from rq import Queue, Retry
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from portal.errors import Conflict
from portal.extensions import db

QUEUE_NAMES = ("default", "email")
_PENDING_KEY = "portal_deferred_jobs"


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


def get_queue(name: str = "default") -> Queue:
    inline = current_app.config["JOBS_INLINE"]
    return Queue(name, connection=redis_connection(), is_async=not inline)


def defer(job: Callable, *args, queue: str = "default", retries: int = 3, timeout: int = 120,
          once: tuple[str, int] | None = None) -> None:
    """Enqueue ``job(*args)`` once the current transaction commits; dropped on rollback.

    ``once=(redis key, seconds)``: not enqueued while that key exists (one job stands for every
    commit until it starts); the job deletes the key when it starts, before reading anything,
    so a commit after that enqueues the next one. The seconds are a safety net for a job lost
    before it started."""
    db.session.info.setdefault(_PENDING_KEY, []).append((job, args, queue, retries, timeout, once))


def commit() -> None:
    """Commit the unit of work, then hand its deferred jobs to the queue."""
    pending = db.session.info.pop(_PENDING_KEY, [])
    try:
        db.session.commit()
    except IntegrityError:
        # Two requests raced for the same unique value; the loser gets a message, not a 500.
        db.session.rollback()
        raise Conflict("This conflicts with a change made at the same moment. Reload and try again.") from None
    except Exception:
        db.session.rollback()
        raise
    for job, args, queue, retries, timeout, once in pending:
        if once is not None and not _claim(*once):
            continue  # a run that has not started yet will find this commit's rows
        try:
            get_queue(queue).enqueue(
                job,
                *args,
                job_timeout=timeout,
                retry=Retry(max=retries, interval=[10, 60, 300][:retries]) if retries else None,
            )
        except Exception:
            if once is not None:
                release(once[0])  # nothing was queued: the next commit must be free to try
            raise


def autocommit_statements() -> None:
    """Run the rest of this request without a transaction: for reads that need no common
    snapshot, and writes that are each one statement, atomic on its own. Saves the BEGIN and
    COMMIT (or ROLLBACK) round trips, and a write's row locks end with its statement;
    ``commit()`` still runs the after-commit work. Only before anything was read, and only on
    an Engine (tests bind the session to a connection)."""
    session = db.session()
    if not session.in_transaction() and isinstance(session.get_bind(), Engine):
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _claim(key: str, seconds: int) -> bool:
    try:
        return bool(redis_connection().set(key, 1, nx=True, ex=seconds))
    except Exception:  # noqa: BLE001 - without Redis the enqueue fails loudly below anyway
        return True


def database_key(name: str) -> str:
    """A Redis key of this database's own: staging, test runs and production may share a Redis."""
    import hashlib

    app = current_app._get_current_object()
    prefix = app.extensions.get("portal_redis_prefix")
    if prefix is None:
        digest = hashlib.sha256(app.config["SQLALCHEMY_DATABASE_URI"].encode()).hexdigest()[:12]
        prefix = app.extensions["portal_redis_prefix"] = f"portal:{digest}"
    return f"{prefix}:{name}"


def release(key: str) -> None:
    """A ``once`` job starting: the next commit enqueues another."""
    redis_connection().delete(key)


def rollback() -> None:
    db.session.info.pop(_PENDING_KEY, None)
    db.session.rollback()


@contextmanager
def savepoint() -> Iterator[None]:
    """A SAVEPOINT inside the current transaction: on an error its changes are rolled back,
    and so are the jobs deferred inside it, while the rest of the transaction goes on."""
    pending = db.session.info.setdefault(_PENDING_KEY, [])
    kept = len(pending)
    try:
        with db.session.begin_nested():
            yield
    except BaseException:
        del pending[kept:]
        raise
