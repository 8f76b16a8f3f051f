"""The events a webhook endpoint can subscribe to, and the audited actions that cause them.

Most events are the audit entry of the change that caused them, seen from outside: the audit
log already names every change in the same transaction, so ``portal.audit`` hands those listed
in ``FROM_AUDIT`` to the outbox and no service can change state and forget its event. The
others are emitted where they happen (renewals, quota notices, pipelines, tests)."""

EVENT_TYPES: dict[str, str] = {
    "customer.created": "A tenant was onboarded or signed up (operator endpoints only: the tenant has none yet).",
    "customer.suspended": "The tenant was suspended (by the operator or for non-payment).",
    "customer.activated": "The tenant was reactivated.",
    "subscription.created": "A subscription started (trial or paid).",
    "subscription.upgraded": "The plan was upgraded (at once or on its effective date).",
    "subscription.downgrade_scheduled": "A downgrade was scheduled for the end of the period.",
    "subscription.downgraded": "The plan was downgraded (at the period's end, or at once during a trial).",
    "subscription.renewed": "A new billing period started.",
    "subscription.past_due": "A payment failed; the subscription is past due while retries run.",
    "subscription.unpaid": "The last payment retry failed; the subscription is unpaid.",
    "subscription.cancelled": "The subscription ended.",
    "invoice.created": "An invoice was issued.",
    "invoice.paid": "An invoice was paid (card, bank transfer or credit).",
    "invoice.payment_failed": "A payment of an invoice failed.",
    "invoice.voided": "An invoice was voided.",
    "credit.granted": "Credit was granted to the tenant.",
    "quota.approaching_limit": "A feature's usage reached 90 % of its quota this period.",
    "quota.exceeded": "A feature's usage reached 100 % of its quota this period.",
    "api_key.created": "An API key was created (its prefix, never the key).",
    "api_key.revoked": "An API key was revoked.",
    "member.joined": "A person joined the team.",
    "member.removed": "A person left or was removed from the team.",
    "pipeline.completed": "A pipeline run completed (reported by the operator).",
    "pipeline.failed": "A pipeline run failed (reported by the operator).",
    "webhook.test": "A test event sent from the Webhooks page or the API.",
}

PIPELINE_EVENT_TYPES = ("pipeline.completed", "pipeline.failed")

# Audit action -> event type. Several actions may mean one event to a receiver.
FROM_AUDIT: dict[str, str] = {
    "tenant.created": "customer.created",
    "tenant.suspended": "customer.suspended",
    "tenant.activated": "customer.activated",
    "subscription.started": "subscription.created",
    "subscription.upgrade": "subscription.upgraded",
    "subscription.upgraded": "subscription.upgraded",
    "subscription.downgrade": "subscription.downgraded",
    "subscription.downgraded": "subscription.downgraded",
    "subscription.downgrade_scheduled": "subscription.downgrade_scheduled",
    "subscription.past_due": "subscription.past_due",
    "subscription.unpaid": "subscription.unpaid",
    "subscription.canceled": "subscription.cancelled",
    "invoice.issued": "invoice.created",
    "invoice.paid": "invoice.paid",
    "invoice.marked_paid": "invoice.paid",
    "invoice.payment_failed": "invoice.payment_failed",
    "invoice.voided": "invoice.voided",
    "credit.granted": "credit.granted",
    "api_key.created": "api_key.created",
    "api_key.revoked": "api_key.revoked",
    "member.joined": "member.joined",
    "member.removed": "member.removed",
    "member.left": "member.removed",
}

assert set(FROM_AUDIT.values()) <= set(EVENT_TYPES)
