"""Two-factor authentication: the authenticator app (TOTP), passkeys (WebAuthn), recovery codes.

Rules kept here, for every front door:
- A TOTP code is good for the current 30-second step and one on either side, once: the step it
  matched is recorded and a code for that step (or an earlier one) is refused.
- Recovery codes are single use; a used one fails the second time.
- Wrong codes (app or recovery) count per account: MAX_WRONG_CODES in a row hold every code for
  HOLD_MINUTES. The count lives in the database, so it holds across browsers and processes.
- The TOTP secret is sealed with portal.credentials.crypto under CREDENTIALS_KEYS, bound to
  ("totp", user id); a dump of the database holds nothing that produces a code.

Services change state, flush and record security events; the route commits. A wrong code raises
WrongCode *after* counting it: the route commits that count instead of rolling it back.
"""

import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import delete, func, select, update
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from portal.access import Actor
from portal.auth import security_events
from portal.auth.services import confirm_password
from portal.credentials import crypto
from portal.errors import Conflict, NotFound, PermissionDenied, ServiceError, ValidationFailed
from portal.extensions import db
from portal.models import Passkey, RecoveryCode, User, UserTwoFactor, has_second_factor, utcnow

TOTP_CONTEXT = "totp"  # the associated data's first half; the user id is the second
TOTP_WINDOW = 1  # steps accepted either side of now (clock drift between phone and server)
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_GROUPS = 3  # xxxx-xxxx-xxxx: 12 characters of a 32-letter alphabet, 60 bits
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/1, o/0 to misread
MAX_WRONG_CODES = 5
HOLD_MINUTES = 15
PASSKEY_NAME_MAX = 100


class CodeRefused(ServiceError):
    """A code was refused and the attempt counted (or the account is on hold): the route commits
    that count instead of rolling it back; nothing else has changed when this is raised."""


class WrongCode(CodeRefused, status=400, code="VALIDATION_ERROR"): ...


class CodesHeld(CodeRefused, status=429, code="TOO_MANY_CODES"):
    """Too many wrong codes: codes for this account are refused until the hold ends."""


