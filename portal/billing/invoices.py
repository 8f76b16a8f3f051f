"""Issuing invoices (gap-free numbers, exact totals) and what happens to them afterwards."""

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from portal import audit
from portal.access import Actor
from portal.billing import credits, discounts, notices, profile, taxes
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.infra import bulk
from portal.infra.transactions import defer
from portal.models import Invoice, InvoiceCounter, InvoiceLine, PaymentAttempt, Subscription, Tenant
from portal.models.base import new_id, utcnow
from portal.tenants import scoped
from portal.tenants.suspension import activate

PAYMENT_REFERENCE_MAX = 200
REASON_MAX = 500
# What a list of invoices filters by: the statuses, and two states of an open invoice derived
# from it, seed 003's overdue (past its due date) and seed 001's failed (its last payment
# attempt failed). An invoice can be both.
INVOICE_FILTERS = ("open", "overdue", "failed", "paid", "void", "uncollectible")
# A payment attempt whose outcome is not known yet: while one is, the invoice is not "failed".
ATTEMPTS_UNDER_WAY = ("pending", "requires_action", "processing")


@dataclass(frozen=True)
class Line:
    """An invoice line before it is stored; ``amount`` is already rounded to minor units."""

    type: str
    description: str
    amount: int
    quantity: Decimal = Decimal(1)
    unit_amount: Decimal | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


def _take_numbers(year: int, count: int) -> int:
    """The last of ``count`` numbers taken from the year's counter, in the caller's transaction:
    the counter row stays locked until it commits, and a rollback hands them back, so numbers
    never skip."""
    counters = InvoiceCounter.__table__
    bump = (
        update(counters)
        .where(counters.c.year == year)
        .values(last_number=counters.c.last_number + count)
        .returning(counters.c.last_number)
    )
    # On the session's connection, not through the ORM: no autoflush and no ORM bulk-update
    # bookkeeping, which were a third of a billing run's time per invoice.
    number = db.session.connection().execute(bump).scalar()
    if number is None:
        try:
            with db.session.begin_nested():
                db.session.execute(insert(InvoiceCounter).values(year=year, last_number=count))
            number = count
        except IntegrityError:  # another transaction started the year first
            number = db.session.connection().execute(bump).scalar()
    return number


def _number(year: int, number: int) -> str:
    return f"INV-{year}-{number:06d}"


def next_number(year: int) -> str:
    """``INV-YYYY-NNNNNN``, taken inside the caller's transaction (see ``_take_numbers``)."""
    return _number(year, _take_numbers(year, 1))


BILLING = Actor(user=None, label="billing run")


def _is_same_period(error: IntegrityError) -> bool:
    """The (subscription, kind, period_start) constraint, as PostgreSQL and SQLite name it."""
    text = str(error.orig)
    return "uq_invoices_subscription_id" in text or "invoices.subscription_id, invoices.kind" in text


_BATCH = "portal_invoice_batch"


@dataclass
class _Batch:
    """Invoices composed in a billing run's batch and stored together by ``store_batch``, and
    what composing them reads, read for the whole batch at once."""

    # (tenant_id, currency) of the batch's tenants that have credit to spend (``credits.with_credit``)
    credit: set[tuple[str, str]]
    # the batch's billing profiles by tenant, active discounts by subscription, and tax rates
    profiles: dict
    discounts: dict
    rates: taxes.RateBook
    # (invoice, its row, its lines' rows, its actor, its subscription, work once its row is stored)
    pending: list[tuple[Invoice, dict, list[dict], Actor, Subscription, list]] = field(default_factory=list)


@contextmanager
def batch(subscriptions: list[Subscription]) -> Iterator[None]:
    """Issue the invoices of a billing run's batch (``subscriptions``) together: what ``issue``
    reads for each (credit left, billing profile, discount, tax rates) is read for all of them
    in four queries, and ``store_batch`` numbers the invoices with one block per year and inserts
    them, their lines and their audit rows in a few statements. Invoices that take credit are
    stored at once (their credit entries name the number)."""
    tenant_ids = list({subscription.tenant_id for subscription in subscriptions})
    db.session.info[_BATCH] = _Batch(
        credit=credits.with_credit(tenant_ids),
        profiles=profile.profiles_of(tenant_ids),
        discounts=discounts.active_discounts([subscription.id for subscription in subscriptions]),
        rates=taxes.rate_book(),
    )
    try:
        yield
    finally:
        db.session.info.pop(_BATCH, None)


