from flask import Blueprint, g, request
from sqlalchemy import select

from portal.access import tenant_required
from portal.activity.display import describe
from portal.infra.pagination import paginate
from portal.models import AuditEvent
from portal.web import render

bp = Blueprint("activity", __name__, url_prefix="/activity")

PAGE_SIZE = 50


@bp.get("")
@tenant_required()
def index():
    """The tenant's audit log, newest first."""
    page = request.args.get("page", 1, type=int)
    query = (
        select(AuditEvent)
        .where(AuditEvent.tenant_id == g.tenant.tenant_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    events = paginate(query, page, PAGE_SIZE)
    return render("activity/index.html", "activity/_events.html", events=events, describe=describe)
