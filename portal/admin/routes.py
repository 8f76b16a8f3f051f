from flask import Blueprint, abort, flash, make_response, request
from sqlalchemy import func, or_, select

from portal.access import current_actor, operator_required
from portal.admin.forms import ActivateForm, OperatorTokenForm, SuspendForm
from portal.api_keys import services as api_key_services
from portal.errors import ServiceError
from portal.extensions import db
from portal.forms import apply_service_error
from portal.models import AuditEvent, EmailMessage, Membership, OperatorToken, Tenant
from portal.models.tenant import TENANT_STATUSES
from portal.tasks import commit, rollback
from portal.team.services import members as tenant_members
from portal.tenants import services as tenant_services
from portal.web import act, form_errors_status, redirect_to, render

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Rendered email HTML is untrusted-ish content: show it with scripts and forms disabled.
EMAIL_PREVIEW_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _page_number() -> int:
    return max(request.args.get("page", 1, type=int) or 1, 1)


def _load_tenant(tenant_id: str) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant


@bp.get("")
@operator_required
def index():
    return redirect_to("admin.tenants")


@bp.get("/tenants")
@operator_required
def tenants():
    """Tenants with search by name or id, a status filter and pages."""
    search = request.args.get("q", "").strip()[:100]
    status_filter = request.args.get("status", "")
    members = (
        select(func.count(Membership.id)).where(Membership.tenant_id == Tenant.tenant_id).scalar_subquery()
    )
    query = select(Tenant, members.label("member_count")).order_by(Tenant.created_at.desc())
    if search:
        # autoescape: "%" and "_" typed in the box are characters, not LIKE wildcards.
        needle = search.lower()
        query = query.where(or_(func.lower(Tenant.tenant_id).contains(needle, autoescape=True),
                                func.lower(Tenant.company_name).contains(needle, autoescape=True)))
    if status_filter in TENANT_STATUSES:
        query = query.where(Tenant.status == status_filter)
    else:
        status_filter = ""
    per_page = 20
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    page = _page_number()
    rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).all()
    pages = max((total + per_page - 1) // per_page, 1)
    return render(
        "admin/tenants.html",
        "admin/_tenants_table.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        search=search,
        status_filter=status_filter,
        statuses=TENANT_STATUSES,
    )


@bp.get("/tenants/<tenant_id>")
@operator_required
def tenant_detail(tenant_id: str):
    """One tenant: profile, members, status and its recent activity."""
    tenant = _load_tenant(tenant_id)
    return _detail_page(tenant)


def _detail_page(tenant: Tenant, suspend_form: SuspendForm | None = None, status: int = 200):
    events = db.session.execute(
        select(AuditEvent)
        .where(AuditEvent.tenant_id == tenant.tenant_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(20)
    ).scalars().all()
    return render(
        "admin/tenant_detail.html",
        status=status,
        tenant=tenant,
        members=tenant_members(tenant),
        events=events,
        suspend_form=suspend_form or SuspendForm(formdata=None),
        activate_form=ActivateForm(formdata=None),
    )


@bp.post("/tenants/<tenant_id>/suspend")
@operator_required
def suspend(tenant_id: str):
    """Suspend with a reason, an optional note, and optionally tell the customer."""
    tenant = _load_tenant(tenant_id)
    form = SuspendForm()
    if form.validate_on_submit():
        try:
            tenant_services.suspend(current_actor(), tenant, form.reason.data, form.note.data or "", form.notify.data)
            commit()
        except ServiceError as error:
            rollback()
            flash(error.message, "error")
        else:
            flash(f"{tenant.company_name} is suspended.", "success")
        return redirect_to("admin.tenant_detail", tenant_id=tenant.tenant_id)
    return _detail_page(tenant, suspend_form=form, status=form_errors_status())


@bp.post("/tenants/<tenant_id>/activate")
@operator_required
def activate(tenant_id: str):
    """Lift a suspension."""
    tenant = _load_tenant(tenant_id)

    def activate_tenant():
        tenant_services.activate(current_actor(), tenant)
        return f"{tenant.company_name} is active again."

    return act(activate_tenant, "admin.tenant_detail", tenant_id=tenant.tenant_id)


@bp.get("/outbox")
@operator_required
def outbox():
    """Every email the portal sent, newest first (the only inbox in embedded mode)."""
    recipient = request.args.get("to", "").strip()[:254]
    query = select(EmailMessage).order_by(EmailMessage.created_at.desc())
    if recipient:
        query = query.where(EmailMessage.to == recipient.lower())
    messages = db.paginate(query, page=_page_number(), per_page=25, error_out=False)
    return render("admin/outbox.html", messages=messages, recipient=recipient)


@bp.get("/outbox/<message_id>")
@operator_required
def outbox_message(message_id: str):
    message = db.get_or_404(EmailMessage, message_id)
    return render("admin/outbox_message.html", message=message)


@bp.get("/outbox/<message_id>/html")
@operator_required
def outbox_message_html(message_id: str):
    message = db.get_or_404(EmailMessage, message_id)
    response = make_response(message.html_body)
    response.headers["Content-Security-Policy"] = EMAIL_PREVIEW_CSP
    return response


@bp.get("/tokens")
@operator_required
def tokens():
    """Operator API tokens for the company's own programs."""
    return _tokens_page()


def _tokens_page(form: OperatorTokenForm | None = None, created=None, status: int = 200, fragment=None):
    return render(
        "admin/tokens.html",
        fragment,
        status=status,
        tokens=api_key_services.list_operator_tokens(),
        form=form or OperatorTokenForm(formdata=None),
        created=created,
    )


@bp.post("/tokens")
@operator_required
def create_token():
    """Issue an operator token and show it once, in this response only."""
    form = OperatorTokenForm()
    if form.validate_on_submit():
        try:
            token, plaintext = api_key_services.create_operator_token(current_actor(), form.name.data)
            commit()
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            return _tokens_page(created={"token": token, "plaintext": plaintext}, fragment="admin/_token_created.html")
    return _tokens_page(form=form, status=form_errors_status(), fragment="admin/_token_form.html")


@bp.post("/tokens/<token_id>/revoke")
@operator_required
def revoke_token(token_id: str):
    """Revoke an operator token; programs using it get 401 from then on."""
    token = db.get_or_404(OperatorToken, token_id)

    def revoke():
        api_key_services.revoke_operator_token(current_actor(), token)
        return f"The token “{token.name}” ({token.prefix}…) was revoked."

    return act(revoke, "admin.tokens")
