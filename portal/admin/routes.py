from decimal import Decimal

from flask import Blueprint, abort, flash, make_response, request
from sqlalchemy import func, select

from portal.access import current_actor, operator_required
from portal.admin.forms import (
    ActivateForm,
    BillingRunForm,
    CreditForm,
    CreditGrantForm,
    MarkPaidForm,
    MeterForm,
    OperatorTokenForm,
    SuspendForm,
    VoidInvoiceForm,
)
from portal.api_keys import services as api_key_services
from portal.billing import credits as billing_credits
from portal.billing import invoices as billing_invoices
from portal.billing import plans as billing_plans
from portal.billing import runs as billing_runs
from portal.billing.catalog import MeterSpec
from portal.billing.money import format_amount, format_money
from portal.billing.payments.events import replay
from portal.billing.pdf import pdf_download
from portal.billing.subscriptions import subscription_of
from portal.errors import ServiceError
from portal.extensions import db
from portal.forms import apply_service_error
from portal.infra.failed_jobs import failed_jobs as list_failed
from portal.infra.failed_jobs import requeue
from portal.infra.pagination import paginate
from portal.infra.transactions import commit, rollback
from portal.models import (
    STRIPE_EVENT_STATUSES,
    AuditEvent,
    BillingRun,
    EmailMessage,
    Invoice,
    Membership,
    Meter,
    OperatorToken,
    StripeEvent,
    Subscription,
    Tenant,
    utcnow,
)
from portal.models.tenant import TENANT_STATUSES
from portal.team.services import members as tenant_members
from portal.tenants import services as tenant_services
from portal.usage.meters import list_meters, save_meter
from portal.web import act, form_errors_status, redirect_to, render, wants_fragment

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Rendered email HTML is untrusted-ish content: show it with scripts and forms disabled.
EMAIL_PREVIEW_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# htmx stops polling an element whose response has this status (the finished run's block).
HTMX_STOP_POLLING = 286
TENANT_INVOICES_SHOWN = 20
CREDIT_ENTRIES_PER_PAGE = 20
TENANTS_PER_PAGE = 20


def _quantity(value) -> str:
    """1.000000 -> "1", 2.500000 -> "2.5": invoice quantities without storage padding."""
    return format(Decimal(value).normalize(), "f")


@bp.context_processor
def money_helpers():
    return {"money": format_money, "amount": format_amount, "quantity": _quantity}


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
    if status_filter not in TENANT_STATUSES:
        status_filter = ""
    members = select(func.count(Membership.id)).where(Membership.tenant_id == Tenant.tenant_id).scalar_subquery()
    query = tenant_services.search(search, status=status_filter or None).add_columns(members.label("member_count"))
    result = paginate(query, request.args.get("page", 1, type=int), TENANTS_PER_PAGE, rows=True)
    rows, total, page, pages = result.items, result.total, result.page, max(result.pages, 1)
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


def _credit_forms(tenant: Tenant) -> tuple[CreditGrantForm, CreditForm]:
    currency = billing_credits.currency_of(tenant.tenant_id)
    return (
        CreditGrantForm(formdata=None, currency=currency, prefix="grant"),
        CreditForm(formdata=None, currency=currency, prefix="deduct"),
    )


def _credit_ledger(tenant: Tenant, currency: str):
    return paginate(
        billing_credits.entries(tenant.tenant_id, currency),
        request.args.get("credit_page", 1, type=int),
        CREDIT_ENTRIES_PER_PAGE,
    )


