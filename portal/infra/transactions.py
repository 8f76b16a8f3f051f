"""The unit of work: one ``commit()`` per request or job, jobs handed to the queue only after it.

Services ``flush()`` and ``defer("jobs.x.y", *ids)``; the request or job calls ``commit()``,
which commits and then enqueues what was deferred. A rollback drops them.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from portal.errors import Conflict
from portal.extensions import AUTOCOMMIT, autocommit_engine, db
from portal.infra import queues

_PENDING_KEY = "portal_deferred_jobs"


def defer(
    job: str, *args, queue: str = "default", retries: int = 3, timeout: int = 120, once: tuple[str, int] | None = None
) -> None:
    """Enqueue ``job(*args)`` once the current transaction commits; dropped on rollback.

    ``job`` is the job's dotted name (``"jobs.stripe.charge_invoice"``), so that the domain
    never imports ``jobs/``. ``once=(redis key, seconds)``: not enqueued while that key exists
    (one job stands for every commit until it starts); the job deletes the key when it starts,
    before reading anything, so a commit after that enqueues the next one. The seconds are a
    safety net for a job lost before it started."""
    db.session.info.setdefault(_PENDING_KEY, []).append((job, args, queue, retries, timeout, once))


def commit() -> None:
    """Commit the unit of work, then hand its deferred jobs to the queue."""
    session = db.session()
    pending = session.info.pop(_PENDING_KEY, [])
    if session.info.keys() <= {AUTOCOMMIT} and not (
        session.in_transaction() or session.new or session.dirty or session.deleted
    ):
        # Nothing begun, nothing to flush, nothing noted for after the commit (an autocommit
        # unit of work whose statements committed themselves): no session transaction to
        # begin and close just to fire hooks with nothing to do.
        session.info.pop(AUTOCOMMIT, None)
        _enqueue(pending)
        return
    try:
        db.session.commit()
    except IntegrityError:
        # Two requests raced for the same unique value; the loser gets a message, not a 500.
        db.session.rollback()
        raise Conflict("This conflicts with a change made at the same moment. Reload and try again.") from None
    except Exception:
        db.session.rollback()
        raise
    _enqueue(pending)


def _enqueue(pending: list[tuple]) -> None:
    plain: list[tuple] = []  # jobs in a row with no ``once``: one Redis round trip for them all
    for job, args, queue, retries, timeout, once in pending:
        if once is None:
            plain.append((job, args, queue, retries, timeout))
            continue
        queues.enqueue_all(plain)
        plain = []
        if not queues.claim(*once):
            continue  # a run that has not started yet will find this commit's rows
        try:
            queues.enqueue(job, args, queue=queue, retries=retries, timeout=timeout)
        except Exception:
            queues.release(once[0])  # nothing was queued: the next commit must be free to try
            raise
    queues.enqueue_all(plain)


def rollback() -> None:
    db.session.info.pop(_PENDING_KEY, None)
    db.session.rollback()


def autocommit_statements() -> None:
    """Run the rest of this unit of work without a transaction: for reads that need no common
    snapshot, and writes that are each one statement, atomic on its own. Saves the BEGIN and
    COMMIT (or ROLLBACK) round trips, and a write's row locks end with its statement;
    ``commit()`` still runs the after-commit work. Only before anything was read, and only on
    an Engine (tests bind the session to a connection).

    On PostgreSQL the session's statements go to the autocommit pool (``autocommit_engine``)
    until its transaction ends; elsewhere (SQLite) its connection is switched to autocommit."""
    session = db.session()
    if AUTOCOMMIT in session.info or session.in_transaction() or not isinstance(bind := session.get_bind(), Engine):
        return
    if bind.dialect.name == "postgresql":
        session.info[AUTOCOMMIT] = autocommit_engine(bind)
    else:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@contextmanager
def statement_connection() -> Iterator[Connection]:
    """The connection for Core statements of the unit of work: the session's, or, in
    autocommit mode before the session has begun anything, one of the autocommit pool's for
    these statements only (each is its own transaction). Ingestion's one statement then costs
    no session transaction to begin, commit and close around it."""
    session = db.session()
    engine = session.info.get(AUTOCOMMIT)
    if engine is not None and not session.in_transaction():
        with engine.connect() as connection:
            yield connection
    else:
        yield session.connection()


@event.listens_for(FlaskSession, "after_transaction_end")
def _end_autocommit(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(AUTOCOMMIT, None)  # the next unit of work is a transaction again


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
