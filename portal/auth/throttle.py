"""Sign-in throttling per account, whatever address the attempts come from.

The per-address limit (Flask-Limiter on /signin) stops one machine; this stops many machines
guessing one account. After ``SIGNIN_ACCOUNT_MAX_FAILURES`` failures in a row the account name
is held for ``SIGNIN_ACCOUNT_HOLD_MINUTES``; each further failure after a hold lifts holds it
again for twice as long (capped at a day). A correct password, or a password reset, clears it,
so the right person is never locked out for good: the hold email carries a reset link.
"""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.extensions import db
from portal.models import SignInThrottle, utcnow
from portal.security import hash_token

MAX_HOLD = timedelta(days=1)


def key_for(email: str) -> str:
    # Any typed text, valid email or not, real account or not: the key never reveals which.
    return hash_token("sign-in:" + (email or "").strip().lower())


def held_until(key: str, now: datetime | None = None) -> datetime | None:
    row = db.session.get(SignInThrottle, key)
    now = now or utcnow()
    if row is not None and row.held_until is not None and row.held_until > now:
        return row.held_until
    return None


def record_failure(key: str) -> datetime | None:
    """Count one failure; the end of a hold that starts now, else None."""
    now = utcnow()
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    table = SignInThrottle.__table__
    # One statement: concurrent failures from many machines each count.
    statement = (
        insert(table)
        .values(key=key, failures=1, holds=0, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"failures": table.c.failures + 1, "last_failed_at": now},
        )
        .returning(table.c.failures, table.c.holds)
    )
    failures, holds = db.session.execute(statement).one()
    config = current_app.config
    if failures < config["SIGNIN_ACCOUNT_MAX_FAILURES"]:
        return None
    hold = min(timedelta(minutes=config["SIGNIN_ACCOUNT_HOLD_MINUTES"]) * 2**holds, MAX_HOLD)
    row = db.session.get(SignInThrottle, key, populate_existing=True)
    row.holds = holds + 1
    row.held_until = now + hold
    return row.held_until


def clear(key: str) -> None:
    row = db.session.get(SignInThrottle, key)
    if row is not None:
        db.session.delete(row)
