"""The Billing page: plan cards, plan change with its exact preview, cancel and resume, invoices
(list, detail, PDF, CSV). Every member reads; owners and admins (billing.manage) change things.

A plan change is confirmed against a signed quote of its preview: the confirmation applies the
change as of the instant the preview was calculated, so the invoice is exactly what was shown.
A quote is good for QUOTE_MAX_AGE and only while the subscription and both prices are unchanged.
"""

from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, current_app, flash, g, make_response, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from portal.access import current_actor, tenant_required
from portal.billing import credits as credit_service
from portal.billing import discounts, display, notices, subscriptions, taxes
from portal.billing import invoices as invoice_service
from portal.billing import plans as plan_service
from portal.billing import profile as profile_service
from portal.billing.countries import country_name
from portal.billing.forms import (
    BLANK_TAX_ID_ROWS,
    BillingDetailsForm,
    BillingEmailsForm,
    CancelForm,
    ConfirmChangeForm,
    PromotionCodeForm,
)
from portal.billing.money import format_amount, format_money
from portal.billing.pdf import pdf_download, seller_from_config
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.infra.transactions import commit, rollback
from portal.models import OPTIONAL_BILLING_EMAILS, Plan, Subscription, utcnow
from portal.web import act, form_errors_status, page_view, redirect_to, render, submit

bp = Blueprint("billing", __name__, url_prefix="/billing")

INVOICES_PER_PAGE = 20
RECENT_INVOICES = 5
RECENT_CREDIT_ENTRIES = 5
CREDIT_ENTRIES_PER_PAGE = 20
# Beyond any real number of pages; keeps the OFFSET inside what a database accepts.
QUOTE_MAX_AGE = 30 * 60
# The plan cards' switch: monthly or yearly plans.
INTERVALS = ("month", "year")


@bp.context_processor
def billing_helpers():
    return {
        "day": display.day,
        "money": format_money,
        "amount": format_amount,
        "number": display.number,
        "plan_price": display.price,
        "quota_changes": display.quota_changes,
        "plan_quotas": display.quotas,
        "plan_features": display.features,
        "discount_terms": discounts.terms,
        "country_name": country_name,
        "buyer_address": profile_service.address_lines,
        "buyer_tax_ids": profile_service.tax_id_lines,
    }


def _subscription() -> Subscription | None:
    return subscriptions.subscription_of(g.tenant)


def _can_subscribe(subscription: Subscription | None) -> bool:
    return subscription is None or subscription.status == "canceled"


def _public_plan_or_404(plan_key: str) -> Plan:
    plan = next((plan for plan in plan_service.list_plans(public_only=True) if plan.key == plan_key), None)
    if plan is None or not plan.versions:
        abort(404, "There is no such plan.")
    return plan


def _card_interval(subscription: Subscription | None) -> str:
    """Which plan cards to show: ``?interval=month|year``, else the current plan's interval."""
    asked = request.args.get("interval", "")
    if asked in INTERVALS:
        return asked
    return subscription.plan_version.interval if subscription is not None and subscription.is_live else "month"


def _plan_cards(subscription: Subscription | None, interval: str) -> list[Plan]:
    public = plan_service.list_plans(public_only=True)
    cards = [plan for plan in public if plan.versions and plan.current_version.interval == interval]
    # A tenant on a plan no longer offered still sees it, marked as theirs.
    current = subscription.plan_version.plan if subscription is not None and subscription.is_live else None
    if current is not None and current not in public and subscription.plan_version.interval == interval:
        cards.insert(0, current)
    return cards


