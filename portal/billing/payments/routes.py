"""Stripe's webhook endpoint (its own blueprint, /webhooks), and the billing blueprint's pages
for the saved card and paying an invoice (DESIGN §6, §7).

Card numbers never reach us: Stripe.js Elements sends them to Stripe, which confirms a
SetupIntent (saving a card) or the PaymentIntent's 3-D Secure step; we only ever read the
outcome back from Stripe, never from the browser.
"""

from flask import Blueprint, abort, current_app, flash, g, jsonify, request, url_for

from portal.access import current_actor, tenant_required
from portal.billing import invoices as invoice_service
from portal.billing.money import format_money
from portal.billing.payments import events, gateway, services
from portal.billing.routes import bp
from portal.errors import ServiceError
from portal.extensions import csrf
from portal.infra.transactions import autocommit_statements, commit, rollback
from portal.web import CSP, act, redirect_to, render

webhooks_bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.app_context_processor
def payment_helpers():
    return {
        "stripe_available": gateway.configured,
        "stripe_test_mode": gateway.test_mode,
        "payment_state": _payment_state,
        "money": format_money,
        "needing_payment": _needing_payment,
    }


def _needing_payment() -> list:
    """For the banner every page of a tenant shows while an invoice is overdue or failed."""
    tenant = g.get("tenant")
    return invoice_service.needing_payment(tenant) if tenant is not None else []


def _payment_state(invoice) -> dict:
    attempt = services.latest_attempt(invoice)
    return {
        "attempt": attempt,
        "waiting": invoice.status == "open"
        and attempt is not None
        and attempt.status in ("pending", "processing", "requires_action"),
    }


# --- the webhook ------------------------------------------------------------------------------


