"""Suspending a tenant and activating it again (seed 000: suspend/activate).

Its own module, below billing, because billing suspends for non-payment (dunning) and lifts
that suspension when the invoice is settled; ``portal.tenants.services`` re-exports both.
"""

from portal import audit
from portal.access import Actor
from portal.errors import Conflict, ValidationFailed
from portal.mail import send_email
from portal.models import SUSPENSION_REASONS, Tenant, utcnow


def suspend(actor: Actor, tenant: Tenant, reason: str, note: str = "", notify: bool = False) -> Tenant:
    if reason not in SUSPENSION_REASONS:
        raise ValidationFailed(f"reason must be one of: {', '.join(SUSPENSION_REASONS)}", field="reason")
    if tenant.status == "cancelled":
        raise Conflict("A cancelled tenant cannot be suspended.")
    if tenant.status == "suspended":
        raise Conflict(f"Tenant {tenant.tenant_id} is already suspended.")
    tenant.status = "suspended"
    tenant.suspension_reason = reason
    tenant.suspension_note = note.strip() or None
    tenant.suspended_at = utcnow()
    audit.record(actor, "tenant.suspended", tenant, "tenant", tenant.tenant_id, reason=reason, note=note, notify=notify)
    if notify and tenant.contact_email:
        send_email(
            tenant.contact_email,
            f"Your account {tenant.company_name} has been suspended",
            "tenant_suspended",
            tenant=tenant,
            tenant_obj=tenant,
        )
    return tenant


def activate(actor: Actor, tenant: Tenant, notify: bool = False, note: str = "") -> Tenant:
    if tenant.status != "suspended":
        raise Conflict(f"Tenant {tenant.tenant_id} is not suspended.")
    tenant.status = "active"
    previous = tenant.suspension_reason
    tenant.suspension_reason = None
    tenant.suspension_note = None
    tenant.suspended_at = None
    audit.record(actor, "tenant.activated", tenant, "tenant", tenant.tenant_id, previous_reason=previous, note=note)
    if notify and tenant.contact_email:
        send_email(
            tenant.contact_email,
            f"Your account {tenant.company_name} is active again",
            "tenant_activated",
            tenant=tenant,
            tenant_obj=tenant,
            note=note.strip(),
        )
    return tenant