@page_view(bp, "", "index", tenant_required())
def _index_page(cancel_form: CancelForm | None = None, status: int = 200):
    """The plan, its period and next invoice, the plan cards, cancel/resume, recent invoices."""
    subscription = _subscription()
    live = subscription is not None and subscription.is_live
    interval = _card_interval(subscription)
    recent = db.session.execute(invoice_service.for_tenant(g.tenant).limit(RECENT_INVOICES)).scalars().all()
    credit = credit_service.summary(g.tenant.tenant_id, credit_service.currency_of_subscription(subscription))
    estimate = subscriptions.next_invoice_estimate(subscription) if live else None
    active = discounts.active_discount(subscription)
    discount = discounts.current(subscription, among=[active] if active else [])
    return render(
        "billing/index.html",
        "billing/_plans.html",
        status=status,
        discount=discount,
        discount_ends=discounts.ends_on(discount, subscription) if discount else None,
        renewal_discount=discounts.renewal_discount(
            subscription, estimate, subscriptions.renewal_version(subscription) if estimate else None, active=active
        ),
        credit=credit,
        credit_entries=paginate(
            credit_service.entries(g.tenant.tenant_id, credit.currency), 1, RECENT_CREDIT_ENTRIES, total=credit.entries
        ),
        subscription=subscription,
        live=live,
        estimate=estimate,
        plans=_plan_cards(subscription, interval),
        interval=interval,
        can_subscribe=_can_subscribe(subscription),
        cancel_form=cancel_form or CancelForm(formdata=None),
        cancel_open=cancel_form is not None,
        recent_invoices=recent,
        failed_invoices=invoice_service.failed_among(recent),
        billing_profile=profile_service.profile_of(g.tenant),
    )


@bp.get("/credits")
@tenant_required()
def credits():
    """The account's credit balance and its whole ledger, newest first, a page at a time."""
    credit = credit_service.summary(g.tenant.tenant_id)
    entries = paginate(
        credit_service.entries(g.tenant.tenant_id, credit.currency),
        request.args.get("page", 1, type=int),
        CREDIT_ENTRIES_PER_PAGE,
        total=credit.entries,
    )
    return render("billing/credits.html", credit=credit, credit_entries=entries)


# --- changing plan -----------------------------------------------------------------------


def _quotes() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="billing.plan-change-quote")


def _quote_state(subscription: Subscription | None, plan: Plan) -> dict:
    """What a quote is only good for: this tenant, this subscription as it is now, these prices."""
    return {
        "tenant": g.tenant.tenant_id,
        "subscription": subscription.id if subscription else None,
        "state": subscription.updated_at.isoformat() if subscription else None,
        "from": subscription.plan_version_id if subscription else None,
        "to": plan.current_version.id,
    }


def _quoted_instant(token: str, subscription: Subscription | None, plan: Plan) -> datetime | None:
    """The instant a still-valid quote was calculated at; None when it no longer holds."""
    try:
        quote = _quotes().loads(token or "", max_age=QUOTE_MAX_AGE)
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(quote, dict) or not isinstance(quote.get("at"), int):
        return None
    if {key: quote.get(key) for key in _quote_state(subscription, plan)} != _quote_state(subscription, plan):
        return None
    at, now = datetime.fromtimestamp(quote["at"], UTC), utcnow()
    if not now - timedelta(seconds=QUOTE_MAX_AGE) <= at <= now:
        return None
    # A renewal since the preview changed the subscription's state above. A period that starts
    # after the quote's instant is no reason to refuse: the preview counted the time paid ahead.
    return at


def _already_on(subscription: Subscription | None, plan: Plan) -> bool:
    return subscription is not None and subscription.is_live and subscription.plan_version.plan_id == plan.id


@bp.get("/change/<plan_key>")
@tenant_required("billing.manage")
def change(plan_key: str):
    """What switching to (or subscribing to) this plan does, exactly, before it is confirmed."""
    plan = _public_plan_or_404(plan_key)
    subscription = _subscription()
    if _already_on(subscription, plan):
        flash(f"You are already on the {plan.name} plan.", "info")
        return redirect_to("billing.index")
    at = subscriptions.to_second(None)
    preview = None
    if not _can_subscribe(subscription):
        try:
            preview = subscriptions.preview_change(subscription, plan.key, at)
        except ServiceError as error:
            flash(error.message, "error")
            return redirect_to("billing.index")
    form = ConfirmChangeForm(formdata=None)
    form.quote.data = _quotes().dumps({**_quote_state(subscription, plan), "at": int(at.timestamp())})
    version = plan.current_version
    buyer = profile_service.snapshot(profile_service.profile_of(g.tenant))
    tax = taxes.estimate(buyer, [line.amount for line in preview.lines] if preview else [version.price])
    return render(
        "billing/change.html",
        tax=tax,
        plan=plan,
        version=version,
        subscription=subscription,
        preview=preview,
        at=at,
        trial_end=at + timedelta(days=version.trial_days),
        form=form,
        quote_minutes=QUOTE_MAX_AGE // 60,
    )


