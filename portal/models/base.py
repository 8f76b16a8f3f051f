"""Column types and helpers shared by every model."""

import secrets
from datetime import UTC, datetime

from sqlalchemy import DateTime, String, TypeDecorator
from sqlalchemy.orm import mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A public, unguessable identifier such as ``inv_3kq9...`` (seed 000 style)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def id_column(prefix: str):
    """A table's primary key: a ``new_id`` with the table's prefix, made when the row is."""
    return mapped_column(String(32), primary_key=True, default=lambda: new_id(prefix))


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, always returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)
