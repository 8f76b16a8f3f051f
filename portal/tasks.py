"""Background jobs on RQ, enqueued only after the transaction that feeds them commits.

Services call ``defer(job, *ids)``; the request or job calls ``commit()``, which commits
and then enqueues. Without Redis the queue is an in-memory fakeredis with
``is_async=False``, so jobs run inline through the very same RQ code path.
"""

from collections.abc import Callable

from flask import current_app
from rq import Queue, Retry
from sqlalchemy.exc import IntegrityError

from portal.errors import Conflict
from portal.extensions import db

QUEUE_NAMES = ("default", "email")
_PENDING_KEY = "portal_deferred_jobs"
# A job deferred with once=True carries its marker's key in job.meta; the worker deletes the
# marker as the job starts (portal/worker.py), so whatever commits after that wakes a new run.
ONCE_META = "portal_once"
# Should the enqueue after a successful SET NX never happen (the process died in between), the
# marker expires and the next commit enqueues again.
ONCE_MARKER_SECONDS = 60


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
          once: bool = False) -> None:
    """Enqueue ``job(*args)`` once the current transaction commits; dropped on rollback.

    ``once``: for a job that finds its own work in the database (a drain). It is enqueued only
    when no run of it is waiting in the queue already, so a burst of commits costs one job and,
    per commit, one Redis SET NX."""
    db.session.info.setdefault(_PENDING_KEY, []).append((job, args, queue, retries, timeout, once))


def once_marker(queue: Queue, job: Callable) -> str:
    return f"portal:once:{queue.name}:{job.__module__}.{job.__qualname__}"


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
    woken = set()
    for job, args, queue, retries, timeout, once in pending:
        target = get_queue(queue)
        meta = None
        if once:
            marker = once_marker(target, job)
            if marker in woken:
                continue
            woken.add(marker)
            # Inline, the job runs right here and now: there is nothing waiting to join.
            if target.is_async:
                if not target.connection.set(marker, b"1", nx=True, ex=ONCE_MARKER_SECONDS):
                    continue  # a run that has not started yet will find this commit's rows
                meta = {ONCE_META: marker}
        try:
            target.enqueue(
                job,
                *args,
                job_timeout=timeout,
                retry=Retry(max=retries, interval=[10, 60, 300][:retries]) if retries else None,
                meta=meta,
            )
        except Exception:
            if meta:
                target.connection.delete(meta[ONCE_META])
            raise


def rollback() -> None:
    db.session.info.pop(_PENDING_KEY, None)
    db.session.rollback()
