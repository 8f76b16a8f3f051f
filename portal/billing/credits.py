"""The credit ledger: operator grants and deductions, credit applied to invoices as they are
issued, and expired credit written off (DESIGN §3, §6; seeds 002/003).

Every change happens with the tenant's row locked (FOR UPDATE on PostgreSQL; SQLite has one
writer anyway), so two changes to one tenant's credit never interleave: the balance each entry
records is exact and never negative. Credit is always taken oldest-expiring first, credit
without an expiry last. Expired credit is written off before anything else reads the balance.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select

from portal import audit
from portal.access import Actor
from portal.billing.money import format_money
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import CreditEntry, CreditGrant, PlanVersion, Subscription, Tenant, utcnow

# A billion in major units: more is a typo, and sums stay far inside a 64-bit integer.
MAX_AMOUNT = 100_000_000_000
REASON_MAX = 500
DEFAULT_CURRENCY = "USD"


# A well-formed request the balance cannot meet: a conflict with the ledger's state.
class InsufficientCredit(ValidationFailed, status=409, code="INSUFFICIENT_CREDIT"): ...


@dataclass(frozen=True)
class Summary:
    """A tenant's credit in one currency as of an instant."""

    currency: str
    balance: int
    total_granted: int
    total_used: int
    total_expired: int
    entries: int = 0  # how many ledger entries (a page of them needs no count of its own)


def currency_of(tenant_id: str) -> str:
    """The currency the tenant is billed in (its subscription's), USD before it has one."""
    currency = db.session.execute(
        select(PlanVersion.currency)
        .join(Subscription, Subscription.plan_version_id == PlanVersion.id)
        .where(Subscription.tenant_id == tenant_id)
    ).scalar_one_or_none()
    return currency or DEFAULT_CURRENCY


def currency_of_subscription(subscription: Subscription | None) -> str:
    """``currency_of`` for a subscription already loaded (its plan version comes with it)."""
    return subscription.plan_version.currency if subscription is not None else DEFAULT_CURRENCY


def _currency(tenant_id: str, currency: str | None) -> str:
    if currency is None or not currency.strip():
        return currency_of(tenant_id)
    code = currency.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValidationFailed("Give the currency as a three-letter ISO code such as USD.", field="currency")
    return code


def _amount(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("The amount must be a whole number of cents.", field="amount")
    if amount <= 0:
        raise ValidationFailed("The amount must be more than zero.", field="amount")
    if amount > MAX_AMOUNT:
        raise ValidationFailed(f"The amount can be at most {MAX_AMOUNT:,} cents.", field="amount")
    return amount


def _reason(reason: str | None, required: bool = False) -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise ValidationFailed("Say why (it is kept in the ledger and the activity log).", field="reason")
    if len(reason) > REASON_MAX:
        raise ValidationFailed(f"Keep the reason under {REASON_MAX} characters.", field="reason")
    return reason


def _lock(tenant_id: str) -> None:
    """Hold the tenant's row until commit: credit changes for one tenant queue up behind it."""
    db.session.execute(select(Tenant.tenant_id).where(Tenant.tenant_id == tenant_id).with_for_update())


def _balance(tenant_id: str, currency: str) -> int:
    # int(): PostgreSQL sums BIGINT as NUMERIC, which arrives as a Decimal.
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(CreditGrant.remaining), 0)).where(
                CreditGrant.tenant_id == tenant_id, CreditGrant.currency == currency
            )
        )
    )


def _spendable(tenant_id: str, currency: str, at: datetime) -> list[CreditGrant]:
    """Grants with credit left and not expired at ``at``, in the order credit is taken."""
    return list(
        db.session.execute(
            select(CreditGrant)
            .where(CreditGrant.tenant_id == tenant_id, CreditGrant.currency == currency, CreditGrant.remaining > 0)
            .where((CreditGrant.expires_at.is_(None)) | (CreditGrant.expires_at > at))
            .order_by(
                case((CreditGrant.expires_at.is_(None), 1), else_=0),
                CreditGrant.expires_at,
                CreditGrant.granted_at,
                CreditGrant.id,
            )
            # Read afresh under the lock: a billing run's session keeps objects across its commits.
            .execution_options(populate_existing=True)
        ).scalars()
    )


def _entry(
    tenant_id: str,
    currency: str,
    kind: str,
    amount: int,
    balance_after: int,
    at: datetime,
    actor: Actor,
    description: str,
    grant_id: str | None = None,
    invoice_id: str | None = None,
) -> CreditEntry:
    entry = CreditEntry(
        tenant_id=tenant_id,
        currency=currency,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        grant_id=grant_id,
        invoice_id=invoice_id,
        description=description[:500],
        created_by=actor.name[:254],
        occurred_at=at,
        created_at=utcnow(),
    )
    db.session.add(entry)
    return entry


