from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, id_column, utcnow

# Highest first. Owner: everything; admin: team, keys, credentials, billing;
# developer: keys and credentials, usage read; viewer: read-only (DESIGN §3).
ROLES = ("owner", "admin", "developer", "viewer")
INVITABLE_ROLES = ("admin", "developer", "viewer")


class User(db.Model):
    """A person; may belong to several tenants through memberships."""

    __tablename__ = "users"

    id: Mapped[str] = id_column("usr")
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # IANA name chosen on the account page; None follows the browser (portal/timezones.py).
    timezone: Mapped[str | None] = mapped_column(String(64))

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user")

    # Flask-Login protocol. The id it keeps in the cookie is the server-side session
    # token (set in auth.services), so revoking that row signs the browser out.
    is_authenticated = True
    is_active = True
    is_anonymous = False
    session_token = None

    def get_id(self) -> str | None:
        return self.session_token

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<User {self.email}>"


class Membership(db.Model):
    """A user's role in one tenant."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id", name="uq_memberships_tenant_user"),
        # Exactly one owner per tenant is a database fact, not just a service rule.
        Index(
            "uq_memberships_one_owner",
            "tenant_id",
            unique=True,
            sqlite_where=text("role = 'owner'"),
            postgresql_where=text("role = 'owner'"),
        ),
    )

    id: Mapped[str] = id_column("mem")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped["Tenant"] = relationship(back_populates="memberships")  # noqa: F821
    user: Mapped[User] = relationship(back_populates="memberships")

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


class UserSession(db.Model):
    """A signed-in browser. The cookie holds the token; we keep only its hash."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = id_column("ses")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()


class _EmailedLink:
    """A single-use, expiring link emailed to a user; only the token's hash is kept."""

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @declared_attr
    def user(cls) -> Mapped[User]:
        return relationship(User)


class PasswordReset(_EmailedLink, db.Model):
    """A password reset link."""

    __tablename__ = "password_resets"

    id: Mapped[str] = id_column("pwr")


class EmailChange(_EmailedLink, db.Model):
    """A requested change of a user's sign-in email, made only once the link sent to the new
    address is followed."""

    __tablename__ = "email_changes"

    id: Mapped[str] = id_column("emc")
    new_email: Mapped[str] = mapped_column(String(254))