def _detail_page(
    tenant: Tenant,
    suspend_form: SuspendForm | None = None,
    status: int = 200,
    grant_form: CreditGrantForm | None = None,
    deduct_form: CreditForm | None = None,
):
    events = (
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == tenant.tenant_id)
            .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
            .limit(20)
        )
        .scalars()
        .all()
    )
    invoices = db.session.execute(billing_invoices.for_tenant(tenant).limit(TENANT_INVOICES_SHOWN)).scalars().all()
    default_grant, default_deduct = _credit_forms(tenant)
    credit = billing_credits.summary(tenant.tenant_id)
    return render(
        "admin/tenant_detail.html",
        status=status,
        credit=credit,
        credit_entries=_credit_ledger(tenant, credit.currency),
        grant_form=grant_form or default_grant,
        deduct_form=deduct_form or default_deduct,
        tenant=tenant,
        members=tenant_members(tenant),
        events=events,
        subscription=subscription_of(tenant),
        invoices=invoices,
        invoices_shown=TENANT_INVOICES_SHOWN,
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


def _credit_change(tenant: Tenant, form: CreditForm, kind: str):
    """Validate, ask for confirmation, then grant or deduct; a refusal re-shows the form."""
    forms = {"grant_form": form} if kind == "grant" else {"deduct_form": form}
    if not form.validate_on_submit():
        return _detail_page(tenant, status=form_errors_status(), **forms)
    if form.confirmed.data != "yes":
        return render(
            "admin/credit_confirm.html",
            tenant=tenant,
            form=form,
            kind=kind,
            amount=format_money(form.cents, form.currency.data.upper()),
        )
    actor = current_actor()
    try:
        if kind == "grant":
            billing_credits.grant(
                actor,
                tenant,
                form.cents,
                currency=form.currency.data,
                expires_at=form.expires_at.data,
                reason=form.reason.data,
            )
        else:
            billing_credits.deduct(actor, tenant, form.cents, currency=form.currency.data, reason=form.reason.data)
        commit()
    except ServiceError as error:
        rollback()
        apply_service_error(form, error)
        form.confirmed.data = ""
        return _detail_page(tenant, status=form_errors_status(), **forms)
    verb = "granted to" if kind == "grant" else "deducted from"
    flash(f"{format_money(form.cents, form.currency.data.upper())} of credit {verb} {tenant.company_name}.", "success")
    return redirect_to("admin.tenant_detail", tenant_id=tenant.tenant_id)


@bp.post("/tenants/<tenant_id>/credits/grant")
@operator_required
def grant_credit(tenant_id: str):
    """Give the tenant credit (after a confirmation step); billing runs apply it to invoices."""
    return _credit_change(_load_tenant(tenant_id), CreditGrantForm(prefix="grant"), "grant")


@bp.post("/tenants/<tenant_id>/credits/deduct")
@operator_required
def deduct_credit(tenant_id: str):
    """Take credit away (after a confirmation step); never more than the balance."""
    return _credit_change(_load_tenant(tenant_id), CreditForm(prefix="deduct"), "deduct")


@bp.get("/outbox")
@operator_required
def outbox():
    """Every email the portal sent, newest first (the only inbox in embedded mode)."""
    recipient = request.args.get("to", "").strip()[:254]
    query = select(EmailMessage).order_by(EmailMessage.created_at.desc())
    if recipient:
        query = query.where(EmailMessage.to == recipient.lower())
    messages = paginate(query, request.args.get("page", 1, type=int), 25)
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


@bp.get("/plans")
@operator_required
def plans():
    """The plan catalog with every version and how many live subscriptions each one has."""
    return render("admin/plans.html", plans=billing_plans.list_plans(), counts=billing_plans.subscriber_counts())


@bp.get("/billing")
@operator_required
def billing():
    """Start a billing run by hand and see the recent ones."""
    return _billing_page()


def _billing_page(form: BillingRunForm | None = None, status: int = 200):
    return render(
        "admin/billing.html",
        status=status,
        form=form or BillingRunForm(formdata=None),
        runs=billing_runs.recent_runs(),
    )


@bp.post("/billing/runs")
@operator_required
def run_billing():
    """Queue a billing run as of now or of the given instant (UTC), then show its progress."""
    form = BillingRunForm()
    if not form.validate_on_submit():
        return _billing_page(form=form, status=form_errors_status())
    try:
        run = billing_runs.request_run(triggered_by=current_actor().name, at=form.as_of.data)
        run_id = run.id
        commit()  # in the embedded mode the run executes right here, inline
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("admin.billing")
    flash("Billing run started.", "success")
    return redirect_to("admin.billing_run", run_id=run_id)


@bp.get("/billing/runs/<run_id>")
@operator_required
def billing_run(run_id: str):
    """One run's progress; htmx polls the progress block until the run has finished."""
    # A worker in another process moves the run on: read its row afresh on every poll.
    run = db.session.get(BillingRun, run_id, populate_existing=True)
    if run is None:
        abort(404)
    failed_ids = [error["subscription_id"] for error in run.errors or [] if error.get("subscription_id")]
    tenant_of = (
        dict(
            db.session.execute(
                select(Subscription.id, Subscription.tenant_id).where(Subscription.id.in_(failed_ids))
            ).all()
        )
        if failed_ids
        else {}
    )
    response = render("admin/billing_run.html", "admin/_run_progress.html", run=run, tenant_of=tenant_of)
    if run.finished and wants_fragment():
        response.status_code = HTMX_STOP_POLLING
    return response


def _load_invoice(invoice_id: str) -> Invoice:
    return db.get_or_404(Invoice, invoice_id)


@bp.get("/invoices/<invoice_id>")
@operator_required
def invoice(invoice_id: str):
    """One invoice of any tenant, with the operator's mark-paid and void actions."""
    return _invoice_page(_load_invoice(invoice_id))


@bp.get("/invoices/<invoice_id>.pdf")
@operator_required
def invoice_pdf(invoice_id: str):
    """The PDF exactly as the customer downloads it."""
    return pdf_download(_load_invoice(invoice_id))


def _invoice_page(
    invoice: Invoice, paid_form: MarkPaidForm | None = None, void_form: VoidInvoiceForm | None = None, status: int = 200
):
    return render(
        "admin/invoice.html",
        status=status,
        invoice=invoice,
        paid_form=paid_form or MarkPaidForm(formdata=None),
        void_form=void_form or VoidInvoiceForm(formdata=None),
    )


def _invoice_action(invoice: Invoice, form_name: str, form, action, success: str):
    """Validate ``form``, run ``action(form)`` on the invoice, commit; a refusal changes nothing."""
    if not form.validate_on_submit():
        return _invoice_page(invoice, status=form_errors_status(), **{form_name: form})

    def run() -> str:
        action(form)
        return success

    return act(run, "admin.invoice", invoice_id=invoice.id)


@bp.post("/invoices/<invoice_id>/mark-paid")
@operator_required
def mark_invoice_paid(invoice_id: str):
    """Record a payment made outside Stripe (a bank transfer)."""
    invoice = _load_invoice(invoice_id)
    return _invoice_action(
        invoice,
        "paid_form",
        MarkPaidForm(),
        lambda form: billing_invoices.mark_paid(current_actor(), invoice, form.reference.data, utcnow()),
        f"Invoice {invoice.number} is marked paid.",
    )


@bp.post("/invoices/<invoice_id>/void")
@operator_required
def void_invoice(invoice_id: str):
    """Void an invoice that should never have been issued; it no longer counts as due."""
    invoice = _load_invoice(invoice_id)
    return _invoice_action(
        invoice,
        "void_form",
        VoidInvoiceForm(),
        lambda form: billing_invoices.void(current_actor(), invoice, form.reason.data, utcnow()),
        f"Invoice {invoice.number} is void.",
    )


# --- meters ----------------------------------------------------------------------------------


@bp.get("/meters")
@operator_required
def meters():
    """The meters that turn usage events into plan features' quantities."""
    return render("admin/meters.html", meters=list_meters())


def _meter_page(form: MeterForm, meter=None, status: int = 200):
    return render("admin/meter_form.html", form=form, meter=meter, status=status)


@bp.route("/meters/new", methods=["GET", "POST"], endpoint="new_meter")
@bp.route("/meters/<meter_key>", methods=["GET", "POST"])
@operator_required
def edit_meter(meter_key: str | None = None):
    """Create or edit a meter (the catalog file's next sync writes its own meters back)."""
    import json

    from pydantic import ValidationError

    meter = None
    if meter_key is not None:
        meter = db.session.execute(select(Meter).where(Meter.key == meter_key[:64])).scalar_one_or_none()
        if meter is None:
            abort(404)
    if request.method == "GET":
        form = MeterForm(formdata=None, obj=meter)
        if meter is not None:
            form.filter.data = json.dumps(meter.filter) if (meter.filter or {}).get("conditions") else ""
        return _meter_page(form, meter)
    form = MeterForm()
    if meter is not None:
        form.key.data = meter.key  # the key names the feature: it is not renamed here
    if not form.validate_on_submit():
        return _meter_page(form, meter, form_errors_status())
    try:
        meter_filter = json.loads(form.filter.data) if (form.filter.data or "").strip() else {}
    except ValueError as error:
        form.filter.errors = [f"Not valid JSON: {error}"]
        return _meter_page(form, meter, form_errors_status())
    try:
        spec = MeterSpec(
            key=form.key.data.strip(),
            name=form.name.data.strip(),
            event_name=form.event_name.data.strip(),
            aggregation=form.aggregation.data,
            property=(form.property.data or "").strip() or None,
            filter=meter_filter,
        )
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            target = getattr(form, str(problem["loc"][0]), None) if problem["loc"] else None
            message = problem["msg"].removeprefix("Value error, ")
            if target is not None and target.name != "csrf_token":
                target.errors = list(target.errors or []) + [message]
            else:
                form.form_errors.append(message)
        return _meter_page(form, meter, form_errors_status())
    if meter is None and db.session.execute(select(Meter).where(Meter.key == spec.key)).first() is not None:
        form.key.errors = ["A meter with this key exists; edit it instead."]
        return _meter_page(form, meter, form_errors_status())
    save_meter(spec)
    commit()
    flash(f"Meter {spec.key} saved.", "success")
    return redirect_to("admin.meters")


# --- Stripe events and failed jobs ---------------------------------------------------------


@bp.get("/stripe-events")
@operator_required
def stripe_events():
    """Inbound Stripe webhooks, newest first, with their processing status and last error."""
    status = request.args.get("status", "").strip()
    query = select(StripeEvent).order_by(StripeEvent.received_at.desc())
    if status in STRIPE_EVENT_STATUSES:
        query = query.where(StripeEvent.status == status)
    else:
        status = ""
    events = paginate(query, request.args.get("page", 1, type=int), 50)
    return render("admin/stripe_events.html", events=events, status_filter=status, statuses=STRIPE_EVENT_STATUSES)


@bp.post("/stripe-events/<event_id>/replay")
@operator_required
def replay_stripe_event(event_id: str):
    """Process a stored event again (its handler is idempotent)."""
    event = db.get_or_404(StripeEvent, event_id)

    def replay_it() -> str:
        replay(current_actor(), event)
        return f"Event {event.id} ({event.type}) queued for processing again."

    return act(replay_it, "admin.stripe_events")


@bp.get("/jobs/failed")
@operator_required
def failed_jobs():
    """Jobs that failed after their retries, per queue, with the error, to requeue."""
    return render("admin/failed_jobs.html", jobs=list_failed())


@bp.post("/jobs/<job_id>/requeue")
@operator_required
def requeue_job(job_id: str):
    def requeue_it() -> str:
        requeue(job_id)
        return f"Job {job_id} requeued."

    return act(requeue_it, "admin.failed_jobs")
