"""All models, importable from one place (Alembic autogenerate needs them loaded)."""

from portal.models.api_key import ADMIN_SCOPE, API_SCOPES, INERT_SCOPES, ApiKey, OperatorToken
from portal.models.audit import AuditEvent
from portal.models.base import utcnow
from portal.models.billing import (
    BILLABLE_STATUSES,
    CANCELLATION_REASONS,
    INVOICE_STATUSES,
    TAX_ID_TYPES,
    BillingProfile,
    BillingRun,
    BillingRunShard,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    Plan,
    PlanVersion,
    Subscription,
    TaxRate,
)
from portal.models.billing_emails import (
    BILLING_EMAIL_KINDS,
    OPTIONAL_BILLING_EMAILS,
    BillingEmailSettings,
    BillingNotice,
    EmailAttachment,
)
from portal.models.credential import CREDENTIAL_TYPES, PROVIDERS, Credential
from portal.models.credits import CREDIT_ENTRY_KINDS, CreditEntry, CreditGrant
from portal.models.discounts import COUPON_DURATIONS, DISCOUNT_STATUSES, Coupon, Discount, PromotionCode
from portal.models.email import EmailMessage
from portal.models.invitation import Invitation
from portal.models.payments import PAYMENT_ATTEMPT_STATUSES, STRIPE_EVENT_STATUSES, PaymentAttempt, StripeEvent
from portal.models.tenant import SUSPENSION_REASONS, Tenant
from portal.models.throttle import SignInThrottle
from portal.models.two_factor import Passkey, RecoveryCode, UserTwoFactor, has_second_factor
from portal.models.usage import (
    AGGREGATIONS,
    Meter,
    QuotaNotice,
    UsageEvent,
    UsageEventKey,
    UsageRollup,
    is_usage_partition,
)
from portal.models.user import INVITABLE_ROLES, ROLES, EmailChange, Membership, PasswordReset, User, UserSession
from portal.models.webhooks import DELIVERY_STATES, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "BILLING_EMAIL_KINDS",
    "OPTIONAL_BILLING_EMAILS",
    "BillingEmailSettings",
    "BillingNotice",
    "EmailAttachment",
    "COUPON_DURATIONS",
    "DISCOUNT_STATUSES",
    "Coupon",
    "Discount",
    "PromotionCode",
    "DELIVERY_STATES",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "AGGREGATIONS",
    "Meter",
    "QuotaNotice",
    "UsageEvent",
    "UsageEventKey",
    "is_usage_partition",
    "UsageRollup",
    "ADMIN_SCOPE",
    "API_SCOPES",
    "INERT_SCOPES",
    "ApiKey",
    "AuditEvent",
    "BILLABLE_STATUSES",
    "BillingProfile",
    "BillingRun",
    "TAX_ID_TYPES",
    "TaxRate",
    "BillingRunShard",
    "CANCELLATION_REASONS",
    "CREDENTIAL_TYPES",
    "CREDIT_ENTRY_KINDS",
    "Credential",
    "CreditEntry",
    "CreditGrant",
    "EmailChange",
    "EmailMessage",
    "INVITABLE_ROLES",
    "INVOICE_STATUSES",
    "Invoice",
    "InvoiceCounter",
    "InvoiceLine",
    "Invitation",
    "Membership",
    "OperatorToken",
    "Passkey",
    "PasswordReset",
    "PAYMENT_ATTEMPT_STATUSES",
    "PaymentAttempt",
    "Plan",
    "PlanVersion",
    "PROVIDERS",
    "RecoveryCode",
    "ROLES",
    "SUSPENSION_REASONS",
    "STRIPE_EVENT_STATUSES",
    "StripeEvent",
    "SignInThrottle",
    "Subscription",
    "Tenant",
    "User",
    "UserSession",
    "UserTwoFactor",
    "has_second_factor",
    "utcnow",
]
