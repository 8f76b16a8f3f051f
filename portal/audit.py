"""The audit log: every change records who did what to which object, when, from where.

The changes a tenant's webhooks announce are audited changes, so each is handed on to the
webhook outbox here, in the same transaction (``portal.webhooks.catalog.FROM_AUDIT``)."""

from sqlalchemy import insert

from portal.access import Actor
from portal.extensions import db
from portal.infra import bulk
from portal.models import AuditEvent, Tenant, utcnow
from portal.webhooks import outbox


def _values(
    actor: Actor, action: str, tenant: Tenant | None, target_type: str | None, target_id: str | None, details: dict
) -> dict:
    return {
        "tenant_id": tenant.tenant_id if tenant else None,
        "actor_user_id": actor.user.id if actor.user else None,
        "actor_label": actor.name,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": details,
        "ip": actor.ip,
    }


def record(
    actor: Actor,
    action: str,
    tenant: Tenant | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    **details,
) -> AuditEvent:
    event = AuditEvent(**_values(actor, action, tenant, target_type, target_id, details))
    db.session.add(event)
    # The change's webhook event, if it has one, in the same transaction as the change.
    outbox.emit_for_audit(action, tenant.tenant_id if tenant else None, target_type, target_id, details)
    return event


def record_now(
    actor: Actor,
    action: str,
    tenant: Tenant | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    **details,
) -> None:
    """``record`` as one INSERT at once, for hot paths (a billing run writes one per invoice)
    where the unit of work's bookkeeping would cost more than the row."""
    row = {**_values(actor, action, tenant, target_type, target_id, details), "created_at": utcnow()}
    if not bulk.add(AuditEvent.__table__, row):  # a billing run's batch writes them all at once
        db.session.connection().execute(_INSERT, row)
    outbox.emit_for_audit(action, tenant.tenant_id if tenant else None, target_type, target_id, details)


# Built once, as its cache key is; inline: no RETURNING of the new id, which nobody reads.
_INSERT = insert(AuditEvent.__table__).inline()
