"""The audit log: every change records who did what to which object, when, from where."""

from portal.access import Actor
from portal.extensions import db
from portal.models import AuditEvent, Tenant


def record(
    actor: Actor,
    action: str,
    tenant: Tenant | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    **details,
) -> AuditEvent:
    event = AuditEvent(
        tenant_id=tenant.tenant_id if tenant else None,
        actor_user_id=actor.user.id if actor.user else None,
        actor_label=actor.name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
        ip=actor.ip,
    )
    db.session.add(event)
    return event
