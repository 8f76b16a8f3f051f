"""A sign-in half done: the password was right, the second factor is still to come.

Kept in the signed session cookie under its own key, never as Flask-Login's user: until the
second step calls ``_sign_in`` nobody is signed in, so every ``login_required`` route, every
tenant page and the console treat the browser as anonymous. It lasts PENDING_SECONDS and is
tied to the password hash it was checked against: a password reset meanwhile voids it.
"""

import hashlib
import time

from flask import session

from portal.extensions import db
from portal.models import User

SESSION_KEY = "two_factor_pending"
PENDING_SECONDS = 5 * 60


def _password_mark(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def begin(user: User, next_url: str | None) -> None:
    """Remember that ``user`` gave the right password; the second step finishes the sign-in."""
    session.pop(SESSION_KEY, None)
    session[SESSION_KEY] = {
        "user_id": user.id,
        "until": int(time.time()) + PENDING_SECONDS,
        "password": _password_mark(user),
        "next": next_url,
    }


def user() -> User | None:
    """The person half signed in in this browser, or None (none, expired, or password changed)."""
    pending = session.get(SESSION_KEY)
    if not isinstance(pending, dict) or int(pending.get("until", 0)) < time.time():
        return None
    found = db.session.get(User, pending.get("user_id", ""))
    if found is None or pending.get("password") != _password_mark(found):
        return None
    return found


def next_url() -> str | None:
    pending = session.get(SESSION_KEY)
    return pending.get("next") if isinstance(pending, dict) else None


def drop() -> None:
    session.pop(SESSION_KEY, None)
