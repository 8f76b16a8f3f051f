"""The activity log in words: "Cancellation scheduled for the end of the period" rather than
``subscription.cancel_scheduled``, "Company name: Acme → Acme Ltd" rather than a dict, and
money as money. The stored entries keep their codes (the API and exports read those)."""

from dataclasses import dataclass
from datetime import datetime

from portal.billing.money import format_money
from portal.models import AuditEvent
from portal.timezones import format_local

ACTIONS = {
    "api_key.created": "API key created",
    "api_key.revoked": "API key revoked",
    "billing_profile.updated": "Billing details changed",
    "credential.added": "Credential added",
    "credential.deleted": "Credential deleted",
    "credential.renamed": "Credential renamed",
    "credential.secret_used": "Credential used by the platform",
    "credential.validated": "Credential re-validated",
    "coupon.created": "Coupon created",
    "coupon.deactivated": "Coupon deactivated",
    "credit.deducted": "Credit deducted",
    "credit.granted": "Credit granted",
    "discount.applied": "Discount applied",
    "discount.removed": "Discount removed",
    "invitation.created": "Invitation sent",
    "invitation.resent": "Invitation sent again",
    "invitation.revoked": "Invitation revoked",
    "billing.emails_updated": "Billing emails changed",
    "invoice.issued": "Invoice issued",
    "invoice.marked_paid": "Invoice marked paid",
    "invoice.marked_uncollectible": "Invoice written off as uncollectible",
    "invoice.payment_failed": "Invoice payment failed",
    "invoice.refunded": "Invoice refunded",
    "invoice.voided": "Invoice voided",
    "member.joined": "Member joined",
    "member.left": "Member left",
    "member.removed": "Member removed",
    "member.role_changed": "Member's role changed",
    "ownership.transferred": "Ownership transferred",
    "payment_method.removed": "Card removed",
    "payment_method.saved": "Card saved",
    "promotion_code.created": "Promotion code created",
    "promotion_code.deactivated": "Promotion code deactivated",
    "subscription.cancel_scheduled": "Cancellation scheduled for the end of the period",
    "subscription.canceled": "Subscription cancelled",
    "subscription.downgrade": "Plan downgraded",
    "subscription.downgrade_scheduled": "Downgrade scheduled for the end of the period",
    "subscription.downgraded": "Plan downgraded",
    "subscription.past_due": "Payment overdue",
    "subscription.recovered": "Subscription active again after payment",
    "subscription.resumed": "Subscription resumed",
    "subscription.scheduled_change_cancelled": "Scheduled plan change withdrawn",
    "subscription.started": "Subscription started",
    "subscription.unpaid": "Subscription unpaid",
    "subscription.upgrade": "Plan upgraded",
    "subscription.upgrade_scheduled": "Upgrade scheduled for the end of the period",
    "subscription.upgraded": "Plan upgraded",
    "tenant.activated": "Account reactivated",
    "tenant.cancelled": "Account deleted",
    "tenant.created": "Account created",
    "tenant.external_id_changed": "External ID changed",
    "tenant.suspended": "Account suspended",
    "tenant.two_factor_required_changed": "Two-factor requirement changed",
    "tenant.updated": "Company profile changed",
    "user.password_reset": "Password reset",
    "user.sign_in_held": "Sign-in paused after wrong passwords",
    "user.timezone_changed": "Timezone changed",
}
# Detail keys whose integer values are minor units of the entry's currency.
MONEY_KEYS = frozenset(
    {
        "amount",
        "total",
        "subtotal",
        "charge",
        "credit",
        "credits_applied",
        "discount",
        "amount_due",
        "amount_paid",
        "amount_refunded",
        "balance",
        "tax",
    }
)
LABELS = {
    "old_plan": "From plan",
    "new_plan": "To plan",
    "effective_at": "Takes effect",
    "expires_at": "Expires",
    "last4": "Card ending",
    "number": "Invoice",
    "invoice": "Invoice",
    "ip": "IP address",
    "id": "ID",
    "api_key": "API key",
}


@dataclass(frozen=True)
class Described:
    title: str
    details: list[tuple[str, str]]


def action_title(action: str) -> str:
    """The entry's name in words; an action without one is still readable ("Meter: updated")."""
    if action in ACTIONS:
        return ACTIONS[action]
    subject, _, verb = action.partition(".")
    return f"{_words(subject).capitalize()}: {_words(verb)}" if verb else _words(subject).capitalize()


def describe(event: AuditEvent) -> Described:
    details = dict(event.details or {})
    currency = details.pop("currency", None)
    shown = []
    for key, value in details.items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        shown.append((_label(key), _value(key, value, currency)))
    return Described(action_title(event.action), shown)


def _words(code: str) -> str:
    return code.replace("_", " ").replace(".", " ").strip()


def _label(key: str) -> str:
    return LABELS.get(key) or _words(key).capitalize()


def _value(key: str, value, currency: str | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in MONEY_KEYS and isinstance(value, int) and currency:
        return format_money(value, currency)
    if isinstance(value, dict):
        if set(value) == {"from", "to"}:
            return f"{_value(key, value['from'], currency)} → {_value(key, value['to'], currency)}"
        parts = [f"{_label(k)}: {_value(k, v, currency)}" for k, v in value.items()]
        return "; ".join(parts) if parts else "none"
    if isinstance(value, list | tuple):
        return ", ".join(_value(key, item, currency) for item in value) or "none"
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            return format_local(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return str(value)