def _change_message(preview, invoice, subscription: Subscription, withdrew_cancellation: bool) -> str:
    new, old = preview.new, preview.old
    if not preview.immediate:
        message = (
            f"{preview.direction.capitalize()} to {new.name} scheduled for {display.day(preview.effective_at)}. "
            f"You keep {old.name} until then."
        )
    elif invoice is not None:
        message = (
            f"{preview.direction.capitalize()}d to {new.name}. Invoice {invoice.number} for "
            f"{format_money(invoice.total, invoice.currency)} issued."
        )
    elif subscription.status == "trialing":
        message = (
            f"Switched to {new.name}. Your free trial continues until {display.day(subscription.trial_end)}; "
            "nothing is charged until then."
        )
    else:
        message = f"{preview.direction.capitalize()}d to {new.name}. Nothing is charged for the rest of this period."
    if withdrew_cancellation:
        message += " Your subscription no longer ends at the end of this period."
    return message


def _subscribe_message(subscription: Subscription) -> str:
    version = subscription.plan_version
    if subscription.status == "trialing":
        return (
            f"Your {version.trial_days}-day {version.name} trial has started. It ends on "
            f"{display.day(subscription.trial_end)}; the first invoice comes then."
        )
    invoice = db.session.execute(invoice_service.for_tenant(g.tenant).limit(1)).scalar_one_or_none()
    issued = (
        f" Invoice {invoice.number} for {format_money(invoice.total, invoice.currency)} issued."
        if invoice is not None and invoice.subscription_id == subscription.id
        else ""
    )
    return f"Subscribed to {version.name}.{issued}"


@bp.post("/change/<plan_key>")
@tenant_required("billing.manage")
def confirm_change(plan_key: str):
    """Apply the previewed change (or start the subscription) and say what happened."""
    plan = _public_plan_or_404(plan_key)
    form = ConfirmChangeForm()
    if not form.validate_on_submit():
        abort(400, "Your form expired. Reload the page and try again.")
    subscription = _subscription()
    if _already_on(subscription, plan):
        flash(f"You are already on the {plan.name} plan.", "info")
        return redirect_to("billing.index")
    at = _quoted_instant(form.quote.data, subscription, plan)
    if at is None:
        flash(
            f"Prices or your subscription changed since that preview, or it is more than {QUOTE_MAX_AGE // 60} "
            "minutes old. These are the figures as of now: check them and confirm again.",
            "warning",
        )
        return redirect_to("billing.change", plan_key=plan.key)

    def change() -> str:
        if _can_subscribe(subscription):
            return _subscribe_message(subscriptions.start(current_actor(), g.tenant, plan.key))
        withdrew = subscription.cancel_at_period_end
        preview, invoice = subscriptions.change_plan(current_actor(), subscription, plan.key, at=at)
        return _change_message(preview, invoice, subscription, withdrew)

    return act(change, "billing.index")


@bp.post("/scheduled-change/cancel")
@tenant_required("billing.manage")
def keep_plan():
    """Drop the scheduled downgrade: the current plan simply renews."""

    def keep():
        subscription = _subscription()
        scheduled = subscription.scheduled_plan_version if subscription else None
        subscriptions.cancel_scheduled_change(current_actor(), subscription)
        return (
            f"You stay on {subscription.plan_version.name}; the change to "
            f"{scheduled.name if scheduled else 'another plan'} is cancelled."
        )

    return act(keep, "billing.index")


