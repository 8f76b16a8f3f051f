"""Who is calling the API: a tenant's key, an operator token, or nobody. Resolved once."""

import hmac
from dataclasses import dataclass

from flask import current_app, g, request

from portal.access import Actor
from portal.api_keys import services as keys
from portal.models import ApiKey, OperatorToken

SAFE_METHODS = ("GET", "HEAD")
# Endpoints (``api.<name>``) whose writes may authenticate from the per-process cache like
# reads do: usage ingestion and entitlement evaluation, the operator's highest-volume calls,
# which record or decide nothing a revoked credential could abuse beyond what the cache's
# invalidation already bounds. Filled by ``operation(..., cached_auth=True)``.
CACHED_AUTH_ENDPOINTS: set[str] = set()


@dataclass(frozen=True)
class Principal:
    kind: str  # "tenant_key" | "operator"
    label: str
    api_key: ApiKey | None = None
    operator_token: OperatorToken | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    @property
    def rate_limit_identity(self) -> str:
        if self.api_key is not None:
            return f"key:{self.api_key.id}"
        return f"operator:{self.operator_token.id if self.operator_token else 'bootstrap'}"

    def actor(self) -> Actor:
        return Actor(user=None, ip=request.remote_addr, label=self.label)


def _presented_credentials() -> list[tuple[str, str]]:
    """("header name", value) of each credential the request carries: X-API-Key, Bearer, both or none."""
    presented = []
    # From the environ: request.headers raises and catches a KeyError for the header not sent.
    environ = request.environ
    api_key = environ.get("HTTP_X_API_KEY", "").strip()
    if api_key:
        presented.append(("X-API-Key", api_key))
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        presented.append(("Bearer", value.strip()))
    return presented


_UNRESOLVED = object()


def current_principal() -> Principal | None:
    context = g._get_current_object()  # asked several times a request: one proxy look-up each
    principal = context.get("api_principal", _UNRESOLVED)
    if principal is _UNRESOLVED:
        principal = context.api_principal = _resolve()
    return principal


def credentials_presented() -> int:
    return len(_presented_credentials())


def _may_use_cache() -> bool:
    return request.method in SAFE_METHODS or request.endpoint in CACHED_AUTH_ENDPOINTS


def _resolve() -> Principal | None:
    """The caller, or None when no credential is sent or any credential sent is not valid.

    A request may carry a key in X-API-Key and a token in Authorization at once; it is served
    only if every credential it presents is valid and they name the same caller, so a wrong
    key is never masked by a right token (or the reverse)."""
    principals = [_resolve_one(header, secret) for header, secret in _presented_credentials()]
    if not principals or None in principals:
        return None
    first, *others = principals
    if any(other.rate_limit_identity != first.rate_limit_identity for other in others):
        return None
    return first


def _resolve_one(header: str, secret: str) -> Principal | None:
    if header == "Bearer":
        bootstrap = current_app.config.get("PORTAL_ADMIN_TOKEN") or ""
        if bootstrap and hmac.compare_digest(secret.encode(), bootstrap.encode()):
            return Principal(kind="operator", label="operator:bootstrap token")
        if secret.startswith(keys.OPERATOR_TOKEN_PREFIX):
            # Like keys below: reads may use the per-process cache, writes check the database.
            token = keys.find_operator_token(secret, cached=_may_use_cache())
            if token is None:
                return None
            keys.mark_operator_token_used(token)
            return Principal(
                kind="operator", label=f"operator token {token.name} ({token.prefix}…)", operator_token=token
            )
    # Reads may be answered from the per-process key cache; a write always checks the database,
    # so it never acts on a key revoked, or for a tenant suspended, a moment ago elsewhere,
    # even if that change's invalidation message were lost.
    key = keys.find_key(secret, cached=_may_use_cache())
    if key is None:
        return None
    keys.mark_used(key)
    return Principal(kind="tenant_key", label=f"API key {key.name} ({key.prefix}…)", api_key=key)