def when_stored(invoice: Invoice, work) -> None:
    """Run ``work()`` once the invoice's row exists: now, or when its batch is stored (a row
    that refers to it cannot be written before)."""
    for pending, *_, after in db.session.info[_BATCH].pending if _BATCH in db.session.info else ():
        if pending is invoice:
            after.append(work)
            return
    work()


def store_batch() -> None:
    """Number the batch's composed invoices in the order issued, then insert them: one block of
    numbers per year, used whole by this transaction (it holds the year's counter until it
    commits, so the block is the next numbers and nobody else's). Each row goes in once, with
    its number: inserting first and numbering after (to hold the counter a little less long)
    wrote every invoice row and its indexes twice, which cost the database more than the wait."""
    batched = db.session.info.get(_BATCH)
    if batched is None or not batched.pending:
        return
    pending, batched.pending = batched.pending, []
    by_year: dict[int, list[tuple[Invoice, dict]]] = {}
    for invoice, values, *_ in pending:
        by_year.setdefault(invoice.issued_at.year, []).append((invoice, values))
    for year in sorted(by_year):
        issued = by_year[year]
        last = _take_numbers(year, len(issued))
        for number, (invoice, values) in enumerate(issued, start=last - len(issued) + 1):
            invoice.number = values["number"] = _number(year, number)
    bulk.insert_rows(Invoice.__table__, [values for _, values, *_ in pending])
    lines = [line for _, _, line_values, *_ in pending for line in line_values]
    if lines:
        bulk.insert_rows(InvoiceLine.__table__, lines)
    for *_, after in pending:
        for work in after:
            work()
    with bulk.gathered():
        for invoice, _, _, actor, subscription, _ in pending:
            make_transient_to_detached(invoice)
            db.session.add(invoice)
            _issued(invoice, actor, subscription, email=False)
    # One job emails the batch's invoices: a job per invoice cost the run more than the email.
    defer("jobs.billing.invoice_issued_email", *(invoice.id for invoice, *_ in pending), queue="email")


