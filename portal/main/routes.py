from flask import Blueprint, current_app, flash, g, jsonify, redirect, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import text

from portal.access import TENANT_SESSION_KEY, tenant_required
from portal.billing.subscriptions import next_invoice_estimate, subscription_of
from portal.extensions import db
from portal.infra.queues import redis_connection
from portal.tenants.services import team_counts
from portal.usage import report as usage_report
from portal.web import render

bp = Blueprint("main", __name__)


@bp.get("/")
def home():
    """Signed-in people go to their overview; everyone else to sign-in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.overview"))
    return redirect(url_for("auth.sign_in"))


@bp.get("/overview")
@tenant_required()
def overview():
    """The tenant's status at a glance."""
    subscription = subscription_of(g.tenant)
    members, pending = team_counts(g.tenant)
    return render(
        "main/overview.html",
        members=members,
        pending=pending,
        subscription=subscription,
        next_invoice=next_invoice_estimate(subscription) if subscription is not None else None,
        usage=usage_report.build(g.tenant, with_daily=False, subscription=subscription),
    )


@bp.get("/no-account")
@login_required
def no_tenant():
    """A signed-in person with no live tenant (removed, left, or account deleted)."""
    if g.tenant is not None:
        return redirect(url_for("main.overview"))
    return render("main/no_tenant.html")


@bp.post("/switch-tenant")
@login_required
def switch_tenant():
    """Change the tenant this browser works in (only to one the user belongs to)."""
    wanted = request.form.get("tenant_id", "")
    if any(m.tenant_id == wanted for m in g.memberships):
        session[TENANT_SESSION_KEY] = wanted
    else:
        flash("You are not a member of that account.", "error")
    return redirect(url_for("main.overview"), code=303)


@bp.get("/healthz")
def healthz():
    """Reachability of the database and, when configured, Redis."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - report any failure as unhealthy
        checks["database"] = f"error: {type(error).__name__}"
        db.session.rollback()
    if current_app.config.get("REDIS_URL"):
        try:
            redis_connection().ping()
            checks["redis"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["redis"] = f"error: {type(error).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "unhealthy", checks=checks), 200 if healthy else 503
