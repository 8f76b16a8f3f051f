"""Tenant lifecycle: create, edit profile, suspend, activate, cancel."""

import re
from datetime import datetime

from slugify import slugify
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.access import Actor
from portal.auth.services import create_user, end_all_sessions
from portal.billing import plans, subscriptions
from portal.errors import Conflict, DuplicateTenantId, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import savepoint
from portal.models import Invitation, Membership, Tenant, User, has_second_factor, utcnow

# Suspend and activate live below billing (dunning suspends, a settled invoice lifts it) and are
# re-exported here with the rest of the lifecycle.
from portal.tenants.suspension import activate as activate
from portal.tenants.suspension import suspend as suspend

# \Z, not $: "$" also matches before a trailing newline, which would let "acme\n" in.
TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{3,50}\Z")
TENANT_ID_RULE = "tenant_id must be alphanumeric with underscores, 3-50 characters"
METADATA_MAX_KEYS = 50
# The operator's own id for a customer (seed 002's "bring your own customer id"): what their
# systems already call it, so room for UUIDs, "cust_123", "auth0|abc", e-mail-like ids.
EXTERNAL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@|+-]{0,99}\Z")
EXTERNAL_ID_RULE = (
    "external_id must be 1-100 characters: letters, digits and _ . : @ | + -, starting with a letter or digit"
)


def suggest_tenant_id(company_name: str) -> str:
    """A free, valid, readable slug from a company name ("ACME, Inc." -> "acme_inc", "acme_inc_2";
    "Müller & Söhne" -> "muller_sohne": letters are transliterated, not dropped)."""
    ascii_name = slugify(company_name, separator="_")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name).strip("_")[:50].rstrip("_")
    if not slug:
        return ""
    if len(slug) < 3:
        slug = f"{slug}_co"
    # Numbered alternatives keep within 50 characters: "acme_inc_2" ... "acme_inc_99".
    for candidate in [slug] + [f"{slug[:47].rstrip('_')}_{n}" for n in range(2, 100)]:
        if not tenant_id_taken(candidate):
            return candidate
    return ""


def validate_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID_PATTERN.match(tenant_id or ""):
        raise ValidationFailed(TENANT_ID_RULE, field="tenant_id")
    return tenant_id


def tenant_id_taken(tenant_id: str) -> bool:
    # Case-insensitively: "Acme" and "acme" side by side would be a phishing gift. Another
    # tenant's external id is taken too: events and checks name a tenant by either.
    return (
        db.session.execute(
            select(Tenant.tenant_id).where(
                or_(func.lower(Tenant.tenant_id) == tenant_id.lower(), Tenant.external_id == tenant_id)
            )
        ).first()
        is not None
    )


def validate_external_id(external_id: str) -> str:
    if not isinstance(external_id, str) or not EXTERNAL_ID_PATTERN.match(external_id):
        raise ValidationFailed(EXTERNAL_ID_RULE, field="external_id")
    return external_id


def _check_external_id_free(external_id: str, tenant_id: str) -> None:
    """Unique, and never another tenant's tenant_id: a reference names one tenant, by either."""
    clash = db.session.execute(
        select(Tenant.tenant_id).where(
            Tenant.tenant_id != tenant_id,
            or_(Tenant.external_id == external_id, func.lower(Tenant.tenant_id) == external_id.lower()),
        )
    ).first()
    if clash is not None:
        raise Conflict(f"external_id {external_id} already names another tenant.", field="external_id")


def find_by_reference(reference: str) -> Tenant | None:
    """The tenant a reference names: its tenant_id or its external id (never two tenants' ids)."""
    # NUL: no id of ours has one, and PostgreSQL refuses it in a query (a 500, not a "not found").
    if not reference or len(reference) > 100 or "\x00" in reference:
        return None
    statement = select(Tenant).where(or_(Tenant.tenant_id == reference, Tenant.external_id == reference))
    return db.session.execute(statement.limit(1)).scalar_one_or_none()


def find_by_external_id(external_id: str) -> Tenant | None:
    if not external_id or len(external_id) > 100 or "\x00" in external_id:
        return None
    return db.session.execute(select(Tenant).where(Tenant.external_id == external_id)).scalar_one_or_none()


def set_external_id(actor: Actor, tenant: Tenant, external_id: str | None) -> Tenant:
    """Give the tenant the operator's own id for it (None: none); unique, audited."""
    if external_id is not None:
        validate_external_id(external_id)
        _check_external_id_free(external_id, tenant.tenant_id)
    if tenant.external_id != external_id:
        audit.record(
            actor,
            "tenant.external_id_changed",
            tenant,
            "tenant",
            tenant.tenant_id,
            changes={"external_id": {"from": tenant.external_id, "to": external_id}},
        )
        tenant.external_id = external_id
        db.session.flush()
    return tenant