def issue(
    subscription: Subscription,
    kind: str,
    period_start: datetime,
    period_end: datetime,
    lines: list[Line],
    at: datetime,
    actor: Actor = BILLING,
    billing_run_id: str | None = None,
) -> Invoice:
    """Create an open invoice (paid at once when nothing is due, or credit covers it all). The
    unique constraint on (subscription, kind, period_start) makes a second attempt for the same
    period fail, so credit is never applied twice to one period either. ``billing_run_id``: the
    run issuing it, which counts its invoices from these rows after a crash."""
    tenant = subscription.tenant
    if sum(line.amount for line in lines) < 0:
        raise ValidationFailed("An invoice cannot total less than zero.")
    # The subscription's discount, if one is in effect, is one more line (negative); an invoice
    # that opens a billing period uses up one of the discount's periods. Tax is worked out on
    # every line, the discount line included, so a discount lowers the tax with the price.
    starts_period = kind == "period" and any(line.type == "plan" for line in lines)
    batched = db.session.info.get(_BATCH)
    if batched is not None:
        # Read before the batch's first invoice; one the subscription has since let go (its last
        # period billed by an earlier invoice here) is no longer its discount.
        discount = batched.discounts.get(subscription.id)
        known = {"discount": discount if discount and discount.active_subscription_id == subscription.id else None}
        buyer_profile = batched.profiles.get(tenant.tenant_id)
    else:
        known, buyer_profile = {}, profile.profile_of(tenant)
    discounted = discounts.for_invoice(subscription, lines, at, starts_period, **known)
    if discounted:
        lines = [*lines, Line(type="discount", description=discounted.description, amount=-discounted.amount)]
    amounts = [line.amount for line in lines]
    # The unit of work costs more than the SQL for a row it only inserts (most of a billing run's
    # time per subscription): the invoice and its lines go in as two plain INSERTs, and the
    # objects returned are attached as already stored, every column set, so nothing reloads.
    # Whatever the session holds is written first, so that taking the number, which locks the
    # year's counter until commit, is followed only by these few INSERTs: billing runs on several
    # workers queue on that lock for as short a time as possible.
    currency = subscription.plan_version.currency
    if batched is None:
        db.session.flush()
        credit_possible = credits.may_apply(tenant.tenant_id, currency, sum(amounts))
    else:
        credit_possible = sum(amounts) > 0 and (tenant.tenant_id, currency) in batched.credit
    # The buyer as they are now (their billing profile), and the tax that follows from it.
    buyer = profile.snapshot(buyer_profile)
    treatment = taxes.treatment_for(buyer, book=batched.rates if batched is not None else None)
    kinds = [line.type for line in lines]
    line_taxes = taxes.tax_lines(amounts, 0, treatment)
    figures = taxes.totals(amounts, kinds, 0, line_taxes, treatment.inclusive)
    now = utcnow()
    values = {
        "id": new_id("inv"),
        "number": None,
        "tenant_id": tenant.tenant_id,
        "subscription_id": subscription.id,
        "kind": kind,
        "period_start": period_start,
        "period_end": period_end,
        "currency": currency,
        "subtotal": figures.subtotal,
        "discount": figures.discount,
        "credits_applied": 0,
        "tax": figures.tax,
        "total": figures.total,
        "amount_paid": 0,
        "amount_refunded": 0,
        "status": "open" if figures.total > 0 else "paid",
        "issued_at": at,
        "due_at": at + timedelta(days=current_app.config["INVOICE_DUE_DAYS"]),
        "paid_at": at if figures.total <= 0 else None,
        "payment_reference": None,
        "voided_at": None,
        "void_reason": None,
        "billing_name": (buyer or {}).get("legal_name") or tenant.company_name,
        "billing_email": (buyer_profile.billing_email if buyer_profile else "") or tenant.contact_email or "",
        "buyer": buyer,
        "tax_note": treatment.note,
        "plan_name": subscription.plan_version.name,
        "billing_run_id": billing_run_id,
        "created_at": now,
        "updated_at": now,
    }
    if discounted:
        discounts.record_use(discounted, starts_period, period_end)
    if batched is not None and not credit_possible:
        # Numbered and stored with the rest of the batch (``store_batch``); its lines are read
        # from the database if anyone asks for them once it is stored. Built without the ORM's
        # attribute events (a tenth of the cost): it becomes a stored object when its row is.
        invoice = Invoice.__mapper__.class_manager.new_instance()
        invoice.__dict__.update(values)
        batched.pending.append(
            (invoice, values, _line_rows(values["id"], lines, line_taxes, treatment), actor, subscription, [])
        )
        return invoice
    store_batch()  # numbers stay in the order invoices are issued
    values["number"] = next_number(at.year)
    connection = db.session.connection()
    try:
        connection.execute(insert(Invoice.__table__), values)
    except IntegrityError as error:
        if not _is_same_period(error):
            raise
        # Two changes in one second (or a sign-up and a change of interval) would start two
        # invoices of one kind at the same instant: refuse with a message, never a 500.
        raise Conflict(
            "This subscription already has an invoice starting at this very second; try again in a moment."
        ) from None
    # Credit is taken in the invoice's own transaction: a rolled-back invoice gives it back. It
    # reduces what is taxed, so the lines' tax is worked out (again) once it is known.
    applied = (
        credits.apply_to_invoice(actor, tenant.tenant_id, currency, values["id"], values["number"], sum(amounts), at)
        if credit_possible
        else 0
    )
    if applied:
        line_taxes = taxes.tax_lines(amounts, applied, treatment)
        figures = taxes.totals(amounts, kinds, applied, line_taxes, treatment.inclusive)
        values.update(
            credits_applied=applied,
            tax=figures.tax,
            total=figures.total,
            status="open" if figures.total > 0 else "paid",
            paid_at=None if figures.total > 0 else at,
        )
        connection.execute(
            update(Invoice.__table__)
            .where(Invoice.__table__.c.id == values["id"])
            .values(
                credits_applied=applied,
                tax=figures.tax,
                total=figures.total,
                status=values["status"],
                paid_at=values["paid_at"],
            )
        )
    line_values = _line_rows(values["id"], lines, line_taxes, treatment)
    if line_values:
        connection.execute(insert(InvoiceLine.__table__), line_values)
    invoice = Invoice(**values, lines=[InvoiceLine(**line) for line in line_values])
    for stored in (invoice, *invoice.lines):
        make_transient_to_detached(stored)
    db.session.add(invoice)
    return _issued(invoice, actor, subscription)


