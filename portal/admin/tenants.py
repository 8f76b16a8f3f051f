"""Console: the tenants list, one tenant's page (profile, members, credit, invoices, activity),
suspend and activate. ``/admin`` opens on the list."""

from flask import flash, request
from sqlalchemy import func, select

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp, load_tenant
from portal.admin.forms import ActivateForm, ApplyDiscountForm, CreditForm, CreditGrantForm, ExternalIdForm, SuspendForm
from portal.billing import credits as billing_credits
from portal.billing import discounts as billing_discounts
from portal.billing import invoices as billing_invoices
from portal.billing.subscriptions import subscription_of
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.infra.transactions import commit, rollback
from portal.models import AuditEvent, Membership, Tenant
from portal.models.tenant import TENANT_STATUSES
from portal.team.services import members as tenant_members
from portal.tenants import services as tenant_services
from portal.web import act, form_errors_status, redirect_to, render

TENANT_INVOICES_SHOWN = 20
CREDIT_ENTRIES_PER_PAGE = 20
TENANTS_PER_PAGE = 20


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
    tenant = load_tenant(tenant_id)
    return detail_page(tenant)


def _credit_forms(tenant: Tenant, currency: str | None = None) -> tuple[CreditGrantForm, CreditForm]:
    currency = currency or billing_credits.currency_of(tenant.tenant_id)
    return (
        CreditGrantForm(formdata=None, currency=currency, prefix="grant"),
        CreditForm(formdata=None, currency=currency, prefix="deduct"),
    )


def _credit_ledger(tenant: Tenant, credit: billing_credits.Summary):
    return paginate(
        billing_credits.entries(tenant.tenant_id, credit.currency),
        request.args.get("credit_page", 1, type=int),
        CREDIT_ENTRIES_PER_PAGE,
        total=credit.entries,
    )


def detail_page(
    tenant: Tenant,
    suspend_form: SuspendForm | None = None,
    status: int = 200,
    grant_form: CreditGrantForm | None = None,
    deduct_form: CreditForm | None = None,
    external_id_form: ExternalIdForm | None = None,
    discount_form: ApplyDiscountForm | None = None,
):
    """The tenant's page; suspend, the credit actions (``credits.py``) and applying a discount
    (``coupons.py``) re-show it with their form."""
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
    subscription = subscription_of(tenant)
    currency = billing_credits.currency_of_subscription(subscription)
    default_grant, default_deduct = _credit_forms(tenant, currency)
    credit = billing_credits.summary(tenant.tenant_id, currency)
    if discount_form is None:
        discount_form = ApplyDiscountForm(formdata=None)
    # The tenant's latest discounts; its active one, if any, is the newest of them (a new one
    # replaces it), so it needs no look-up of its own.
    redemptions = (
        db.session.execute(billing_discounts.redemptions(tenant_id=tenant.tenant_id).limit(10)).scalars().all()
    )
    discount = billing_discounts.current(subscription, among=redemptions)
    return render(
        "admin/tenant_detail.html",
        status=status,
        discount=discount,
        discount_terms=billing_discounts.terms,
        discount_ends=billing_discounts.ends_on(discount, subscription) if discount else None,
        discount_form=discount_form,
        redemptions=redemptions,
        credit=credit,
        credit_entries=_credit_ledger(tenant, credit),
        grant_form=grant_form or default_grant,
        deduct_form=deduct_form or default_deduct,
        tenant=tenant,
        members=tenant_members(tenant),
        events=events,
        subscription=subscription,
        invoices=invoices,
        invoices_shown=TENANT_INVOICES_SHOWN,
        suspend_form=suspend_form or SuspendForm(formdata=None),
        activate_form=ActivateForm(formdata=None),
        external_id_form=external_id_form or ExternalIdForm(formdata=None, external_id=tenant.external_id),
    )


@bp.post("/tenants/<tenant_id>/suspend")
@operator_required
def suspend(tenant_id: str):
    """Suspend with a reason, an optional note, and optionally tell the customer."""
    tenant = load_tenant(tenant_id)
    form = SuspendForm()
    if not form.validate_on_submit():
        return detail_page(tenant, suspend_form=form, status=form_errors_status())

    def suspend_tenant() -> str:
        tenant_services.suspend(current_actor(), tenant, form.reason.data, form.note.data or "", form.notify.data)
        return f"{tenant.company_name} is suspended."

    return act(suspend_tenant, "admin.tenant_detail", tenant_id=tenant.tenant_id)


@bp.post("/tenants/<tenant_id>/activate")
@operator_required
def activate(tenant_id: str):
    """Lift a suspension, and (unless unticked) email the customer that it is over."""
    tenant = load_tenant(tenant_id)
    form = ActivateForm()
    notify = bool(form.notify.data)

    def activate_tenant():
        tenant_services.activate(current_actor(), tenant, notify=notify)
        told = f" {tenant.contact_email} was emailed." if notify and tenant.contact_email else ""
        return f"{tenant.company_name} is active again.{told}"

    return act(activate_tenant, "admin.tenant_detail", tenant_id=tenant.tenant_id)


@bp.post("/tenants/<tenant_id>/external-id")
@operator_required
def set_external_id(tenant_id: str):
    """Set, change or clear the operator's own id for the tenant (audited)."""
    tenant = load_tenant(tenant_id)
    form = ExternalIdForm()
    if form.validate_on_submit():
        external_id = (form.external_id.data or "").strip() or None
        try:
            tenant_services.set_external_id(current_actor(), tenant, external_id)
            commit()
        except ServiceError as error:
            rollback()
            form.external_id.errors = [error.message]
        else:
            flash(f"External id {'set to ' + external_id if external_id else 'removed'}.", "success")
            return redirect_to("admin.tenant_detail", tenant_id=tenant.tenant_id)
    return detail_page(tenant, external_id_form=form, status=form_errors_status())