def create_tenant(
    actor: Actor,
    tenant_id: str,
    company_name: str,
    contact_email: str | None,
    subscription_plan: str = "starter",
    subscribed_at: datetime | None = None,
    external_id: str | None = None,
) -> Tenant:
    validate_tenant_id(tenant_id)
    plans.current_version(subscription_plan)  # an unknown plan is refused before anything is created
    taken = DuplicateTenantId(f"Tenant {tenant_id} already exists.", field="tenant_id")
    if external_id is not None:
        validate_external_id(external_id)
    if tenant_id_taken(tenant_id):
        raise taken
    if external_id is not None:
        _check_external_id_free(external_id, tenant_id)
    tenant = Tenant(
        tenant_id=tenant_id,
        company_name=company_name.strip(),
        contact_email=contact_email,
        subscription_plan=subscription_plan,
        metadata_json={},
        external_id=external_id,
    )
    try:
        # Two onboardings of one tenant_id at once: the second waits on the first's row, then
        # gets the same answer as if it had come later, not a 500.
        with savepoint():
            db.session.add(tenant)
            db.session.flush()
    except IntegrityError:
        raise taken from None
    details = {"company_name": tenant.company_name}
    if external_id is not None:
        details["external_id"] = external_id
    audit.record(actor, "tenant.created", tenant, "tenant", tenant_id, **details)
    subscriptions.start(actor, tenant, subscription_plan, at=subscribed_at)
    return tenant


def sign_up(
    actor: Actor, company_name: str, tenant_id: str, email: str, password: str, name: str = "", plan: str = "starter"
) -> tuple[User, Tenant]:
    """A new company on ``plan``: the tenant, its subscription, and the person signing up as its owner."""
    user = create_user(email, password, name, known=(company_name, tenant_id))
    # From here on the person signing up is the actor, so the log names them, not "system".
    actor = Actor(user=user, ip=actor.ip)
    tenant = create_tenant(actor, tenant_id, company_name, contact_email=user.email, subscription_plan=plan)
    db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=user.id, role="owner"))
    audit.record(actor, "member.joined", tenant, "user", user.id, role="owner")
    return user, tenant


def update_profile(actor: Actor, tenant: Tenant, company_name: str, contact_email: str, metadata: dict) -> Tenant:
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValidationFailed(f"At most {METADATA_MAX_KEYS} metadata entries.", field="metadata")
    changes = {}
    for field, value in (("company_name", company_name.strip()), ("contact_email", contact_email)):
        if getattr(tenant, field) != value:
            changes[field] = {"from": getattr(tenant, field), "to": value}
            setattr(tenant, field, value)
    if (tenant.metadata_json or {}) != metadata:
        changes["metadata"] = {"from": tenant.metadata_json, "to": metadata}
        tenant.metadata_json = dict(metadata)
    if changes:
        audit.record(actor, "tenant.updated", tenant, "tenant", tenant.tenant_id, changes=changes)
    return tenant


def set_two_factor_required(actor: Actor, tenant: Tenant, required: bool) -> Tenant:
    """The owner's policy: every member needs a second factor to use the tenant (portal.access)."""
    if tenant.require_two_factor == required:
        return tenant
    if required and (actor.user is None or not has_second_factor(actor.user.id)):
        # Otherwise the owner's next click would send them to set it up anyway, mid-change.
        raise ValidationFailed(
            "Set up two-factor authentication for yourself first (your account page), then require it.",
            field="require_two_factor",
        )
    tenant.require_two_factor = required
    audit.record(actor, "tenant.two_factor_required_changed", tenant, "tenant", tenant.tenant_id, required=required)
    return tenant


def cancel(actor: Actor, tenant: Tenant) -> Tenant:
    """Delete from the customer's point of view: members lose access, records are kept."""
    if tenant.status == "cancelled":
        raise Conflict("This account is already deleted.")
    tenant.status = "cancelled"
    tenant.cancelled_at = utcnow()
    audit.record(actor, "tenant.cancelled", tenant, "tenant", tenant.tenant_id)
    subscription = subscriptions.subscription_of(tenant)
    if subscription is not None and subscription.is_live:
        subscriptions.cancel(actor, subscription, at_period_end=False, reason="account_deleted")

    for membership in tenant.memberships:
        end_all_sessions(membership.user, only_if_no_other_tenant=True)
    return tenant


def search(text: str | None = None, status: str | None = None, plan: str | None = None) -> Select:
    """Tenants newest first, narrowed by a piece of their id or company name, a status and a plan.

    The console and the operator API both list tenants through this one query.
    """
    statement = select(Tenant)
    if text:
        # autoescape: "%" and "_" typed in a search are characters, not LIKE wildcards.
        needle = text.lower()
        statement = statement.where(
            func.lower(Tenant.tenant_id).contains(needle, autoescape=True)
            | func.lower(Tenant.company_name).contains(needle, autoescape=True)
        )
    if status:
        statement = statement.where(Tenant.status == status)
    if plan:
        statement = statement.where(Tenant.subscription_plan == plan)
    return statement.order_by(Tenant.created_at.desc(), Tenant.tenant_id)


def team_counts(tenant: Tenant) -> tuple[int, int]:
    """(members, pending invitations, expired ones included), in one statement (the overview)."""
    members = select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant.tenant_id)
    pending = (
        select(func.count())
        .select_from(Invitation)
        .where(Invitation.tenant_id == tenant.tenant_id, Invitation.status == "pending")
    )
    row = db.session.execute(select(members.scalar_subquery(), pending.scalar_subquery())).one()
    return int(row[0]), int(row[1])


def member_count(tenant: Tenant) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant.tenant_id)
    )


def owner_of(tenant: Tenant) -> User | None:
    return db.session.execute(
        select(User).join(Membership).where(Membership.tenant_id == tenant.tenant_id, Membership.role == "owner")
    ).scalar_one_or_none()