def _line_rows(invoice_id: str, lines: list[Line], line_taxes: list, treatment) -> list[dict]:
    return [
        {
            "id": new_id("il"),
            "invoice_id": invoice_id,
            "position": position,
            "type": line.type,
            "description": line.description[:300],
            "quantity": Decimal(line.quantity),
            "unit_amount": Decimal(line.unit_amount if line.unit_amount is not None else line.amount),
            "amount": line.amount,
            "period_start": line.period_start,
            "period_end": line.period_end,
            "credit_allocated": tax.credit_allocated,
            "tax_name": treatment.name,
            "tax_percentage": treatment.percentage if treatment.name is not None else None,
            "tax_inclusive": treatment.inclusive,
            "tax_amount": tax.tax,
        }
        for position, (line, tax) in enumerate(zip(lines, line_taxes, strict=True))
    ]


def _issued(invoice: Invoice, actor: Actor, subscription: Subscription, email: bool = True) -> Invoice:
    """What follows an invoice's issue once it is stored and numbered (alone, or with its batch,
    which queues its invoices' email itself)."""
    if invoice.status == "paid":  # credit covered it (or nothing was due): paid like any other way
        end_dunning(invoice, actor, subscription)
    # Its email, with the PDF, is drawn by a job after the commit (portal.billing.notices); a
    # rolled-back invoice (a preview, a failed renewal) drops it.
    if email:
        defer("jobs.billing.invoice_issued_email", invoice.id, queue="email")
    audit.record_now(
        actor,
        "invoice.issued",
        subscription.tenant,
        "invoice",
        invoice.id,
        number=invoice.number,
        total=invoice.total,
        discount=invoice.discount or None,  # None: not shown in the activity log
        credits_applied=invoice.credits_applied,
        tax=invoice.tax,
        currency=invoice.currency,
    )
    return invoice


def _failed():
    """Open, a payment failed, and no attempt is under way since: its last attempt failed
    (a declined card, a bank that wanted authentication off-session, no card when a retry was due)."""
    under_way = (
        select(PaymentAttempt.id)
        .where(PaymentAttempt.invoice_id == Invoice.id, PaymentAttempt.status.in_(ATTEMPTS_UNDER_WAY))
        .exists()
    )
    return and_(Invoice.status == "open", Invoice.payment_failures > 0, ~under_way)


def _matching(status: str, at: datetime):
    if status not in INVOICE_FILTERS:
        raise ValidationFailed(f"Unknown status {status!r}; use one of {', '.join(INVOICE_FILTERS)}.", field="status")
    if status == "overdue":
        return and_(Invoice.status == "open", Invoice.due_at < at)
    if status == "failed":
        return _failed()
    return Invoice.status == status


def for_tenant(tenant: Tenant, status: str | None = None, at: datetime | None = None):
    """The statement listing a tenant's invoices, newest first (callers paginate it); ``status``
    is one of INVOICE_FILTERS, overdue as of ``at`` (now)."""
    statement = select(Invoice).where(Invoice.tenant_id == tenant.tenant_id)
    if status:
        statement = statement.where(_matching(status, at or utcnow()))
    return statement.order_by(Invoice.issued_at.desc(), Invoice.number.desc())


def needing_payment(tenant: Tenant, at: datetime | None = None) -> list[Invoice]:
    """The tenant's open invoices that are overdue or whose payment failed, oldest first: what
    the past-due banner asks the customer to pay."""
    statement = (
        select(Invoice)
        .where(Invoice.tenant_id == tenant.tenant_id, _matching("overdue", at or utcnow()) | _failed())
        .order_by(Invoice.due_at, Invoice.number)
    )
    return list(db.session.execute(statement).scalars())


def failed_among(invoices: list[Invoice]) -> set[str]:
    """The ids of those of ``invoices`` whose last payment attempt failed (one query)."""
    candidates = [invoice.id for invoice in invoices if invoice.status == "open" and invoice.payment_failures]
    if not candidates:
        return set()
    return set(db.session.execute(select(Invoice.id).where(Invoice.id.in_(candidates), _failed())).scalars())


def attempts_of(invoice: Invoice) -> list[PaymentAttempt]:
    """Every attempt at collecting ``invoice`` by card, first first."""
    return list(
        db.session.execute(
            select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice.id).order_by(PaymentAttempt.number)
        ).scalars()
    )