@webhooks_bp.post("/stripe")
@csrf.exempt
def stripe_webhook():
    """Verify, store, wake the drain, answer: the processing happens in the worker.

    Kept lean, as Stripe times its deliveries: no user or tenant is loaded (nobody signs in),
    the event is one INSERT ... ON CONFLICT DO NOTHING, atomic on its own, so it runs without
    a transaction around it (one round trip, not BEGIN, INSERT and COMMIT), and waking the
    worker is one Redis SET NX (an enqueue only when no drain is queued)."""
    try:
        event = gateway.verify_webhook(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    except gateway.InvalidWebhook as error:
        return jsonify(error=str(error)), 400
    autocommit_statements()
    if not events.store(event):
        rollback()
        return jsonify(received=True, duplicate=True), 200
    events.wake()
    commit()
    return jsonify(received=True, duplicate=False), 200


# --- the saved card ---------------------------------------------------------------------------


def _stripe_page(template: str, **context):
    """A page running Stripe.js: its CSP also allows Stripe's script, API and frames."""
    response = render(template, **context)
    extra = gateway.browser_origins()
    directives = []
    for directive in CSP.split(";"):
        name = directive.strip().split(" ", 1)[0]
        directives.append(" ".join([directive.strip(), *sorted(extra.pop(name, ()))]))
    directives += [f"{name} {' '.join(sorted(sources))}" for name, sources in extra.items()]
    response.headers["Content-Security-Policy"] = "; ".join(directives)
    return response


def _require_stripe() -> None:
    if not gateway.configured():
        abort(409, "Card payment is not available on this portal.")


@bp.get("/payment-method")
@tenant_required()
def payment_method():
    """The card on file (brand, last 4, expiry), to add, replace or remove."""
    return render("payments/payment_method.html")


@bp.post("/payment-method/setup")
@tenant_required("billing.manage")
def start_setup():
    """A SetupIntent for a new card; the card form confirms it with Stripe.js."""
    _require_stripe()
    try:
        intent = services.start_card_setup(g.tenant)
        commit()  # the new Stripe customer id is kept even if the card is never entered
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("billing.payment_method")
    except gateway.GatewayError as error:
        rollback()
        flash(f"Stripe did not respond as expected: {error.message}", "error")
        return redirect_to("billing.payment_method")
    return redirect_to("billing.card_form", setup_intent=intent["id"])


@bp.get("/payment-method/new")
@tenant_required("billing.manage")
def card_form():
    """The Stripe Elements card form for a SetupIntent of this tenant."""
    _require_stripe()
    try:
        intent = services.setup_intent_for(g.tenant, request.args.get("setup_intent", ""))
    except (ServiceError, gateway.GatewayError) as error:
        flash(getattr(error, "message", str(error)) + " Start again.", "error")
        return redirect_to("billing.payment_method")
    if intent.get("status") == "succeeded":
        return _save(intent)
    return _stripe_page(
        "payments/card_form.html",
        client_secret=intent["client_secret"],
        setup_intent_id=intent["id"],
        publishable_key=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripe_js_url=current_app.config["STRIPE_JS_URL"],
    )


def _save(intent):
    def save() -> str:
        tenant = services.save_card(current_actor(), g.tenant, intent)
        return (
            f"Card saved: {tenant.card_brand} ending {tenant.card_last4}, "
            f"expires {tenant.card_exp_month:02d}/{tenant.card_exp_year}."
        )

    return _act_on_stripe(save, "billing.payment_method")


def _act_on_stripe(action, endpoint: str, **values):
    """portal.web.act, plus Stripe's complaints shown as a message rather than a 500."""

    def guarded() -> str:
        try:
            return action()
        except gateway.PaymentDeclined as error:
            raise ServiceError(error.message) from None
        except gateway.GatewayError as error:
            raise ServiceError(f"Stripe did not respond as expected: {error.message}") from None

    return act(guarded, endpoint, **values)


@bp.post("/payment-method/confirm")
@tenant_required("billing.manage")
def confirm_card():
    """Stripe.js confirmed the SetupIntent: read it back from Stripe and keep the card."""
    _require_stripe()
    try:
        intent = services.setup_intent_for(g.tenant, request.form.get("setup_intent", ""))
    except (ServiceError, gateway.GatewayError) as error:
        flash(getattr(error, "message", str(error)), "error")
        return redirect_to("billing.payment_method")
    return _save(intent)


@bp.post("/payment-method/remove")
@tenant_required("billing.manage")
def remove_card():
    """Forget the card; open invoices then wait for a new one (or another way to pay)."""
    _require_stripe()

    def remove() -> str:
        services.remove_card(current_actor(), g.tenant)
        return "Card removed. Automatic payments stop until you add a new card."

    return _act_on_stripe(remove, "billing.payment_method")


# --- paying an invoice ------------------------------------------------------------------------


@bp.post("/invoices/<invoice_id>/pay")
@tenant_required("billing.manage")
def pay(invoice_id: str):
    """Pay now with the card on file; 3-D Secure, when the bank asks, follows in the browser."""
    _require_stripe()
    invoice = invoice_service.get_for_tenant(g.tenant, invoice_id)
    try:
        attempt = services.pay_now(invoice)
        commit()
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("billing.invoice", invoice_id=invoice_id)
    except gateway.GatewayError as error:
        rollback()
        flash(f"Stripe did not respond as expected: {error.message}", "error")
        return redirect_to("billing.invoice", invoice_id=invoice_id)
    if attempt.status == "requires_action":
        return redirect_to("billing.authenticate", invoice_id=invoice_id, attempt=attempt.number)
    if attempt.status == "failed":
        flash(f"The payment failed: {attempt.failure_message}", "error")
    else:
        flash("Payment sent. The invoice shows as paid as soon as Stripe confirms it.", "success")
    return redirect_to("billing.invoice", invoice_id=invoice_id)


@bp.get("/invoices/<invoice_id>/authenticate")
@tenant_required("billing.manage")
def authenticate(invoice_id: str):
    """The bank's 3-D Secure step, run by Stripe.js; the outcome comes back by webhook."""
    _require_stripe()
    invoice = invoice_service.get_for_tenant(g.tenant, invoice_id)
    attempt = services.attempt_for(invoice, request.args.get("attempt", 0, type=int) or 0)
    if attempt is None or attempt.status != "requires_action" or not attempt.payment_intent_id:
        return redirect_to("billing.invoice", invoice_id=invoice_id)
    intent = gateway.retrieve_payment_intent(attempt.payment_intent_id)
    return _stripe_page(
        "payments/authenticate.html",
        invoice=invoice,
        client_secret=intent["client_secret"],
        publishable_key=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripe_js_url=current_app.config["STRIPE_JS_URL"],
        return_url=url_for("billing.authenticated", invoice_id=invoice.id, attempt=attempt.number),
        invoice_url=url_for("billing.invoice", invoice_id=invoice.id),
    )


@bp.get("/invoices/<invoice_id>/authenticated")
@tenant_required("billing.manage")
def authenticated(invoice_id: str):
    """Back from the 3-D Secure step: read the PaymentIntent back from Stripe (never the
    browser's word). A failed authentication emits no webhook of its own, so without this the
    invoice would wait for the bank for ever; a completed one shows as sent until the webhook."""
    _require_stripe()
    invoice = invoice_service.get_for_tenant(g.tenant, invoice_id)
    attempt = services.attempt_for(invoice, request.args.get("attempt", 0, type=int) or 0)
    if attempt is not None and attempt.status == "requires_action" and attempt.payment_intent_id:
        try:
            services.apply_payment_intent(gateway.retrieve_payment_intent(attempt.payment_intent_id))
            commit()
        except (ServiceError, gateway.GatewayError):
            rollback()  # the webhook still brings the outcome; the page waits for it
    return redirect_to("billing.invoice", invoice_id=invoice_id)


@bp.get("/invoices/<invoice_id>/payment")
@tenant_required()
def payment_status(invoice_id: str):
    """The invoice's payment block; htmx polls it until Stripe's answer has landed (286 stops it)."""
    invoice = invoice_service.get_for_tenant(g.tenant, invoice_id)
    response = render("payments/_invoice_payment.html", invoice=invoice)
    if not _payment_state(invoice)["waiting"]:
        response.status_code = 286
    if invoice.status != "open" and request.headers.get("HX-Request"):
        # Paid (or voided) meanwhile: the status, the amounts and "Paid on" live outside this
        # block, so the whole invoice page is reloaded rather than showing an empty block.
        response.headers["HX-Refresh"] = "true"
    return response
