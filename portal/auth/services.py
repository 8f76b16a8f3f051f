"""Accounts and sessions: sign-up, sign-in, server-side sessions, password reset, and the
person's own account page (password, email, sessions)."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload
from zxcvbn import zxcvbn

from portal import audit, timezones
from portal.access import Actor
from portal.auth import security_events, throttle, user_agents
from portal.errors import Conflict, NotFound, ServiceError, ValidationFailed
from portal.extensions import db
from portal.mail import send_email
from portal.models import EmailChange, PasswordReset, User, UserSession, utcnow
from portal.security import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    PASSWORD_MIN_SCORE,
    hash_password,
    hash_token,
    new_token,
    password_needs_rehash,
    verify_password,
)
from portal.tenants.scoped import could_be_an_id
from portal.web import public_url

EMAIL_CHANGE_VALID_FOR = timedelta(hours=24)
# A session's last_seen_at is written at most this often: a page view must not cost a write.
SESSION_SEEN_RESOLUTION = timedelta(minutes=5)


def normalize_email(email: str) -> str:
    try:
        # Deliverability means a DNS lookup; we only check the shape here.
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValidationFailed(str(error), field="email") from None


def check_password_rules(password: str, known: tuple[str, ...] = ()) -> None:
    """Long enough and hard to guess; ``known`` are words about the person (email, name) it must not lean on."""
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValidationFailed(
            f"Password must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.", field="password"
        )
    # zxcvbn refuses more than 72 characters (its cost grows with length); those tell all it can tell.
    # Each word on its own and run together: "Acme Widgets" must also catch "acmewidgets1".
    inputs = []
    for value in filter(None, known):
        words = [word for word in re.split(r"[@.\s_-]+", value.lower()) if word]
        inputs += [*words, "".join(words)]
    result = zxcvbn(password[:72], user_inputs=inputs)
    if result["score"] < PASSWORD_MIN_SCORE:
        feedback = result["feedback"]
        hints = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        raise ValidationFailed(
            "This password is too easy to guess. " + (hints or "Use a passphrase of three or four unrelated words."),
            field="password",
        )


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(select(User).where(User.email == email.lower())).scalar_one_or_none()


def create_user(
    email: str, password: str, name: str = "", is_operator: bool = False, known: tuple[str, ...] = ()
) -> User:
    """``known``: more words the password must not lean on (e.g. the company's name)."""
    email = normalize_email(email)
    check_password_rules(password, (email, name, *known))
    if find_user_by_email(email):
        raise Conflict("An account with this email already exists. Sign in instead.", field="email")
    user = User(email=email, name=name.strip(), password_hash=hash_password(password), is_operator=is_operator)
    db.session.add(user)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user for these credentials, or None; never says which part was wrong."""
    try:
        email = normalize_email(email)
    except ValidationFailed:
        verify_password(None, password)
        return None
    user = find_user_by_email(email)
    if user is None or not verify_password(user.password_hash, password):
        if user is None:
            verify_password(None, password)
        return None
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def start_session(user: User, ip: str | None, user_agent: str | None) -> str:
    """Record a new server-side session and return the token for the cookie.

    A sign-in from a kind of device the person never used before (browser and system, so a
    browser update is not "new") is a security event: they are told, in case it was not them.
    """
    device = user_agents.describe(user_agent)
    earlier = db.session.execute(
        select(UserSession.user_agent).where(UserSession.user_id == user.id).distinct().limit(200)
    ).scalars()
    seen = {user_agents.describe(agent) for agent in earlier}
    if seen and device not in seen:
        security_events.record(Actor(user=user, ip=ip), user, "user.sign_in_new_device", device=device)
    token = new_token()
    db.session.add(
        UserSession(token_hash=hash_token(token), user_id=user.id, ip=ip, user_agent=(user_agent or "")[:255])
    )
    user.last_sign_in_at = utcnow()
    user.session_token = token
    return token


def load_session_user(token: str) -> User | None:
    row = db.session.execute(
        select(UserSession)
        .options(joinedload(UserSession.user))  # the session and its person in one statement
        .where(UserSession.token_hash == hash_token(token), UserSession.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return None
    user = row.user
    _stamp_last_seen(row)
    user.session_token = token
    return user


def _stamp_last_seen(row: UserSession) -> None:
    """``last_seen_at`` at most once per SESSION_SEEN_RESOLUTION, committed at once, as an API
    key's ``last_used_at`` is (docs/architecture.md): a page that only reads never commits.
    Flask-Login loads the user before the view does anything, so nothing else is pending."""
    now = utcnow()
    if now - row.last_seen_at >= SESSION_SEEN_RESOLUTION:
        db.session.execute(update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now))
        db.session.commit()


def end_session(token: str | None) -> None:
    if token:
        db.session.execute(
            update(UserSession)
            .where(UserSession.token_hash == hash_token(token), UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def end_all_sessions(user: User, only_if_no_other_tenant: bool = False) -> None:
    """Sign the user out everywhere (removal from a tenant, password reset, deletion)."""
    if only_if_no_other_tenant:
        others = [m for m in user.memberships if m.tenant.status != "cancelled"]
        if others:
            return
    db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _reset_link(user: User) -> tuple[str, int]:
    """A new single-use reset link for ``user`` (only its hash is kept) and its life in minutes."""
    token = new_token()
    minutes = current_app.config["PASSWORD_RESET_MINUTES"]
    db.session.add(
        PasswordReset(token_hash=hash_token(token), user_id=user.id, expires_at=utcnow() + timedelta(minutes=minutes))
    )
    return public_url("auth.reset_password", token=token), minutes


def _account_for(typed_email: str) -> User | None:
    """The account of an email as someone typed it; None for a malformed or unknown one."""
    try:
        return find_user_by_email(normalize_email(typed_email))
    except ValidationFailed:
        return None


def request_password_reset(email: str) -> None:
    """Email a reset link if the account exists; the caller says the same thing either way."""
    if (user := _account_for(email)) is None:
        return
    url, minutes = _reset_link(user)
    send_email(user.email, "Reset your password", "password_reset", url=url, user=user, minutes=minutes, secrets=[url])


class SignInHeld(ServiceError, status=429, code="RATE_LIMIT_EXCEEDED"):
    def __init__(self, until: datetime):
        minutes = max(int((until - utcnow()).total_seconds() + 59) // 60, 1)
        super().__init__(
            "Too many failed sign-ins for this account. Try again in "
            f"{minutes} minute{'' if minutes == 1 else 's'}, or use “Forgot your password?” to set a new one now."
        )
        self.until = until


def sign_in_with_password(email: str, password: str, ip: str | None) -> User | None:
    """``authenticate``, held per account after too many failures (``SignInHeld``); None when wrong.

    The caller commits either way: a failure must count even though nobody signs in.
    """
    key = throttle.key_for(email)
    if (until := throttle.held_until(key)) is not None:
        verify_password(None, password)  # a held account answers as slowly as any other
        raise SignInHeld(until)
    user = authenticate(email, password)
    if user is not None:
        throttle.clear(key)
        return user
    if (until := throttle.record_failure(key)) is not None:
        _tell_account_holder(email, until, ip)
        raise SignInHeld(until)
    return None


def _tell_account_holder(email: str, until: datetime, ip: str | None) -> None:
    if (user := _account_for(email)) is None:
        return
    url, minutes = _reset_link(user)
    send_email(
        user.email,
        "Security: sign-in to your account was paused",
        "sign_in_held",
        user=user,
        url=url,
        minutes=minutes,
        until=until,
        secrets=[url],
    )
    audit.record(Actor(user=None, ip=ip), "user.sign_in_held", None, "user", user.id, until=until.isoformat())


def find_password_reset(token: str) -> PasswordReset | None:
    reset = db.session.execute(
        select(PasswordReset).where(PasswordReset.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if reset is None or reset.used_at is not None or reset.expires_at <= utcnow():
        return None
    return reset


def reset_password(token: str, password: str, ip: str | None) -> User:
    reset = find_password_reset(token)
    if reset is None:
        raise ValidationFailed("This reset link is invalid, expired or already used. Ask for a new one.")
    user = reset.user
    check_password_rules(password, (user.email, user.name))
    user.password_hash = hash_password(password)
    # Every outstanding link is spent, not just this one: an older email must not reset it again.
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )
    end_all_sessions(user)
    throttle.clear(throttle.key_for(user.email))
    audit.record(Actor(user=user, ip=ip), "user.password_reset", None, "user", user.id)
    return user


def confirm_password(user: User, password: str) -> None:
    if not verify_password(user.password_hash, password):
        raise ValidationFailed("That password is not correct.", field="password")


def set_timezone(actor: Actor, user: User, name: str | None) -> User:
    """The timezone ``user`` reads times in; None (or "") follows their browser."""
    name = (name or "").strip() or None
    if name is not None and timezones.zone(name) is None:
        raise ValidationFailed(f"{name[:64]!r} is not a timezone; pick one from the list.", field="timezone")
    user.timezone = name
    audit.record(actor, "user.timezone_changed", None, "user", user.id, timezone=name or "browser")
    return user


def _spend_reset_links(user: User) -> None:
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )


def _on_field(field: str, check, *args):
    """``check(*args)``, with its complaint shown beside ``field`` (the caller's name for the input)."""
    try:
        return check(*args)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field=field) from None


# --- the person's own account page ------------------------------------------------------


def change_password(actor: Actor, user: User, current_password: str, new_password: str) -> None:
    """A new password, once the current one is confirmed. Every other session ends, links sent
    before (password reset, email change) are spent, and this browser's session gets a new
    token, so a copy of its cookie dies too: the caller puts ``user.get_id()`` in the cookie."""
    _on_field("current_password", confirm_password, user, current_password)
    _on_field("new_password", check_password_rules, new_password, (user.email, user.name))
    user.password_hash = hash_password(new_password)
    _spend_reset_links(user)
    # An email change asked for from a session that is now ended must not go through either.
    _spend_email_changes(user)
    _end_sessions_except(user, user.session_token)
    _renew_session_token(user)
    security_events.record(actor, user, "user.password_changed")


def _renew_session_token(user: User) -> None:
    """The same session (sign-in time, device) under a new token; the old cookie stops working."""
    if not user.session_token:
        return
    token = new_token()
    db.session.execute(
        update(UserSession)
        .where(UserSession.token_hash == hash_token(user.session_token), UserSession.revoked_at.is_(None))
        .values(token_hash=hash_token(token))
    )
    user.session_token = token


def _spend_email_changes(user: User) -> None:
    db.session.execute(
        update(EmailChange)
        .where(EmailChange.user_id == user.id, EmailChange.used_at.is_(None))
        .values(used_at=utcnow())
    )


def request_email_change(actor: Actor, user: User, new_email: str, password: str) -> EmailChange:
    """Email a confirmation link to ``new_email`` and tell the current address; nothing changes
    until the link is followed. Only the newest request stands (a mistyped one dies with it)."""
    new_email = _on_field("new_email", normalize_email, new_email)
    # The password before the address: without it, the form must not tell which addresses have accounts.
    confirm_password(user, password)
    if new_email == user.email:
        raise ValidationFailed("That is already your sign-in email.", field="new_email")
    if find_user_by_email(new_email) is not None:
        raise Conflict("This address is already used by another account.", field="new_email")
    _spend_email_changes(user)
    token = new_token()
    change = EmailChange(
        token_hash=hash_token(token), user_id=user.id, new_email=new_email, expires_at=utcnow() + EMAIL_CHANGE_VALID_FOR
    )
    db.session.add(change)
    db.session.flush()
    url = public_url("auth.confirm_email_change", token=token)
    hours = int(EMAIL_CHANGE_VALID_FOR.total_seconds() // 3600)
    send_email(
        new_email,
        "Confirm your new sign-in email",
        "email_change",
        url=url,
        new_email=new_email,
        hours=hours,
        secrets=[url],
    )
    security_events.record(actor, user, "user.email_change_requested", new_email=new_email)
    return change


def pending_email_change(user: User) -> EmailChange | None:
    """The request still waiting for its link to be followed, if any."""
    return db.session.execute(
        select(EmailChange)
        .where(EmailChange.user_id == user.id, EmailChange.used_at.is_(None), EmailChange.expires_at > utcnow())
        .order_by(EmailChange.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def find_email_change(token: str) -> EmailChange | None:
    change = db.session.execute(
        select(EmailChange).where(EmailChange.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if change is None or change.used_at is not None or change.expires_at <= utcnow():
        return None
    return change


def confirm_email_change(token: str, ip: str | None) -> User:
    """Make the requested address the sign-in email. The link proves the new address is the
    person's, so no sign-in is needed; the old address is told, and every other outstanding
    link (email change, password reset to the old address) is spent."""
    change = find_email_change(token)
    if change is None:
        raise ValidationFailed("This confirmation link is invalid, expired or already used.")
    user = change.user
    if find_user_by_email(change.new_email) is not None:
        # Taken since the request; the link stays unused, and a commit that races another
        # account to the address fails on the unique email instead (portal.infra.transactions).
        raise Conflict("Another account now uses this address, so your sign-in email was not changed.")
    old_email = user.email
    user.email = change.new_email
    _spend_email_changes(user)
    _spend_reset_links(user)
    security_events.record(
        Actor(user=user, ip=ip), user, "user.email_changed", to=old_email, old_email=old_email, new_email=user.email
    )
    return user


@dataclass(frozen=True)
class ActiveSession:
    """One signed-in browser as the account page lists it."""

    id: str
    device: str
    ip: str | None
    signed_in_at: datetime
    last_seen_at: datetime
    current: bool


def active_sessions(user: User) -> list[ActiveSession]:
    """The person's live sessions: this browser's first, then the most recently seen."""
    current = hash_token(user.session_token) if user.session_token else None
    rows = db.session.execute(
        select(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .order_by(UserSession.last_seen_at.desc(), UserSession.created_at.desc())
    ).scalars()
    sessions = [
        ActiveSession(
            id=row.id,
            device=user_agents.describe(row.user_agent),
            ip=row.ip,
            signed_in_at=row.created_at,
            last_seen_at=row.last_seen_at,
            current=row.token_hash == current,
        )
        for row in rows
    ]
    return sorted(sessions, key=lambda session: not session.current)


def own_session(user: User, session_id: str) -> UserSession:
    """One of ``user``'s sessions by id; anyone else's is not found, like one that never existed."""
    row = None
    if could_be_an_id(session_id):
        row = db.session.execute(
            select(UserSession).where(UserSession.id == session_id, UserSession.user_id == user.id)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound("Session not found")
    return row


def end_other_session(actor: Actor, user: User, row: UserSession) -> str:
    """Sign out one other browser of the person's; returns what it was ("Firefox on Windows")."""
    device = user_agents.describe(row.user_agent)
    if user.session_token and row.token_hash == hash_token(user.session_token):
        raise ValidationFailed("That is this browser: use Sign out at the top of the page.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        # One session the person picked from the list: the activity log is enough, no email.
        security_events.record(actor, user, "user.sessions_ended", email=False, sessions=1, device=device)
    return device


def end_other_sessions(actor: Actor, user: User) -> int:
    """Sign out every browser of the person's but this one; returns how many were signed out."""
    ended = _end_sessions_except(user, user.session_token)
    if ended:
        security_events.record(actor, user, "user.sessions_ended", sessions=ended)
    return ended


def _end_sessions_except(user: User, token: str | None) -> int:
    keep = hash_token(token) if token else ""
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None), UserSession.token_hash != keep)
        .values(revoked_at=utcnow())
    )
    return result.rowcount