@bp.post("/cancel")
@tenant_required("billing.manage")
def cancel():
    """End the subscription at the end of the period (default) or at once."""
    form = CancelForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, "Your form expired. Reload the page and try again.")
        return _index_page(cancel_form=form, status=form_errors_status())

    def cancel_it():
        subscription = subscriptions.cancel(
            current_actor(),
            _subscription(),
            at_period_end=form.at_period_end,
            reason=form.reason.data or None,
            feedback=form.feedback.data or "",
        )
        if subscription.cancel_at_period_end:
            return (
                f"Your subscription will end on {display.day(subscription.current_period_end)}. "
                "Until then everything keeps working, and you can resume it."
            )
        return "Your subscription has ended. No further invoices will be issued."

    return act(cancel_it, "billing.index")


@bp.post("/resume")
@tenant_required("billing.manage")
def resume():
    """Withdraw a pending cancellation before the period ends."""

    def resume_it():
        subscription = subscriptions.resume(current_actor(), _subscription())
        return (
            f"Your {subscription.plan_version.name} subscription continues; it renews on "
            f"{display.day(subscription.current_period_end)}."
        )

    return act(resume_it, "billing.index")


# --- billing emails ----------------------------------------------------------------------


@bp.get("/emails")
@tenant_required("billing.manage")
def emails():
    """Which billing emails the owner and admins get."""
    settings = notices.settings_of(g.tenant.tenant_id)
    form = BillingEmailsForm(formdata=None, data={kind: getattr(settings, kind) for kind in OPTIONAL_BILLING_EMAILS})
    return _emails_page(form)


def _emails_page(form: BillingEmailsForm, status: int = 200):
    return render(
        "billing/emails.html",
        "billing/_emails_form.html",
        status=status,
        form=form,
        recipients=profile_service.billing_recipients(g.tenant),
    )


@bp.post("/emails")
@tenant_required("billing.manage")
def save_emails():
    """Switch billing emails on or off (receipts always go)."""
    form = BillingEmailsForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, "Your form expired. Reload the page and try again.")
        return _emails_page(form, status=form_errors_status())

    def save() -> str:
        notices.update_settings(current_actor(), g.tenant, {kind: form[kind].data for kind in OPTIONAL_BILLING_EMAILS})
        return "Billing email choices saved. Payment receipts are always sent."

    return act(save, "billing.emails")


# --- promotion codes ---------------------------------------------------------------------


def _promotion_page(form: PromotionCodeForm, subscription: Subscription | None, quote=None, status: int = 200):
    discount = discounts.current(subscription)
    return render(
        "billing/promotion_code.html",
        status=status,
        form=form,
        subscription=subscription,
        quote=quote,
        discount=discount,
    )


@bp.route("/promotion-code", methods=["GET", "POST"])
@tenant_required("billing.manage")
def promotion_code():
    """Type a promotion code, see the next invoice's exact new price, then confirm to apply it."""
    subscription = _subscription()
    if request.method == "GET":
        return _promotion_page(PromotionCodeForm(formdata=None), subscription)
    form = PromotionCodeForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, "Your form expired. Reload the page and try again.")
        return _promotion_page(form, subscription, status=form_errors_status())
    live = subscription is not None and subscription.is_live
    try:
        code = discounts.find_code(form.code.data)
        quote = discounts.quote(
            subscription, code.coupon, code, subscriptions.next_invoice_estimate(subscription) if live else None
        )
        if form.confirmed.data not in ("yes", "replace"):
            form.code.data = code.code
            form.confirmed.data = "replace" if quote.replaces is not None else "yes"
            return _promotion_page(form, subscription, quote=quote)
        discounts.apply(current_actor(), subscription, code.coupon, code, replace=form.confirmed.data == "replace")
        commit()
    except ServiceError as error:
        rollback()
        form.code.errors = [error.message]
        form.confirmed.data = ""
        return _promotion_page(form, subscription, status=form_errors_status())
    when = (
        f" Your next invoice, on {display.day(quote.renews_at)}, is {quote.money(quote.after)} instead of "
        f"{quote.money(quote.before)}."
        if quote.renews_at
        else ""
    )
    flash(f"Promotion code {code.code} applied: {discounts.terms(code.coupon)}.{when}", "success")
    return redirect_to("billing.index")


# --- billing details ---------------------------------------------------------------------


