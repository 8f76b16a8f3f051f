"""The one place that talks to Stripe: every SDK call of the portal goes through here.

``STRIPE_API_BASE`` points the SDK at an emulator (localstripe in development and tests).
Callers get Stripe's objects as plain dicts or one of the errors below, never an SDK
exception: ``PaymentDeclined`` is the customer's card saying no, ``GatewayUnavailable`` is
worth retrying, ``GatewayError`` is anything else Stripe refused.
"""

import json
from urllib.parse import urlsplit

import stripe
from flask import current_app


class GatewayError(Exception):
    """Stripe refused the request (bad parameters, unknown object, ...)."""

    def __init__(self, message: str, payment_intent_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.payment_intent_id = payment_intent_id


class PaymentDeclined(GatewayError):
    """The card was declined; ``message`` is Stripe's reason, fit to show the customer."""


class GatewayUnavailable(GatewayError):
    """Stripe could not be reached or failed on its side: try again later."""


class InvalidWebhook(Exception):
    """Bad signature, stale timestamp or a body that is not a Stripe event."""


def configured() -> bool:
    """Card payment is available: a secret and a publishable key are set."""
    config = current_app.config
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_PUBLISHABLE_KEY"))


def test_mode() -> bool:
    """Test keys or an emulator: no real money moves (the portal shows a badge)."""
    config = current_app.config
    return configured() and (config["STRIPE_SECRET_KEY"].startswith("sk_test_") or bool(config["STRIPE_API_BASE"]))


def browser_origins() -> dict[str, set[str]]:
    """What the Content-Security-Policy of a page running Stripe.js must also allow."""
    config = current_app.config

    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    js = origin(config["STRIPE_JS_URL"])
    api = origin(config["STRIPE_API_BASE"]) if config["STRIPE_API_BASE"] else "https://api.stripe.com"
    frames = {js, "https://hooks.stripe.com"} if "stripe.com" in js else {js}
    return {"script-src": {js}, "connect-src": {api, js}, "frame-src": frames}


def _client() -> stripe.StripeClient:
    ext = current_app.extensions
    if "portal_stripe" not in ext:
        config = current_app.config
        base = config["STRIPE_API_BASE"]
        ext["portal_stripe"] = stripe.StripeClient(
            config["STRIPE_SECRET_KEY"],
            base_addresses={"api": base} if base else None,
            # The SDK retries network failures itself, with the same idempotency key.
            max_network_retries=2,
        )
    return ext["portal_stripe"]


def _call(operation, *args, **kwargs):
    if not configured():
        raise GatewayError("Card payment is not available: Stripe is not configured.")
    try:
        result = operation(*args, **kwargs)
        # Plain dicts from here on: SDK objects are not dicts (no .get) and must not leak out.
        return result.to_dict() if hasattr(result, "to_dict") else result
    except stripe.CardError as error:
        intent = (error.error.payment_intent or {}) if error.error else {}
        raise PaymentDeclined(
            error.user_message or "Your card was declined.", payment_intent_id=intent.get("id")
        ) from None
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        raise GatewayUnavailable(f"Stripe is unreachable: {error.user_message or error}") from None
    except stripe.StripeError as error:
        status = error.http_status or 0
        if status == 402:  # an emulator's decline has no card error type
            raise PaymentDeclined(error.user_message or "Your card was declined.") from None
        if status >= 500 or status == 0:
            raise GatewayUnavailable(f"Stripe failed: {error.user_message or error}") from None
        raise GatewayError(error.user_message or str(error)) from None


# --- customers and saved cards ------------------------------------------------------------


def create_customer(tenant_id: str, name: str, email: str, idempotency_key: str):
    return _call(
        _client().v1.customers.create,
        params={"name": name, "email": email, "metadata": {"tenant_id": tenant_id}},
        options={"idempotency_key": idempotency_key},
    )


def retrieve_customer(customer_id: str):
    return _call(_client().v1.customers.retrieve, customer_id)


def set_default_payment_method(customer_id: str, payment_method_id: str | None):
    return _call(
        _client().v1.customers.update,
        customer_id,
        params={"invoice_settings": {"default_payment_method": payment_method_id or ""}},
    )


def create_setup_intent(customer_id: str, tenant_id: str):
    return _call(
        _client().v1.setup_intents.create,
        params={
            "customer": customer_id,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": {"tenant_id": tenant_id},
        },
    )


def retrieve_setup_intent(setup_intent_id: str):
    return _call(_client().v1.setup_intents.retrieve, setup_intent_id)


def retrieve_payment_method(payment_method_id: str):
    return _call(_client().v1.payment_methods.retrieve, payment_method_id)


def attach_payment_method(payment_method_id: str, customer_id: str):
    return _call(_client().v1.payment_methods.attach, payment_method_id, params={"customer": customer_id})


def detach_payment_method(payment_method_id: str):
    return _call(_client().v1.payment_methods.detach, payment_method_id)


# --- payments -------------------------------------------------------------------------------


def create_payment_intent(
    *,
    amount: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    metadata: dict,
    off_session: bool,
    idempotency_key: str,
):
    """Create and confirm at once with the saved card. Off-session (a billing run) the bank may
    still decline; on-session it may ask for 3-D Secure (status ``requires_action``), which
    Stripe.js then handles in the customer's browser."""
    params = {
        "amount": amount,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,
        "metadata": metadata,
        "confirm": True,
        "payment_method_types": ["card"],
    }
    if off_session:
        params["off_session"] = True
    return _call(_client().v1.payment_intents.create, params=params, options={"idempotency_key": idempotency_key})


def cancel_payment_intent(payment_intent_id: str):
    return _call(_client().v1.payment_intents.cancel, payment_intent_id)


def retrieve_payment_intent(payment_intent_id: str):
    return _call(_client().v1.payment_intents.retrieve, payment_intent_id)


def retrieve_charge(charge_id: str):
    return _call(_client().v1.charges.retrieve, charge_id)


def create_refund(payment_intent_id: str, amount: int | None = None):
    params = {"payment_intent": payment_intent_id}
    if amount:
        params["amount"] = amount
    return _call(_client().v1.refunds.create, params=params)


# --- webhooks -------------------------------------------------------------------------------

TOLERANCE_SECONDS = 300


def verify_webhook(payload: bytes, signature_header: str | None) -> dict:
    """The event in ``payload`` once its signature checks out (any of several ``v1`` values,
    timestamp within 300 s); raises InvalidWebhook otherwise."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise InvalidWebhook("Webhooks are not configured (STRIPE_WEBHOOK_SECRET is unset).")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature_header or "", secret, TOLERANCE_SECONDS)
        event = json.loads(text)
    except UnicodeDecodeError:
        raise InvalidWebhook("The body is not UTF-8.") from None
    except stripe.SignatureVerificationError as error:
        raise InvalidWebhook(str(error.user_message or error)) from None
    except ValueError:
        raise InvalidWebhook("The body is not JSON.") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and event["type"]
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise InvalidWebhook("The body is not a Stripe event (id, type, data.object).")
    if len(event["id"]) > 255 or len(event["type"]) > 100:
        raise InvalidWebhook("The event id or type is too long.")
    return event
