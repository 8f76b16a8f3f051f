"""A person's second factors: the authenticator app (TOTP), passkeys (WebAuthn) and recovery codes.

Nothing here is usable from a database dump: the TOTP secret is sealed (AES-GCM under
CREDENTIALS_KEYS, portal/credentials/crypto.py), recovery codes are kept as SHA-256 hashes,
and a passkey's public key signs nothing.
"""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint, exists, select
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow


class UserTwoFactor(db.Model):
    """One row per person who started two-factor set-up: the TOTP secret and the wrong-code count."""

    __tablename__ = "user_two_factor"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    # 12-byte nonce + AES-GCM ciphertext of the base32 secret, bound to ("totp", user id).
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_key_id: Mapped[str | None] = mapped_column(String(16))
    # None while set-up waits for the first correct code.
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last 30-second step a code was accepted for: a code is good once (no replay).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Wrong codes in a row (app or recovery); at the limit codes are refused until held_until.
    failed_codes: Mapped[int] = mapped_column(Integer, default=0)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def totp_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    def __repr__(self) -> str:
        return f"<UserTwoFactor {self.user_id} totp={'on' if self.totp_enabled else 'off'}>"


class Passkey(db.Model):
    """A WebAuthn credential a person registered; usable as a second factor and to sign in alone."""

    __tablename__ = "passkeys"

    id: Mapped[str] = id_column("pk")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    # base64url of the authenticator's credential id (at most 1,023 bytes by the spec).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE key: public, not a secret
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(100))
    transports: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Passkey {self.id} user={self.user_id}>"


class RecoveryCode(db.Model):
    """A one-time code for when the phone or security key is lost; only its hash is kept."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),)

    id: Mapped[str] = id_column("rc")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def has_second_factor(user_id: str) -> bool:
    """Whether the person has a working second factor: the authenticator app on, or a passkey.

    The one definition, read by sign-in and by the policies that require two-factor
    authentication (portal.access): recovery codes alone are a fallback, not a factor.
    """
    totp_on = exists().where(UserTwoFactor.user_id == user_id, UserTwoFactor.totp_enabled_at.is_not(None))
    passkey = exists().where(Passkey.user_id == user_id)
    return bool(db.session.scalar(select(totp_on | passkey)))