def _write_off(tenant_id: str, at: datetime, actor: Actor, currency: str | None = None) -> list[CreditEntry]:
    """Write off what is left of every grant expired by ``at``; the caller holds the lock.
    A grant written off has nothing left, so doing it again writes nothing."""
    statement = select(CreditGrant).where(
        CreditGrant.tenant_id == tenant_id,
        CreditGrant.remaining > 0,
        CreditGrant.expires_at.is_not(None),
        CreditGrant.expires_at <= at,
    )
    if currency is not None:
        statement = statement.where(CreditGrant.currency == currency)
    expired = list(
        db.session.execute(
            statement.order_by(CreditGrant.expires_at, CreditGrant.id).execution_options(populate_existing=True)
        ).scalars()
    )
    entries = []
    balances: dict[str, int] = {}
    for grant in expired:
        if grant.currency not in balances:
            balances[grant.currency] = _balance(tenant_id, grant.currency)
        left = grant.remaining
        grant.remaining = 0
        balances[grant.currency] -= left
        entries.append(
            _entry(
                tenant_id,
                grant.currency,
                "expiry",
                -left,
                balances[grant.currency],
                at,
                actor,
                f"Expired on {grant.expires_at:%Y-%m-%d %H:%M} UTC: {format_money(left, grant.currency)} unused",
                grant_id=grant.id,
            )
        )
    if entries:
        db.session.flush()
    return entries


def _take(grants: list[CreditGrant], amount: int) -> int:
    """Take up to ``amount`` from ``grants`` in their order; returns how much was taken."""
    taken = 0
    for grant in grants:
        if taken == amount:
            break
        share = min(grant.remaining, amount - taken)
        grant.remaining -= share
        taken += share
    return taken


def grant(
    actor: Actor,
    tenant: Tenant,
    amount: int,
    currency: str | None = None,
    expires_at: datetime | None = None,
    reason: str | None = "",
    at: datetime | None = None,
) -> CreditGrant:
    """Give the tenant ``amount`` minor units of credit, optionally expiring."""
    at = at or utcnow()
    amount = _amount(amount)
    reason = _reason(reason)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationFailed("Give the expiry with a timezone (UTC).", field="expires_at")
        if expires_at <= at:
            raise ValidationFailed("The expiry must be in the future.", field="expires_at")
    currency = _currency(tenant.tenant_id, currency)
    _lock(tenant.tenant_id)
    _write_off(tenant.tenant_id, at, actor, currency)
    balance = _balance(tenant.tenant_id, currency)
    credit = CreditGrant(
        tenant_id=tenant.tenant_id,
        currency=currency,
        amount=amount,
        remaining=amount,
        expires_at=expires_at,
        reason=reason,
        created_by=actor.name[:254],
        granted_at=at,
        created_at=utcnow(),
    )
    db.session.add(credit)
    db.session.flush()
    _entry(
        tenant.tenant_id,
        currency,
        "grant",
        amount,
        balance + amount,
        at,
        actor,
        reason or "Credit granted",
        grant_id=credit.id,
    )
    audit.record(
        actor,
        "credit.granted",
        tenant,
        "credit_grant",
        credit.id,
        amount=amount,
        currency=currency,
        expires_at=expires_at.isoformat() if expires_at else None,
        reason=reason,
    )
    return credit


def deduct(
    actor: Actor,
    tenant: Tenant,
    amount: int,
    currency: str | None = None,
    reason: str | None = "",
    at: datetime | None = None,
) -> CreditEntry:
    """Take ``amount`` off the tenant's credit; refused, changing nothing, beyond the balance."""
    at = at or utcnow()
    amount = _amount(amount)
    reason = _reason(reason)
    currency = _currency(tenant.tenant_id, currency)
    _lock(tenant.tenant_id)
    _write_off(tenant.tenant_id, at, actor, currency)
    grants = _spendable(tenant.tenant_id, currency, at)
    available = sum(g.remaining for g in grants)
    if amount > available:
        raise InsufficientCredit(
            f"Cannot deduct {format_money(amount, currency)}: the credit balance is only "
            f"{format_money(available, currency)}.",
            field="amount",
        )
    _take(grants, amount)
    # Expired credit was just written off, so what the spendable grants hold is the whole balance.
    entry = _entry(
        tenant.tenant_id,
        currency,
        "deduction",
        -amount,
        sum(g.remaining for g in grants),
        at,
        actor,
        reason or "Credit deducted",
    )
    audit.record(
        actor, "credit.deducted", tenant, "credit_entry", entry.id, amount=amount, currency=currency, reason=reason
    )
    return entry


def may_apply(tenant_id: str, currency: str, amount_due: int) -> bool:
    """Whether an invoice for ``amount_due`` could take any credit: most tenants have none, and
    this one unlocked look (on the connection, no unit of work) spares them the rest."""
    if amount_due <= 0:
        return False
    grants = CreditGrant.__table__
    return (
        db.session.connection()
        .execute(
            select(grants.c.id)
            .where(grants.c.tenant_id == tenant_id, grants.c.currency == currency, grants.c.remaining > 0)
            .limit(1)
        )
        .first()
        is not None
    )


