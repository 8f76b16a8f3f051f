"""The JSON API (``/api/v1``, DESIGN §5): same services as the portal, seed 000's contract."""

from flask import current_app, g, request
from flask.sessions import SecureCookieSessionInterface

from portal.api.principal import current_principal
from portal.api.registry import bp
from portal.extensions import csrf, limiter

# Seed 000's limits per key, by the tenant's plan; operators get the largest.
PLAN_RATE_LIMITS = {
    "starter": "100 per minute;5000 per hour",
    "professional": "300 per minute;20000 per hour",
    "enterprise": "1000 per minute;100000 per hour",
}
ANONYMOUS_RATE_LIMIT = "60 per minute"


def _rate_limit() -> str:
    principal = current_principal()
    if principal is None:
        return current_app.config.get("API_ANONYMOUS_RATE_LIMIT", ANONYMOUS_RATE_LIMIT)
    if principal.is_operator:
        return PLAN_RATE_LIMITS["enterprise"]
    return PLAN_RATE_LIMITS.get(principal.api_key.tenant.subscription_plan, PLAN_RATE_LIMITS["starter"])


def _rate_limit_key() -> str:
    principal = current_principal()
    return principal.rate_limit_identity if principal else f"ip:{request.remote_addr}"


def _count_api_request(response):
    """Seed 000's api_requests_count: one unit per request authenticated by a tenant key."""
    principal = g.get("api_principal")
    if principal is not None and principal.api_key is not None:
        from portal.usage.api_requests import record

        record(principal.api_key.tenant_id)
    return response


bp.after_request(_count_api_request)


class ApiWithoutCookieSession(SecureCookieSessionInterface):
    """The API authenticates with keys, never with the browser session: an /api/ request gets
    an empty session, whatever cookie it carries, and its response sets no cookie."""

    def open_session(self, app, request):
        if request.path.startswith(bp.url_prefix + "/"):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        if request.path.startswith(bp.url_prefix + "/"):
            return
        super().save_session(app, session, response)


def init_api(app) -> None:
    from portal.api import billing, credentials, invitations, keys, members, openapi, tenants, usage  # noqa: F401  (register operations)

    csrf.exempt(bp)
    app.session_interface = ApiWithoutCookieSession()
    limiter.limit(_rate_limit, key_func=_rate_limit_key)(bp)
    app.register_blueprint(bp)