def search(
    tenant_id: str | None = None,
    status: str | None = None,
    period_from: datetime | None = None,
    period_until: datetime | None = None,
):
    """The statement listing invoices of every tenant (or of ``tenant_id``), newest first, for the
    operator: by status, and by period: starting at or after ``period_from``, ending at or
    before ``period_until`` (callers paginate it)."""
    # An end before the start matches no invoice: the filters below say so on their own.
    statement = select(Invoice)
    if tenant_id is not None:
        statement = statement.where(Invoice.tenant_id == tenant_id)
    if status:
        if status not in INVOICE_FILTERS:
            raise ValidationFailed(
                f"Unknown status {status!r}; use one of {', '.join(INVOICE_FILTERS)}.", field="status"
            )
        statement = statement.where(_matching(status, utcnow()))
    if period_from is not None:
        statement = statement.where(Invoice.period_start >= period_from)
    if period_until is not None:
        statement = statement.where(Invoice.period_end <= period_until)
    return statement.order_by(Invoice.issued_at.desc(), Invoice.number.desc())


def get_for_tenant(tenant: Tenant, invoice_id: str) -> Invoice:
    return scoped.get_for_tenant(Invoice, invoice_id, tenant, "Invoice")


def end_dunning(invoice: Invoice, actor: Actor = BILLING, subscription: Subscription | None = None) -> None:
    """``invoice`` is no longer being collected: paid (card, webhook, bank transfer, credit), void
    or written off. Once no other invoice of its subscription is open with a failed payment, a
    past-due or unpaid subscription is active again and a suspension for non-payment is lifted
    (the operator's other suspensions stay). Every way an invoice stops being owed comes here,
    so there is one way out of dunning."""
    subscription = subscription or invoice.subscription
    tenant = subscription.tenant
    # Only a suspension for non-payment is lifted by a payment; the operator's own stay.
    lift_suspension = tenant.status == "suspended" and tenant.suspension_reason == "payment_failed"
    if subscription.status not in ("past_due", "unpaid") and not lift_suspension:
        return  # nothing was held back for non-payment (the usual case): no need to look further
    still_failing = db.session.execute(
        select(Invoice.id)
        .where(
            Invoice.subscription_id == subscription.id,
            Invoice.status == "open",
            Invoice.payment_failures > 0,
            Invoice.id != invoice.id,
        )
        .limit(1)
    ).first()
    if still_failing:
        return
    if subscription.status in ("past_due", "unpaid"):
        subscription.status = "active"
        audit.record(actor, "subscription.recovered", tenant, "subscription", subscription.id, invoice=invoice.number)
    if lift_suspension:
        activate(actor, tenant, note=f"Invoice {invoice.number} {invoice.status}.")


def _reason(reason: str | None, what: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > REASON_MAX:
        raise ValidationFailed(f"Say why the invoice is {what} (1 to {REASON_MAX} characters).", field="reason")
    return reason


def mark_paid(actor: Actor, invoice: Invoice, reference: str, at: datetime) -> Invoice:
    """The operator records a payment made outside Stripe (a bank transfer, say); as any payment
    does, it ends the dunning the invoice caused."""
    reference = (reference or "").strip()
    if not reference or len(reference) > PAYMENT_REFERENCE_MAX:
        raise ValidationFailed(
            f"Give the payment reference (1 to {PAYMENT_REFERENCE_MAX} characters), e.g. the bank transfer id.",
            field="reference",
        )
    if invoice.status == "paid":
        raise Conflict(f"Invoice {invoice.number} is already paid.")
    if invoice.status not in ("open", "uncollectible"):
        raise Conflict(
            f"Invoice {invoice.number} is {invoice.status}; only open or uncollectible invoices can be marked paid."
        )
    invoice.status = "paid"
    invoice.amount_paid = invoice.total
    invoice.paid_at = at
    invoice.payment_reference = reference
    invoice.next_payment_attempt_at = None
    audit.record(
        actor, "invoice.marked_paid", invoice.tenant, "invoice", invoice.id, number=invoice.number, reference=reference
    )
    end_dunning(invoice, actor)
    notices.payment_receipt(invoice, invoice.total, reference, at)
    return invoice


def mark_uncollectible(actor: Actor, invoice: Invoice, reason: str, at: datetime) -> Invoice:
    """The operator writes an open invoice off as bad debt: it is no longer charged or retried,
    and the dunning it caused ends. Money that arrives later still marks it paid."""
    reason = _reason(reason, "uncollectible")
    if invoice.status != "open":
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}; only open invoices can be marked uncollectible.")
    invoice.status = "uncollectible"
    invoice.uncollectible_at = at
    invoice.uncollectible_reason = reason
    invoice.next_payment_attempt_at = None
    audit.record(
        actor,
        "invoice.marked_uncollectible",
        invoice.tenant,
        "invoice",
        invoice.id,
        number=invoice.number,
        reason=reason,
    )
    end_dunning(invoice, actor)
    return invoice