def _details_form() -> BillingDetailsForm:
    data = profile_service.data_of(profile_service.profile_of(g.tenant))
    form = BillingDetailsForm(
        formdata=None,
        **{name: getattr(data, name) for name in profile_service.LIMITS},
        country=data.country,
        billing_email=data.billing_email,
        extra_recipients="\n".join(data.extra_recipients),
    )
    for tax_id in data.tax_ids:
        form.tax_ids.append_entry(tax_id)
    return form


def _with_blank_tax_id(form: BillingDetailsForm) -> BillingDetailsForm:
    for _ in range(BLANK_TAX_ID_ROWS):
        form.tax_ids.append_entry()
    return form


@page_view(bp, "/details", "details", tenant_required())
def _details_page(form: BillingDetailsForm | None = None, status: int = 200, fragment: str | None = None):
    """Billing details: who invoices are made out to and sent to, and the tax IDs."""
    return render(
        "billing/details.html",
        fragment,
        status=status,
        form=form or _with_blank_tax_id(_details_form()),
        recipients=profile_service.billing_recipients(g.tenant),
    )


@bp.post("/details")
@tenant_required("billing.manage")
def update_details():
    """Save the billing profile; later invoices carry it (issued ones keep theirs)."""
    form = BillingDetailsForm()

    def save() -> str:
        profile_service.update(current_actor(), g.tenant, form.profile_data())
        return "Billing details saved. Invoices from now on carry them."

    if response := submit(form, save, "billing.details"):
        return response
    if "csrf_token" in form.errors:
        abort(400, "Your form expired. Reload the page and try again.")
    if not form.tax_ids.entries:
        _with_blank_tax_id(form)
    return _details_page(form, status=form_errors_status(), fragment="billing/_details_form.html")


# --- invoices ----------------------------------------------------------------------------


def _status_filter() -> tuple[str | None, str | None]:
    """(status, complaint): an unknown status is ignored, with a message saying so."""
    status = request.args.get("status", "").strip()
    if not status:
        return None, None
    if status not in invoice_service.INVOICE_FILTERS:
        return None, f"There is no invoice status “{status[:40]}”; showing all invoices."
    return status, None


@bp.get("/invoices")
@tenant_required()
def invoices():
    """The tenant's invoices, newest first, by status, 20 a page."""
    status, complaint = _status_filter()
    page = paginate(
        invoice_service.for_tenant(g.tenant, status), request.args.get("page", 1, type=int), INVOICES_PER_PAGE
    )
    return render(
        "billing/invoices.html",
        "billing/_invoices.html",
        invoices=page,
        status_filter=status,
        complaint=complaint,
        statuses=invoice_service.INVOICE_FILTERS,
        failed_invoices=invoice_service.failed_among(page.items),
    )


@bp.get("/invoices.csv")
@tenant_required()
def invoices_csv():
    """The (filtered) invoice list as a spreadsheet."""
    status, complaint = _status_filter()
    if complaint:
        abort(
            400,
            complaint.replace("; showing all invoices.", f". Use one of {', '.join(invoice_service.INVOICE_FILTERS)}."),
        )
    rows = db.session.execute(invoice_service.for_tenant(g.tenant, status)).scalars().all()
    response = make_response(invoice_service.to_csv(rows))
    response.mimetype = "text/csv"
    response.charset = "utf-8"
    name = f"invoices-{g.tenant.tenant_id}{'-' + status if status else ''}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.get("/invoices/<invoice_id>")
@tenant_required()
def invoice(invoice_id: str):
    """One invoice as issued: seller, buyer, lines, totals, payment."""
    invoice = invoice_service.get_for_tenant(g.tenant, invoice_id)
    return render(
        "billing/invoice.html",
        invoice=invoice,
        payment_failed=bool(invoice_service.failed_among([invoice])),
        seller=seller_from_config(),
        back=url_for("billing.invoices"),
    )


@bp.get("/invoices/<invoice_id>.pdf")
@tenant_required()
def invoice_pdf(invoice_id: str):
    """The invoice as a PDF download named after its number."""
    return pdf_download(invoice_service.get_for_tenant(g.tenant, invoice_id))
