"""Who is asking, for which tenant, and may they: resolved once per request, here only."""

from dataclasses import dataclass
from functools import wraps

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from portal.extensions import db
from portal.models import Membership, Tenant, User, has_second_factor

# What each role may do (DESIGN §3). Routes ask for a permission, not a role name,
# so a later area (keys, credentials, billing) adds a row here instead of new checks.
PERMISSIONS: dict[str, set[str]] = {
    "tenant.read": {"owner", "admin", "developer", "viewer"},
    "team.manage": {"owner", "admin"},
    "settings.edit": {"owner", "admin"},
    "tenant.delete": {"owner"},
    "ownership.transfer": {"owner"},
    "billing.manage": {"owner", "admin"},
    "keys.manage": {"owner", "admin", "developer"},
    "credentials.manage": {"owner", "admin", "developer"},
    "webhooks.manage": {"owner", "admin"},
    "two_factor.require": {"owner"},
}

# Blueprints a suspended tenant's users may still change things in (DESIGN §4).
SUSPENSION_EXEMPT_BLUEPRINTS = {"auth", "billing", "invitations", "main", "payments"}
# ...and the permissions whose buttons a suspended tenant's pages still offer: reading and paying.
SUSPENSION_EXEMPT_PERMISSIONS = {"tenant.read", "billing.manage"}

TENANT_SESSION_KEY = "tenant_id"


@dataclass(frozen=True)
class Actor:
    """The person (or system) acting, handed to services instead of the request."""

    user: User | None
    ip: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.email
        return self.label or "system"


SYSTEM = Actor(user=None, label="system")


def current_actor() -> Actor:
    user = current_user if current_user.is_authenticated else None
    return Actor(user=user, ip=request.remote_addr)


def can(permission: str, membership: Membership | None = None) -> bool:
    membership = membership if membership is not None else g.get("membership")
    return membership is not None and membership.role in PERMISSIONS[permission]


def offer(permission: str) -> bool:
    """Whether a page shows the buttons of ``permission``: the role allows it and, while the
    tenant is suspended, it is one of the few things still possible (else it ends on a 403)."""
    if not can(permission):
        return False
    tenant = g.get("tenant")
    return not (tenant is not None and tenant.is_suspended and permission not in SUSPENSION_EXEMPT_PERMISSIONS)


SESSIONLESS_ENDPOINTS = frozenset({"static", "webhooks.stripe_webhook"})


def load_tenant_context() -> None:
    """Resolve ``g.tenant`` and ``g.membership`` from the session's chosen tenant."""
    # The objects behind the proxies, looked up once: each proxy access is a context-variable
    # lookup, and this runs on every request (a cached API read is a few hundred µs in all).
    context, endpoint = g._get_current_object(), request.endpoint
    context.tenant = None
    context.membership = None
    context.memberships = []
    # The API authenticates with keys, never with the browser session; Stripe's webhook signs
    # its body. Neither needs (nor pays for) a user lookup.
    if endpoint in SESSIONLESS_ENDPOINTS or (endpoint or "").startswith("api.") or not current_user.is_authenticated:
        return
    memberships = (
        db.session.execute(
            select(Membership)
            .join(Tenant)
            .options(contains_eager(Membership.tenant))  # each tenant with its membership: one statement
            .where(Membership.user_id == current_user.id, Tenant.status != "cancelled")
            .order_by(Tenant.company_name)
        )
        .scalars()
        .all()
    )
    g.memberships = memberships
    if not memberships:
        return
    chosen = session.get(TENANT_SESSION_KEY)
    membership = next((m for m in memberships if m.tenant_id == chosen), memberships[0])
    if chosen != membership.tenant_id:
        session[TENANT_SESSION_KEY] = membership.tenant_id
    g.membership = membership
    g.tenant = membership.tenant


def _guard_suspended() -> None:
    tenant = g.tenant
    if tenant is None or not tenant.is_suspended or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.blueprint in SUSPENSION_EXEMPT_BLUEPRINTS:
        return
    abort(
        403,
        f"Your account is suspended ({tenant.suspension_reason_label}). "
        "Only billing is available until it is reactivated.",
    )


def _second_factor_missing(why: str):
    """The one enforcement of "two-factor authentication required" (a tenant's policy, the console's):
    a person without a second factor is sent to set one up, and reaches nothing else until then."""
    if has_second_factor(current_user.id):
        return None
    flash(f"{why} Set up two-factor authentication to continue.", "warning")
    return redirect(url_for("auth.two_factor_settings"))


def tenant_required(permission: str = "tenant.read"):
    """Signed in, member of a live tenant, and allowed ``permission`` in it."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if g.tenant is None:
                if current_user.is_operator:
                    return redirect(url_for("admin.tenants"))
                flash("You are not a member of any active account.", "warning")
                return redirect(url_for("main.no_tenant"))
            if g.tenant.require_two_factor:
                missing = _second_factor_missing(f"{g.tenant.company_name} requires two-factor authentication.")
                if missing is not None:
                    return missing
            if not can(permission):
                abort(403, "Your role does not allow this.")
            _guard_suspended()
            return view(*args, **kwargs)

        return wrapper

    return decorator


def operator_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_operator:
            abort(404)
        if current_app.config["OPERATOR_2FA_REQUIRED"]:
            missing = _second_factor_missing("The operator console requires two-factor authentication.")
            if missing is not None:
                return missing
        return view(*args, **kwargs)

    return wrapper
