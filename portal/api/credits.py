"""Credits over the API: the operator grants and deducts (seed 003's ``/credits/grant|deduct``,
its field names accepted too); the tenant's ledger is readable by operators and the tenant's
own keys. The rules are the ledger's (``portal.billing.credits``)."""

from functools import partial

from sqlalchemy import or_, select

from portal.api.billing import READ_SCOPE
from portal.api.registry import OPERATOR, ApiError, operation
from portal.api.schemas import common
from portal.api.schemas import credits as schemas
from portal.billing import credits
from portal.billing.money import to_major
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import CreditEntry, CreditGrant, Tenant

TAGS = ["credits"]
operator_credits = partial(operation, auth=OPERATOR, tags=TAGS)


def entry_out(entry: CreditEntry, grant: CreditGrant | None = None) -> schemas.CreditEntryOut:
    return common.out(
        schemas.CreditEntryOut,
        entry,
        entry_id=entry.id,
        type=entry.kind,
        expires_at=grant.expires_at if grant is not None and entry.kind == "grant" else None,
    )


def _customer(reference: str) -> Tenant:
    """The tenant a body names, by tenant id or by the operator's external id."""
    tenant = db.session.execute(
        select(Tenant)
        .where(or_(Tenant.tenant_id == reference, Tenant.external_id == reference))
        .order_by(Tenant.tenant_id != reference)  # a tenant id wins over another tenant's external id
        .limit(1)
    ).scalar_one_or_none()
    if tenant is None or tenant.status == "cancelled":
        raise ApiError(404, "RESOURCE_NOT_FOUND", "Customer not found")
    return tenant


@operator_credits("POST", "/credits/grant", errors=[404])
def grant_credits(principal, body: schemas.CreditGrantIn) -> schemas.CreditGrantOut:
    """Grant credit to a tenant (optionally expiring); billing runs apply it to invoices

    Name the tenant with `tenant_id` (or seed 003's `customerId`, seed 002's `customerReferenceId`:
    a tenant id or external id). Give `amount` in minor units or `creditAmount` in major units.
    Credit is applied to invoices oldest-expiring first.
    """
    tenant = _customer(body.customer)
    credit = credits.grant(
        principal.actor(),
        tenant,
        body.minor_units,
        currency=body.currency,
        expires_at=body.expires_at,
        reason=body.reason,
    )
    entry = db.session.execute(
        select(CreditEntry).where(CreditEntry.grant_id == credit.id, CreditEntry.kind == "grant")
    ).scalar_one()
    commit()
    return common.out(
        schemas.CreditGrantOut, credit, grant_id=credit.id, balance=entry.balance_after, entry=entry_out(entry, credit)
    )


@operator_credits("POST", "/credits/deduct", errors=[404, 409])
def deduct_credits(principal, body: schemas.CreditChangeIn) -> schemas.CreditDeductOut:
    """Deduct credit from a tenant; refused (409 INSUFFICIENT_CREDIT) beyond the balance

    Same tenant and amount fields as the grant. Credit is taken oldest-expiring first; a deduction
    larger than the balance changes nothing.
    """
    tenant = _customer(body.customer)
    entry = credits.deduct(principal.actor(), tenant, body.minor_units, currency=body.currency, reason=body.reason)
    commit()
    return common.out(
        schemas.CreditDeductOut, entry, amount=-entry.amount, balance=entry.balance_after, entry=entry_out(entry)
    )


@operation("GET", "/tenants/<tenant_id>/credits", scope=READ_SCOPE, tags=TAGS, allowed_when_suspended=True)
def get_credits(principal, tenant: Tenant, query: schemas.CreditsQuery) -> schemas.CreditsOut:
    # By tenant_id only: on a warm key cache the tenant is detached (no relationships to load).
    """The tenant's credit: balance, totals granted / used / expired, and the ledger (paginated)

    Minor units, in the tenant's billing currency unless `currency` is given. Credit past its expiry
    counts as expired at once, even before a billing run writes it off.
    """
    summary = credits.summary(tenant.tenant_id, query.currency)
    statement = credits.entries(tenant.tenant_id, summary.currency)
    rows, pagination = common.page_of(statement, query)
    grant_ids = {entry.grant_id for entry in rows if entry.grant_id}
    grants = (
        {g.id: g for g in db.session.execute(select(CreditGrant).where(CreditGrant.id.in_(grant_ids))).scalars()}
        if grant_ids
        else {}
    )
    return common.out(
        schemas.CreditsOut,
        summary,
        tenant_id=tenant.tenant_id,
        balance_major=to_major(summary.balance),
        entries=[entry_out(entry, grants.get(entry.grant_id)) for entry in rows],
        pagination=pagination,
    )