def void(actor: Actor, invoice: Invoice, reason: str, at: datetime) -> Invoice:
    """An invoice that should never have been issued: nothing is owed, so its dunning ends too."""
    reason = _reason(reason, "voided")
    if invoice.status not in ("open", "uncollectible"):
        raise Conflict(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
    invoice.status = "void"
    invoice.voided_at = at
    invoice.void_reason = reason
    invoice.next_payment_attempt_at = None
    audit.record(actor, "invoice.voided", invoice.tenant, "invoice", invoice.id, number=invoice.number, reason=reason)
    end_dunning(invoice, actor)
    return invoice


CSV_COLUMNS = (
    "number",
    "issued",
    "period_start",
    "period_end",
    "status",
    "currency",
    "subtotal",
    "discount",
    "credits",
    "tax",
    "tax_rates",
    "total",
    "paid",
    "due",
    "buyer_country",
    "buyer_tax_ids",
)


def _major(amount: int) -> str:
    return f"{Decimal(amount) / 100:.2f}"


def to_csv(invoices: list[Invoice]) -> str:
    """Amounts in major units with two decimals, which is what a spreadsheet user expects."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for invoice in invoices:
        writer.writerow(
            [
                invoice.number,
                invoice.issued_at.date().isoformat(),
                invoice.period_start.isoformat(),
                invoice.period_end.isoformat(),
                invoice.status,
                invoice.currency,
                *(_major(amount) for amount in (invoice.subtotal, invoice.discount, invoice.credits_applied)),
                _major(invoice.tax),
                "; ".join(f"{rate.label}: {_major(rate.amount)}" for rate in invoice.tax_lines),
                *(_major(amount) for amount in (invoice.total, invoice.amount_paid)),
                invoice.due_at.date().isoformat(),
                (invoice.buyer or {}).get("country", ""),
                " ".join(tax_id["value"] for tax_id in (invoice.buyer or {}).get("tax_ids", [])),
            ]
        )
    return buffer.getvalue()


# Built once, as its cache key is: SET takes the columns given (and updated_at's onupdate).
_MARK_PAID = update(Invoice.__table__).where(Invoice.__table__.c.id == bindparam("invoice_id"))


def record_card_payment(invoice: Invoice, amount: int, reference: str, at: datetime, actor: Actor = BILLING) -> bool:
    """Stripe says the invoice was paid, which ends its dunning. False when it already was: an
    invoice never goes back from paid, and a repeated notice changes nothing."""
    if invoice.status not in ("open", "uncollectible"):
        return False
    paid = {
        "status": "paid",
        "paid_at": at,
        "payment_reference": reference[:PAYMENT_REFERENCE_MAX],
        "amount_paid": max(invoice.amount_paid, min(amount, invoice.total) if amount else invoice.total),
        "next_payment_attempt_at": None,
    }
    # Every webhook of a paid invoice comes here: its UPDATE and audit INSERT as two statements
    # rather than through the unit of work, which cost more than the SQL. The columns are
    # expired, so whoever reads them next (after a rollback too) gets what is stored.
    db.session.connection().execute(_MARK_PAID, {"invoice_id": invoice.id, **paid})
    db.session.expire(invoice, [*paid, "updated_at"])
    audit.record_now(
        actor,
        "invoice.paid",
        invoice.tenant,
        "invoice",
        invoice.id,
        number=invoice.number,
        reference=reference,
        amount=amount,
    )
    end_dunning(invoice, actor)
    notices.payment_receipt(invoice, invoice.amount_paid, reference, at)
    return True


def record_refund(invoice: Invoice, amount_refunded: int, reference: str, actor: Actor = BILLING) -> bool:
    """Stripe's running total of what was refunded; it only ever grows, so replays are no-ops."""
    amount_refunded = min(max(amount_refunded, 0), invoice.amount_paid or invoice.total)
    if amount_refunded <= invoice.amount_refunded:
        return False
    invoice.amount_refunded = amount_refunded
    audit.record(
        actor,
        "invoice.refunded",
        invoice.tenant,
        "invoice",
        invoice.id,
        number=invoice.number,
        amount_refunded=amount_refunded,
        reference=reference,
    )
    return True
