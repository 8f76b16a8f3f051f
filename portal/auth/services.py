"""Accounts and sessions: sign-up, sign-in, server-side sessions, password reset."""

from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select, update

from portal import audit, timezones
from portal.access import Actor
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.mail import send_email
from portal.models import PasswordReset, User, UserSession, utcnow
from portal.security import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    hash_password,
    hash_token,
    new_token,
    password_needs_rehash,
    verify_password,
)
from portal.web import public_url

# A session's last_seen_at is written at most this often: a page view must not cost a write.
SESSION_SEEN_RESOLUTION = timedelta(minutes=5)


def normalize_email(email: str) -> str:
    try:
        # Deliverability means a DNS lookup; we only check the shape here.
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValidationFailed(str(error), field="email") from None


def check_password_rules(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValidationFailed(
            f"Password must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.", field="password"
        )


def find_user_by_email(email: str) -> User | None:
    return db.session.execute(select(User).where(User.email == email.lower())).scalar_one_or_none()


def create_user(email: str, password: str, name: str = "", is_operator: bool = False) -> User:
    email = normalize_email(email)
    check_password_rules(password)
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
    """Record a new server-side session and return the token for the cookie."""
    token = new_token()
    db.session.add(
        UserSession(token_hash=hash_token(token), user_id=user.id, ip=ip, user_agent=(user_agent or "")[:255])
    )
    user.last_sign_in_at = utcnow()
    user.session_token = token
    return token


def load_session_user(token: str) -> User | None:
    row = db.session.execute(
        select(UserSession).where(UserSession.token_hash == hash_token(token), UserSession.revoked_at.is_(None))
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


def request_password_reset(email: str) -> None:
    """Email a reset link if the account exists; the caller says the same thing either way."""
    try:
        user = find_user_by_email(normalize_email(email))
    except ValidationFailed:
        return
    if user is None:
        return
    token = new_token()
    minutes = current_app.config["PASSWORD_RESET_MINUTES"]
    db.session.add(
        PasswordReset(token_hash=hash_token(token), user_id=user.id, expires_at=utcnow() + timedelta(minutes=minutes))
    )

    url = public_url("auth.reset_password", token=token)
    send_email(user.email, "Reset your password", "password_reset", url=url, user=user, minutes=minutes, secrets=[url])


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
    check_password_rules(password)
    user = reset.user
    user.password_hash = hash_password(password)
    # Every outstanding link is spent, not just this one: an older email must not reset it again.
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )
    end_all_sessions(user)
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