@dataclass(frozen=True)
class Status:
    """What the account page shows about a person's second factors."""

    totp_enabled: bool
    totp_pending: bool
    passkeys: list[Passkey]
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        return self.totp_enabled or bool(self.passkeys)


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys belong to (WebAuthn's RP ID) and the one origin they are used from."""

    id: str
    name: str
    origin: str


# --- state ----------------------------------------------------------------------------------


def _state(user: User) -> UserTwoFactor | None:
    return db.session.get(UserTwoFactor, user.id)


def _state_or_new(user: User) -> UserTwoFactor:
    state = _state(user)
    if state is None:
        state = UserTwoFactor(user_id=user.id, failed_codes=0)
        db.session.add(state)
        db.session.flush()
    return state


def status(user: User) -> Status:
    state = _state(user)
    return Status(
        totp_enabled=bool(state and state.totp_enabled),
        totp_pending=bool(state and state.totp_secret is not None and not state.totp_enabled),
        passkeys=list_passkeys(user),
        recovery_codes_left=recovery_codes_left(user),
    )


# --- wrong-code throttle ----------------------------------------------------------------------


def _check_not_held(state: UserTwoFactor | None) -> None:
    if state is not None and state.held_until is not None and state.held_until > utcnow():
        minutes = max(1, -(-int((state.held_until - utcnow()).total_seconds()) // 60))
        raise CodesHeld(
            f"Too many wrong codes. For your safety, codes for this account are paused: "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )


def _count_wrong_code(user: User, message: str) -> WrongCode | CodesHeld:
    """Count one wrong code (one UPDATE, so parallel attempts all count) and say what happens next."""
    state = _state_or_new(user)
    db.session.execute(
        update(UserTwoFactor)
        .where(UserTwoFactor.user_id == user.id)
        .values(failed_codes=UserTwoFactor.failed_codes + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(state)
    if state.failed_codes >= MAX_WRONG_CODES:
        state.failed_codes = 0
        state.held_until = utcnow() + timedelta(minutes=HOLD_MINUTES)
        db.session.flush()
        return CodesHeld(
            f"Too many wrong codes. For your safety, codes for this account are paused for {HOLD_MINUTES} minutes."
        )
    left = MAX_WRONG_CODES - state.failed_codes
    if left <= 2:
        message += f" {left} more wrong code{'s' if left != 1 else ''} and codes are paused for {HOLD_MINUTES} minutes."
    return WrongCode(message, field="code")


def _clear_wrong_codes(state: UserTwoFactor) -> None:
    state.failed_codes = 0
    state.held_until = None


# --- TOTP -----------------------------------------------------------------------------------


def _seal(user_id: str, secret: str) -> tuple[bytes, str]:
    return crypto.encrypt(crypto.current_keyring(), secret.encode(), TOTP_CONTEXT, user_id)


def _open(state: UserTwoFactor) -> str:
    keyring = crypto.current_keyring()
    try:
        secret = crypto.decrypt(keyring, state.totp_secret, state.totp_key_id, TOTP_CONTEXT, state.user_id).decode()
    except crypto.CredentialDecryptError:
        raise ServiceError(
            "Your authenticator app cannot be checked right now (a server key is missing). "
            "Use a passkey or a recovery code, or contact support."
        ) from None
    if state.totp_key_id != keyring.primary_id:
        # Re-sealed under the current key as it is used, so the old key can go (see rotate_totp_secrets).
        state.totp_secret, state.totp_key_id = _seal(state.user_id, secret)
        db.session.flush()
    return secret


def start_totp(user: User) -> str:
    """A new secret waiting for its first code (any earlier unconfirmed one is replaced)."""
    state = _state_or_new(user)
    if state.totp_enabled:
        raise Conflict("The authenticator app is already on. Turn it off first to set up another one.")
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    state.totp_secret, state.totp_key_id = _seal(user.id, secret)
    state.totp_last_step = None
    db.session.flush()
    return secret


def pending_totp_secret(user: User) -> str | None:
    """The secret being set up (to show again after a wrong code), or None."""
    state = _state(user)
    if state is None or state.totp_secret is None or state.totp_enabled:
        return None
    return _open(state)


def provisioning_uri(user: User, secret: str, issuer: str) -> str:
    """The otpauth:// link the QR code carries."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def format_secret(secret: str) -> str:
    """The secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _normalize_code(code: str | None) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    matched = None
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        # Every candidate is compared, in constant time: no early exit tells which step matched.
        if hmac.compare_digest(totp.generate_otp(step), code):
            matched = step
    return matched


def _claim_step(user: User, step: int) -> bool:
    """Record ``step`` as used; False when it (or a later one) was already used: a replay.

    One conditional UPDATE, so two requests racing with the same code cannot both win.
    """
    result = db.session.execute(
        update(UserTwoFactor)
        .where(
            UserTwoFactor.user_id == user.id,
            (UserTwoFactor.totp_last_step.is_(None)) | (UserTwoFactor.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _check_totp(user: User, state: UserTwoFactor, code: str) -> bool:
    if not (len(code) == 6 and code.isdigit()) or state.totp_secret is None:
        return False
    step = _matching_step(_open(state), code, utcnow())
    return step is not None and _claim_step(user, step)


def confirm_totp(actor: Actor, user: User, code: str) -> list[str] | None:
    """Switch the app on with its first correct code; new recovery codes if the person had none."""
    state = _state(user)
    if state is None or state.totp_secret is None:
        raise ValidationFailed("Start the set-up again: no authenticator app is waiting to be confirmed.")
    if state.totp_enabled:
        raise Conflict("The authenticator app is already on.")
    _check_not_held(state)
    if not _check_totp(user, state, _normalize_code(code)):
        raise _count_wrong_code(
            user, "That code is not correct. Enter the 6 digits your app shows now (it changes every 30 seconds)."
        )
    db.session.refresh(state)
    _clear_wrong_codes(state)
    state.totp_enabled_at = utcnow()
    codes = None if recovery_codes_left(user) else _new_recovery_codes(user)
    security_events.record(actor, user, "user.totp_enabled")
    db.session.flush()
    return codes


def verify_code(actor: Actor, user: User, code: str, allow_recovery: bool = True, used_for: str = "sign-in") -> str:
    """Check a second-factor code; returns "totp" or "recovery". Counts wrong codes (WrongCode, CodesHeld)."""
    state = _state(user)
    _check_not_held(state)
    normalized = _normalize_code(code)
    if state is not None and state.totp_enabled and _check_totp(user, state, normalized):
        db.session.refresh(state)
        _clear_wrong_codes(state)
        return "totp"
    if allow_recovery and _use_recovery_code(user, normalized):
        if state is not None:
            _clear_wrong_codes(state)
        left = recovery_codes_left(user)
        security_events.record(actor, user, "user.recovery_code_used", used_for=used_for, codes_left=left)
        return "recovery"
    if state is not None and state.totp_enabled and len(normalized) == 6 and normalized.isdigit():
        message = "That code is not correct, or it was already used. Wait for the next code in your app."
    elif allow_recovery and len(normalized) == 4 * RECOVERY_CODE_GROUPS:
        message = "That recovery code is not correct, or it was already used."
    elif allow_recovery:
        message = "That code is not correct. Enter the 6 digits from your app, or one of your recovery codes."
    else:
        message = "That code is not correct. Enter the 6 digits your app shows now."
    raise _count_wrong_code(user, message)


def disable_totp(actor: Actor, user: User, password: str, code: str) -> None:
    """Turn the app off after the password and a current code (or a recovery code)."""
    state = _state(user)
    if state is None or not state.totp_enabled:
        raise Conflict("The authenticator app is not on.")
    confirm_password(user, password)
    verify_code(actor, user, code, used_for="turning the authenticator app off")
    state.totp_secret = state.totp_key_id = state.totp_enabled_at = state.totp_last_step = None
    db.session.flush()
    _drop_recovery_codes_if_no_factor_left(user)
    security_events.record(actor, user, "user.totp_disabled")


def rotate_totp_secrets(keyring: crypto.Keyring) -> tuple[int, list[str]]:
    """Re-seal every TOTP secret under the primary key; (re-sealed, user ids that failed to open)."""
    resealed, failed = 0, []
    rows = (
        db.session.execute(
            select(UserTwoFactor).where(
                UserTwoFactor.totp_secret.is_not(None), UserTwoFactor.totp_key_id != keyring.primary_id
            )
        )
        .scalars()
        .all()
    )
    for state in rows:
        try:
            secret = crypto.decrypt(keyring, state.totp_secret, state.totp_key_id, TOTP_CONTEXT, state.user_id)
        except crypto.CredentialDecryptError:
            failed.append(state.user_id)
            continue
        state.totp_secret, state.totp_key_id = crypto.encrypt(keyring, secret, TOTP_CONTEXT, state.user_id)
        resealed += 1
    db.session.flush()
    return resealed, failed


# --- recovery codes -------------------------------------------------------------------------


def _hash_recovery_code(user: User, normalized: str) -> str:
    # Salted with the user id: one table of hashes cannot be cracked for everyone at once.
    return hashlib.sha256(f"{user.id}:{normalized}".encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(4 * RECOVERY_CODE_GROUPS))
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(
        RecoveryCode(user_id=user.id, code_hash=_hash_recovery_code(user, _normalize_code(code))) for code in codes
    )
    db.session.flush()
    return codes


def _use_recovery_code(user: User, normalized: str) -> bool:
    if len(normalized) != 4 * RECOVERY_CODE_GROUPS:
        return False
    # One conditional UPDATE: the same code used twice at once succeeds once.
    result = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_recovery_code(user, normalized),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def regenerate_recovery_codes(actor: Actor, user: User, password: str, code: str) -> list[str]:
    """Replace every recovery code after the password and a current code; the old ones stop working."""
    if not has_second_factor(user.id):
        raise Conflict("Turn on two-factor authentication first: recovery codes come with it.")
    confirm_password(user, password)
    verify_code(actor, user, code, used_for="making new recovery codes")
    codes = _new_recovery_codes(user)
    security_events.record(actor, user, "user.recovery_codes_regenerated")
    return codes


def _drop_recovery_codes_if_no_factor_left(user: User) -> None:
    if not has_second_factor(user.id):
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


# --- passkeys -------------------------------------------------------------------------------


def relying_party(public_base_url: str, request_root: str, name: str) -> RelyingParty | None:
    """The RP from PUBLIC_BASE_URL; None where a browser would refuse passkeys.

    A real host name is the RP ID and PUBLIC_BASE_URL's origin the only origin accepted. On a
    development machine PUBLIC_BASE_URL is a loopback address (http://127.0.0.1:5000), and an
    IP address can never be an RP ID: browsers refuse it. There, and only there, a request that
    came to http://localhost:<port> uses "localhost" and that origin (browsers count
    http://localhost as a secure context). Opened at 127.0.0.1, passkeys are not offered.
    """
    base = urlsplit(public_base_url)
    host = (base.hostname or "").lower()
    if host and host != "localhost" and not _is_ip(host):
        return RelyingParty(id=host, name=name, origin=f"{base.scheme}://{base.netloc}")
    if host == "localhost" or (host and ipaddress.ip_address(host).is_loopback):
        here = urlsplit(request_root)
        if (here.hostname or "").lower() == "localhost":
            return RelyingParty(id="localhost", name=name, origin=f"{here.scheme}://{here.netloc}")
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def list_passkeys(user: User) -> list[Passkey]:
    return list(
        db.session.execute(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at))
        .scalars()
        .all()
    )


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in passkey.transports or []:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # a transport this library does not know: the browser finds the key anyway
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id), transports=transports or None)


def registration_options(user: User, rp: RelyingParty) -> tuple[str, bytes]:
    """(options for navigator.credentials.create() as JSON, the challenge to keep server-side)."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user.id.encode(),  # a random id, not the email: the authenticator may show it
        user_name=user.email,
        user_display_name=user.display_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            # Discoverable, so it can sign in without an email typed first.
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(p) for p in list_passkeys(user)],
    )
    return options_to_json(options), options.challenge


def authentication_options(rp: RelyingParty, user: User | None = None) -> tuple[str, bytes]:
    """Options for navigator.credentials.get(): the person's passkeys as a second factor, or any
    discoverable passkey of this site (``user`` None) to sign in with it alone."""
    options = generate_authentication_options(
        rp_id=rp.id,
        allow_credentials=[_descriptor(p) for p in list_passkeys(user)] if user is not None else [],
        user_verification=UserVerificationRequirement.PREFERRED
        if user is not None
        else UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options), options.challenge


def _credential_id(credential: str) -> str:
    try:
        data = json.loads(credential)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ValidationFailed("The passkey's answer could not be read. Try again.")
    return data["id"]


def _clean_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationFailed("Give the passkey a name, such as “Work laptop”.", field="name")
    if len(name) > PASSKEY_NAME_MAX:
        raise ValidationFailed(f"Use at most {PASSKEY_NAME_MAX} characters.", field="name")
    return name


def add_passkey(
    actor: Actor, user: User, rp: RelyingParty, challenge: bytes, credential: str, name: str
) -> tuple[Passkey, list[str] | None]:
    """Store a verified new passkey; new recovery codes if it is the person's first second factor."""
    name = _clean_name(name)
    _credential_id(credential)
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id, expected_origin=rp.origin
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise ValidationFailed("The passkey could not be verified. Try again from this page.") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)) is not None:
        raise Conflict("This passkey is already registered.")
    first_factor = not has_second_factor(user.id)
    transports = json.loads(credential).get("response", {}).get("transports") or []
    passkey = Passkey(
        user_id=user.id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name,
        transports=[t for t in transports if isinstance(t, str)][:10],
    )
    db.session.add(passkey)
    db.session.flush()
    codes = _new_recovery_codes(user) if first_factor and not recovery_codes_left(user) else None
    security_events.record(actor, user, "user.passkey_added", passkey=name)
    return passkey, codes


def verify_passkey(rp: RelyingParty, challenge: bytes, credential: str, user: User | None = None) -> User:
    """The person a passkey assertion proves; ``user`` set: it must be one of theirs (second step)."""
    passkey = db.session.scalar(select(Passkey).where(Passkey.credential_id == _credential_id(credential)))
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise ValidationFailed("This passkey is not registered here. Sign in with your password instead.")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            # Alone, the passkey is both factors: the authenticator must have checked who holds it.
            require_user_verification=user is None,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise ValidationFailed("The passkey could not be verified. Try again.") from None
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = utcnow()
    db.session.flush()
    return db.session.get(User, passkey.user_id)


def remove_passkey(actor: Actor, user: User, passkey_id: str, password: str) -> Passkey:
    """Remove one of the person's passkeys after their password."""
    passkey = db.session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != user.id:
        raise NotFound("That passkey does not exist.")
    confirm_password(user, password)
    db.session.delete(passkey)
    db.session.flush()
    _drop_recovery_codes_if_no_factor_left(user)
    security_events.record(actor, user, "user.passkey_removed", passkey=passkey.name)
    return passkey


# --- support ----------------------------------------------------------------------------------


def reset_by_operator(actor: Actor, user: User, reason: str) -> None:
    """Switch off every second factor of ``user`` (lost device, support case): audited and emailed."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationFailed("Say why (the person is told).", field="reason")
    if len(reason) > 500:
        raise ValidationFailed("Use at most 500 characters.", field="reason")
    if actor.user is not None and actor.user.id == user.id:
        raise PermissionDenied("Operators cannot reset their own two-factor authentication here.")
    db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.execute(delete(UserTwoFactor).where(UserTwoFactor.user_id == user.id))
    db.session.flush()
    security_events.record(actor, user, "user.two_factor_reset_by_operator", reason=reason, operator=actor.name)
