"""Tenant API keys and operator API tokens: issue (shown once), look up by hash, revoke."""

import secrets
from datetime import timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import contains_eager

from portal import audit
from portal.access import Actor
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.infra import cache as key_cache
from portal.models import API_SCOPES, ApiKey, OperatorToken, Tenant, utcnow
from portal.security import hash_token

DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 3650
VISIBLE_SECRET_CHARS = 6
# last_used_at is a hint for people, not an access log: refresh it at most once a minute,
# so a busy key does not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
OPERATOR_TOKEN_PREFIX = "opt_"  # noqa: S105 - a prefix, not a secret


def _secret() -> str:
    return secrets.token_urlsafe(32)  # 43 url-safe characters, 256 bits


def check_scopes(scopes: list[str] | None) -> list[str]:
    """The requested scopes in a stable order; None means all of them (seed 000)."""
    if scopes is None:
        return list(API_SCOPES)
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown:
        raise ValidationFailed(
            f"Unknown scope(s): {', '.join(unknown)}. Choose from: {', '.join(API_SCOPES)}.", field="scopes"
        )
    if not scopes:
        raise ValidationFailed("Choose at least one scope.", field="scopes")
    return [scope for scope in API_SCOPES if scope in scopes]


def create_key(
    actor: Actor,
    tenant: Tenant,
    name: str,
    scopes: list[str] | None = None,
    expires_in_days: int | None = DEFAULT_EXPIRY_DAYS,
) -> tuple[ApiKey, str]:
    """Issue a key ``<tenant_id>_api_<secret>``; returns the row and the only copy of the key."""
    name = (name or "").strip() or "API key"
    if len(name) > 100:
        raise ValidationFailed("key_name must be at most 100 characters.", field="key_name")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValidationFailed(
            f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}, or null for a key that never expires.",
            field="expires_in_days",
        )
    plaintext = f"{tenant.tenant_id}_api_{_secret()}"
    key = ApiKey(
        tenant_id=tenant.tenant_id,
        name=name,
        prefix=plaintext[: len(tenant.tenant_id) + len("_api_") + VISIBLE_SECRET_CHARS],
        key_hash=hash_token(plaintext),
        scopes=check_scopes(scopes),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days is not None else None,
        created_by_id=actor.user.id if actor.user else None,
        created_by_label=actor.name,
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        actor,
        "api_key.created",
        tenant,
        "api_key",
        key.id,
        name=name,
        scopes=key.scopes,
        expires_at=key.expires_at.isoformat() if key.expires_at else None,
    )
    return key, plaintext


def keys_query(tenant: Tenant) -> Select:
    return select(ApiKey).where(ApiKey.tenant_id == tenant.tenant_id).order_by(ApiKey.created_at.desc(), ApiKey.id)


def list_keys(tenant: Tenant) -> list[ApiKey]:
    return list(db.session.execute(keys_query(tenant)).scalars())


def revoke_key(actor: Actor, tenant: Tenant, key: ApiKey, reason: str = "") -> ApiKey:
    if key.revoked_at is not None:
        raise Conflict("This API key is already revoked.")
    key.revoked_at = utcnow()
    key.revoked_reason = (reason or "").strip()[:500] or None
    audit.record(actor, "api_key.revoked", tenant, "api_key", key.id, name=key.name, reason=key.revoked_reason)
    return key


def find_key(presented: str, cached: bool = False) -> ApiKey | None:
    """The active key for a presented secret: one indexed query on its hash, tenant joined.

    ``cached`` (safe requests only) lets a warm lookup come from the per-process cache
    without SQL; see ``portal.infra.cache``.
    """
    if not presented or len(presented) > 200:
        return None
    key_hash = hash_token(presented)
    cache = key_cache.active_cache() if cached else None
    if cache is not None:
        key = cache.load(key_hash, key_cache.ttl())
        if key is not None:
            return key if key.is_active else None  # expiry is checked on every hit
        generation = cache.generation  # before the query: a change committed meanwhile wins
    key = db.session.execute(
        select(ApiKey).join(ApiKey.tenant).options(contains_eager(ApiKey.tenant)).where(ApiKey.key_hash == key_hash)
    ).scalar_one_or_none()
    if key is None or not key.is_active:
        return None
    if cache is not None:
        cache.store(key_hash, key, generation)
    return key


def _stamp_last_used(row: ApiKey | OperatorToken, secret_hash: str, note) -> None:
    """``last_used_at`` at most once per LAST_USED_RESOLUTION, in a one-statement transaction
    of its own (docs/architecture.md: it holds whatever the request then does). Not a change
    the key cache must announce: cache hits refresh it themselves through ``note``."""
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        model = type(row)
        db.session.execute(
            update(model)
            .where(model.id == row.id)
            .values(last_used_at=now)
            .execution_options(**{key_cache.NO_INVALIDATION: True})
        )
        db.session.commit()
        cache = key_cache.active_cache()
        if cache is not None:
            note(cache, secret_hash, now)


def mark_used(key: ApiKey) -> None:
    _stamp_last_used(key, key.key_hash, key_cache.ApiKeyCache.note_last_used)


def create_operator_token(actor: Actor, name: str) -> tuple[OperatorToken, str]:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("Give the token a name of 1 to 100 characters.", field="name")
    plaintext = OPERATOR_TOKEN_PREFIX + _secret()
    token = OperatorToken(
        name=name,
        prefix=plaintext[: len(OPERATOR_TOKEN_PREFIX) + VISIBLE_SECRET_CHARS],
        token_hash=hash_token(plaintext),
        created_by_id=actor.user.id if actor.user else None,
    )
    db.session.add(token)
    db.session.flush()
    audit.record(actor, "operator_token.created", None, "operator_token", token.id, name=name)
    return token, plaintext


def list_operator_tokens() -> list[OperatorToken]:
    return list(db.session.execute(select(OperatorToken).order_by(OperatorToken.created_at.desc())).scalars())


def revoke_operator_token(actor: Actor, token: OperatorToken) -> OperatorToken:
    if token.revoked_at is not None:
        raise Conflict("This token is already revoked.")
    token.revoked_at = utcnow()
    audit.record(actor, "operator_token.revoked", None, "operator_token", token.id, name=token.name)
    return token


def find_operator_token(presented: str, cached: bool = False) -> OperatorToken | None:
    """The active token for a presented secret; ``cached`` (safe requests only) as for keys."""
    if not presented or len(presented) > 200:
        return None
    token_hash = hash_token(presented)
    cache = key_cache.active_cache() if cached else None
    if cache is not None:
        token = cache.load_operator_token(token_hash, key_cache.ttl())
        if token is not None:
            return token if token.is_active else None
        generation = cache.generation
    token = db.session.execute(select(OperatorToken).where(OperatorToken.token_hash == token_hash)).scalar_one_or_none()
    if token is None or not token.is_active:
        return None
    if cache is not None:
        cache.store_operator_token(token_hash, token, generation)
    return token


def mark_operator_token_used(token: OperatorToken) -> None:
    _stamp_last_used(token, token.token_hash, key_cache.ApiKeyCache.note_operator_token_used)
