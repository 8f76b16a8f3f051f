"""The JSON API (``/api/v1``, DESIGN §5): same services as the portal, seed 000's contract."""

import time

from flask import current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from portal.api import (  # noqa: F401  (they register their operations on bp)
    billing,
    billing_profiles,
    credentials,
    credits,
    discounts,
    invitations,
    keys,
    members,
    meters,
    openapi,
    tenants,
    usage,
    webhooks,
)
from portal.api.principal import current_principal
from portal.api.registry import bp
from portal.extensions import csrf, db, limiter
from portal.models import PlanVersion, Subscription
from portal.usage.api_requests import record

# A tenant's keys get the rate limits of the plan version it subscribes to (seed 000: 100 a
# minute on Starter); operators get the largest plan's, and a tenant with no subscription the
# smallest. Looked up once a minute per tenant and plan, not on every request.
OPERATOR_RATE_LIMIT = "1000 per minute;100000 per hour"
UNSUBSCRIBED_RATE_LIMIT = "100 per minute;5000 per hour"
ANONYMOUS_RATE_LIMIT = "60 per minute"
PLAN_LIMIT_SECONDS = 60
_plan_limits: dict[tuple[str, str], tuple[float, str]] = {}


def limit_text(rate_limits: dict | None) -> str | None:
    """{"per_minute": 100, "per_hour": 5000} -> "100 per minute;5000 per hour" (Flask-Limiter's)."""
    parts = [
        f"{rate_limits[key]} per {unit}"
        for key, unit in (("per_minute", "minute"), ("per_hour", "hour"))
        if (rate_limits or {}).get(key)
    ]
    return ";".join(parts) or None


def tenant_rate_limit(tenant) -> str:
    # Keyed by the plan too: a plan change rewrites tenant.subscription_plan, so it is seen at once.
    key, now = (tenant.tenant_id, tenant.subscription_plan or ""), time.monotonic()
    cached = _plan_limits.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    rate_limits = db.session.execute(
        select(PlanVersion.rate_limits)
        .join(Subscription, Subscription.plan_version_id == PlanVersion.id)
        .where(Subscription.tenant_id == tenant.tenant_id)
    ).scalar()
    text = limit_text(rate_limits) or UNSUBSCRIBED_RATE_LIMIT
    _plan_limits[key] = (now + PLAN_LIMIT_SECONDS, text)
    return text


def _rate_limit() -> str:
    principal = current_principal()
    if principal is None:
        return current_app.config.get("API_ANONYMOUS_RATE_LIMIT", ANONYMOUS_RATE_LIMIT)
    if principal.is_operator:
        return OPERATOR_RATE_LIMIT
    return tenant_rate_limit(principal.api_key.tenant)


def _rate_limit_key() -> str:
    principal = current_principal()
    return principal.rate_limit_identity if principal else f"ip:{request.remote_addr}"


def _count_api_request(response):
    """Seed 000's api_requests_count: one unit per request authenticated by a tenant key."""
    principal = g.get("api_principal")
    if principal is not None and principal.api_key is not None:
        record(principal.api_key.tenant_id)
    return response


bp.after_request(_count_api_request)


# Paths that never use the browser session: the API authenticates with keys, Stripe's webhook
# signs its body.
SESSIONLESS_PATHS = (bp.url_prefix + "/", "/webhooks/")


class ApiWithoutCookieSession(SecureCookieSessionInterface):
    """The API authenticates with keys, never with the browser session: an /api/ request gets
    an empty session, whatever cookie it carries, and its response sets no cookie; so does
    Stripe's webhook. A request without a session cookie gets an empty session without the
    signing serializer being built (Flask builds one per request)."""

    def open_session(self, app, request):
        if request.path.startswith(SESSIONLESS_PATHS) or not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        if request.path.startswith(SESSIONLESS_PATHS):
            return
        super().save_session(app, session, response)


def init_api(app) -> None:
    csrf.exempt(bp)
    app.session_interface = ApiWithoutCookieSession()
    limiter.limit(_rate_limit, key_func=_rate_limit_key)(bp)
    app.register_blueprint(bp)