def with_credit(tenant_ids: list[str]) -> set[tuple[str, str]]:
    """(tenant_id, currency) of those tenants that have credit left (one query for a billing
    run's batch: ``may_apply`` for many at once)."""
    if not tenant_ids:
        return set()
    grants = CreditGrant.__table__
    return {
        (tenant_id, currency)
        for tenant_id, currency in db.session.connection().execute(
            select(grants.c.tenant_id, grants.c.currency)
            .where(grants.c.tenant_id.in_(tenant_ids), grants.c.remaining > 0)
            .distinct()
        )
    }


def apply_to_invoice(
    actor: Actor, tenant_id: str, currency: str, invoice_id: str, number: str, amount_due: int, at: datetime
) -> int:
    """Take what credit there is, up to ``amount_due``, for the invoice being issued (in its
    transaction); returns the amount applied. The invoice row must exist before the flush.
    Callers ask ``may_apply`` first."""
    if amount_due <= 0:
        return 0
    _lock(tenant_id)
    _write_off(tenant_id, at, actor, currency)
    grants = _spendable(tenant_id, currency, at)
    applied = _take(grants, min(amount_due, sum(g.remaining for g in grants)))
    if not applied:
        return 0
    _entry(
        tenant_id,
        currency,
        "application",
        -applied,
        sum(g.remaining for g in grants),
        at,
        actor,
        f"Applied to invoice {number}",
        invoice_id=invoice_id,
    )
    return applied


def _expired_balance(tenant_id: str, currency: str, at: datetime) -> int:
    """Credit left on grants expired by ``at`` that no write-off has taken yet."""
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(CreditGrant.remaining), 0)).where(
                CreditGrant.tenant_id == tenant_id,
                CreditGrant.currency == currency,
                CreditGrant.expires_at.is_not(None),
                CreditGrant.expires_at <= at,
            )
        )
    )


def write_off_expired(at: datetime, actor: Actor) -> int:
    """The billing run's sweep: every tenant's credit expired by ``at`` written off, a tenant
    per transaction (committed here, one by one: a run that dies half-way keeps the tenants it
    wrote off). Returns how many tenants had some."""
    tenant_ids = list(
        db.session.execute(
            select(CreditGrant.tenant_id)
            .where(CreditGrant.remaining > 0, CreditGrant.expires_at.is_not(None), CreditGrant.expires_at <= at)
            .distinct()
        ).scalars()
    )
    for tenant_id in tenant_ids:
        _lock(tenant_id)
        _write_off(tenant_id, at, actor)
        commit()
    return len(tenant_ids)


def summary(tenant_id: str, currency: str | None = None, at: datetime | None = None) -> Summary:
    """Balance and totals as of ``at``: credit that has expired counts as expired even before
    the billing run writes it off, so granted = used + expired + balance always holds."""
    at = at or utcnow()
    currency = _currency(tenant_id, currency)
    # One statement (pages show this on every visit): the ledger's totals per kind, the credit
    # left on the grants, and how much of it has expired without a write-off yet.
    entries = (CreditEntry.tenant_id == tenant_id, CreditEntry.currency == currency)
    grants = (CreditGrant.tenant_id == tenant_id, CreditGrant.currency == currency)
    expired = and_(CreditGrant.expires_at.is_not(None), CreditGrant.expires_at <= at)
    row = db.session.execute(
        select(
            *(
                select(func.coalesce(func.sum(CreditEntry.amount), 0))
                .where(*entries, CreditEntry.kind == kind)
                .scalar_subquery()
                for kind in ("grant", "deduction", "application", "expiry")
            ),
            select(func.coalesce(func.sum(CreditGrant.remaining), 0)).where(*grants).scalar_subquery(),
            select(func.coalesce(func.sum(case((expired, CreditGrant.remaining), else_=0)), 0))
            .where(*grants)
            .scalar_subquery(),
            select(func.count()).select_from(CreditEntry).where(*entries).scalar_subquery(),
        )
    ).one()
    granted, deducted, applied, expired_entries, remaining, pending_expiry, count = (int(value) for value in row)
    kinds = {"grant": granted, "deduction": deducted, "application": applied, "expiry": expired_entries}
    balance = remaining - pending_expiry
    return Summary(
        currency=currency,
        balance=int(balance),
        total_granted=int(kinds.get("grant", 0)),
        total_used=-int(kinds.get("deduction", 0)) - int(kinds.get("application", 0)),
        total_expired=-int(kinds.get("expiry", 0)) + int(pending_expiry),
        entries=count,
    )


def entries(tenant_id: str, currency: str | None = None):
    """The statement listing a tenant's ledger, newest first (callers paginate it)."""
    currency = _currency(tenant_id, currency)
    return (
        select(CreditEntry)
        .where(CreditEntry.tenant_id == tenant_id, CreditEntry.currency == currency)
        .order_by(CreditEntry.created_at.desc(), CreditEntry.id.desc())
    )


def grants_of(tenant_id: str) -> dict[str, CreditGrant]:
    """The tenant's grants by id (for showing a ledger entry's expiry)."""
    return {
        g.id: g for g in db.session.execute(select(CreditGrant).where(CreditGrant.tenant_id == tenant_id)).scalars()
    }
