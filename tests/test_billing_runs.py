"""Billing runs under stress (DESIGN §6): a run killed half-way and re-run, two runs at once, one
subscription failing among many, the CLI's summary and exit code, and invoice numbering.
"""

import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from portal.access import SYSTEM
from portal.billing import discounts, runs, taxes
from portal.billing import invoices as invoices_module
from portal.billing import subscriptions as subscriptions_module
from portal.billing.profile import ProfileData
from portal.billing.profile import update as update_profile
from portal.billing.subscriptions import cancel, change_plan
from portal.errors import Conflict
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import AuditEvent, BillingRun, BillingRunShard, Subscription
from tests.billing_engine_support import (
    NUMBER,
    all_invoices,
    assert_numbers_gap_free,
    bare_tenant,
    duplicate_periods,
    invoices_of,
    reload,
    run_billing,
    subscribe,
    utc,
)
from tests.conftest import unique
from tests.usage_support import record

T0 = utc(2027, 1, 10, 8)
AS_OF = utc(2027, 4, 12, 9)  # three months on: every subscription has periods to catch up


class SimulatedCrash(BaseException):
    """The worker process dies: not an Exception, so the run's per-subscription guard cannot catch it."""


def build_book(count: int = 30) -> list[Subscription]:
    """``count`` subscriptions in a mix of states; the same calls always build the same book."""
    book = []
    for i in range(count):
        plan = ("starter", "enterprise", "professional")[i % 3]
        subscription = subscribe(plan, T0 + timedelta(hours=i, seconds=i))
        if i % 5 == 0:
            cancel(SYSTEM, subscription, at=T0 + timedelta(days=40))  # ends at its second boundary
        elif plan == "enterprise" and i % 5 == 1:
            change_plan(SYSTEM, subscription, "starter", at=T0 + timedelta(days=3))  # downgrade at period end
        elif plan == "starter" and i % 5 == 2:
            change_plan(
                SYSTEM,
                subscription,
                "enterprise",
                at=T0 + timedelta(days=3),
                effective_date=T0 + timedelta(days=45, hours=i),
            )  # a dated upgrade in period 2
        elif plan == "starter" and i % 5 == 3:
            change_plan(SYSTEM, subscription, "professional", at=T0 + timedelta(days=9, minutes=i))
        commit()
        book.append(subscription)
    return book


def snapshot(book: list[Subscription]) -> list[tuple]:
    """What a tenant would see of each subscription and its invoices (numbers aside)."""
    seen = []
    for subscription in book:
        subscription = reload(subscription)
        seen.append(
            (
                subscription.status,
                subscription.plan_version.key,
                subscription.current_period_start,
                subscription.current_period_end,
                subscription.cancel_at_period_end,
                subscription.ended_at,
                subscription.scheduled_plan_version_id and subscription.scheduled_plan_version.key,
                subscription.scheduled_change_at,
                [
                    (
                        invoice.kind,
                        invoice.period_start,
                        invoice.period_end,
                        invoice.total,
                        invoice.status,
                        invoice.issued_at,
                        [(line.type, line.amount, line.period_start, line.period_end) for line in invoice.lines],
                    )
                    for invoice in invoices_of(subscription)
                ],
            )
        )
    return seen


@pytest.mark.usefixtures("ctx")
def test_a_run_killed_half_way_and_re_run_bills_exactly_what_a_clean_run_bills(monkeypatch):
    crashed_book = build_book()
    # One subscription per transaction (the mode a failed batch falls back to), so the crash
    # lands between two commits; a crash inside a batch is tested below.
    monkeypatch.setattr(runs, "BATCHED", False)
    real_renew, calls = runs.renew, []

    def renew_then_die_on_the_13th(subscription, at, **kwargs):
        calls.append(subscription.id)
        issued = real_renew(subscription, at, **kwargs)
        if len(calls) == 13:  # killed after renewing it, before its commit
            raise SimulatedCrash
        return issued

    monkeypatch.setattr(runs, "renew", renew_then_die_on_the_13th)
    crashed = runs.create_run("worker", AS_OF)
    commit()
    with pytest.raises(SimulatedCrash):
        runs.execute(crashed)
    rollback()  # the dead process's open transaction is gone with it
    monkeypatch.setattr(runs, "renew", real_renew)

    assert db.session.get(BillingRun, crashed.id).status == "running"  # as the console would find it
    settled = {s.id for s in crashed_book} - set(runs.due_subscription_ids(AS_OF))
    assert settled == set(calls[:12])  # the first twelve were committed, the thirteenth was not

    rerun = run_billing(AS_OF)
    assert (rerun.subscriptions_due, rerun.errors) == (30 - 12, [])

    clean_book = build_book()
    clean = run_billing(AS_OF)
    assert clean.errors == []
    assert clean.invoices_created > 30  # catching up: several periods each
    assert snapshot(crashed_book) == snapshot(clean_book)
    assert duplicate_periods() == []
    assert_numbers_gap_free(all_invoices())  # the killed transaction gave its numbers back


@pytest.mark.usefixtures("ctx")
def test_a_run_that_listed_its_work_before_another_run_did_it_bills_nothing_twice(monkeypatch):
    book = build_book(10)
    before = sum(len(invoices_of(s)) for s in book)
    first, second = runs.create_run("scheduler", AS_OF), runs.create_run("operator", AS_OF)
    commit()
    listed_before = runs.due_subscription_ids(AS_OF)

    done_by_second = runs.execute(second)
    monkeypatch.setattr(runs, "due_subscription_ids", lambda at: listed_before)
    done_by_first = runs.execute(first)

    assert done_by_second.invoices_created > 10
    assert (done_by_first.subscriptions_due, done_by_first.invoices_created, done_by_first.errors) == (10, 0, [])
    assert duplicate_periods() == []
    assert sum(len(invoices_of(s)) for s in book) == before + done_by_second.invoices_created


@pytest.mark.usefixtures("ctx")
def test_a_change_made_elsewhere_after_the_run_read_its_batch_is_honoured(monkeypatch):
    from sqlalchemy import update

    from portal.models import utcnow

    leaving, staying = subscribe("starter", T0), subscribe("starter", T0 + timedelta(minutes=1))
    real_load = runs._load

    def load_then_the_tenant_cancels_elsewhere(ids):
        loaded = real_load(ids)
        # Another process (the tenant, in the portal) sets the cancellation after the run read
        # its batch but before it locks the row: the run's copy is now out of date.
        table = Subscription.__table__
        db.session.connection().execute(
            update(table).where(table.c.id == leaving.id).values(cancel_at_period_end=True, updated_at=utcnow())
        )
        return loaded

    monkeypatch.setattr(runs, "_load", load_then_the_tenant_cancels_elsewhere)
    run = run_billing(utc(2027, 2, 11))

    assert run.invoices_created == 1
    assert (reload(leaving).status, len(invoices_of(leaving))) == ("canceled", 1)
    assert (reload(staying).status, len(invoices_of(staying))) == ("active", 2)


@pytest.mark.usefixtures("ctx")
def test_a_period_can_never_be_invoiced_twice_even_when_asked_directly():
    subscription = subscribe("starter", T0)
    with pytest.raises(Conflict, match="already has an invoice starting at this very second"):
        invoices_module.issue(subscription, "period", T0, T0 + timedelta(days=31), [], T0)
    rollback()
    assert len(invoices_of(subscription)) == 1


# --- failures of one subscription ---------------------------------------------------------------


def fail_for(monkeypatch, subscription_id: str, message: str = "card network down") -> None:
    real_renew = runs.renew

    def renew(subscription, at, **kwargs):
        if subscription.id == subscription_id:
            raise RuntimeError(message)
        return real_renew(subscription, at, **kwargs)

    monkeypatch.setattr(runs, "renew", renew)


@pytest.mark.usefixtures("ctx")
def test_a_failing_subscription_is_recorded_and_the_others_are_still_billed(monkeypatch):
    book = [subscribe("starter", T0 + timedelta(minutes=i)) for i in range(5)]
    broken = book[1]
    fail_for(monkeypatch, broken.id)

    run = run_billing(utc(2027, 2, 11))

    assert run.status == "completed"
    assert run.errors == [{"subscription_id": broken.id, "error": "RuntimeError: card network down"}]
    assert (run.subscriptions_due, run.subscriptions_done, run.subscriptions_billed, run.invoices_created) == (
        5,
        5,
        4,
        4,
    )
    assert run.totals == {"USD": 4 * 4900}
    assert reload(broken).current_period_end == utc(2027, 2, 10, 8, 1)  # untouched, still due
    assert len(invoices_of(broken)) == 1

    monkeypatch.undo()
    retry = run_billing(utc(2027, 2, 11))
    assert (retry.subscriptions_due, retry.invoices_created, retry.errors) == (1, 1, [])


@pytest.mark.usefixtures("ctx")
def test_a_failure_after_some_periods_were_invoiced_rolls_back_that_subscription_only(monkeypatch):
    victim, bystander = subscribe("starter", T0), subscribe("enterprise", T0 + timedelta(minutes=1))
    real_usage, seen = subscriptions_module.usage_lines, []

    def usage_fails_on_the_third_period(subscription, start, end):
        # Every time it is asked (the batch, then the subscription alone), as a broken store would.
        if subscription.id == victim.id:
            seen.append(start)
            if start == utc(2027, 3, 10, 8):
                raise ValueError("usage store unavailable")
        return real_usage(subscription, start, end)

    monkeypatch.setattr(subscriptions_module, "usage_lines", usage_fails_on_the_third_period)
    run = run_billing(AS_OF)

    assert [error["subscription_id"] for error in run.errors] == [victim.id]
    assert len(invoices_of(victim)) == 1  # its first two renewals went with the failed transaction
    assert reload(victim).current_period_end == utc(2027, 2, 10, 8)
    assert len(invoices_of(bystander)) == 4
    assert_numbers_gap_free(all_invoices())


@pytest.mark.usefixtures("ctx")
def test_recorded_errors_are_capped_but_every_subscription_is_attempted(monkeypatch):
    monkeypatch.setattr(runs, "MAX_RECORDED_ERRORS", 3)
    book = [subscribe("starter", T0 + timedelta(minutes=i)) for i in range(6)]
    monkeypatch.setattr(runs, "renew", lambda subscription, at, **_: (_ for _ in ()).throw(RuntimeError("down")))
    run = run_billing(utc(2027, 2, 11))
    assert (run.subscriptions_done, len(run.errors), run.invoices_created) == (6, 3, 0)
    assert all(reload(s).current_period_end < utc(2027, 2, 11) for s in book)


# --- the CLI ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("ctx")
def test_cli_prints_the_summary_and_exits_zero_when_all_went_well(app):
    subscribe("starter", T0)
    subscribe("enterprise", T0 + timedelta(hours=1))
    result = app.test_cli_runner().invoke(args=["billing", "run", "--at", "2027-02-10T09:00:00Z"])
    assert result.exit_code == 0, result.output
    assert (
        "as of 2027-02-10T09:00:00+00:00: 2 due, 2 billed, 2 invoice(s), $2,048.00 invoiced, 0 error(s)."
        in result.stdout
    )


@pytest.mark.usefixtures("ctx")
def test_cli_prints_each_error_and_exits_non_zero_when_a_subscription_failed(app, monkeypatch):
    ok, broken = subscribe("starter", T0), subscribe("starter", T0 + timedelta(minutes=1))
    fail_for(monkeypatch, broken.id, "payment gateway timeout")

    result = app.test_cli_runner().invoke(args=["billing", "run", "--at", "2027-02-11T00:00:00Z"])

    assert result.exit_code == 1
    assert "2 due, 1 billed, 1 invoice(s), $49.00 invoiced, 1 error(s)." in result.stdout
    assert f"{broken.id}: RuntimeError: payment gateway timeout" in result.stderr
    assert len(invoices_of(ok)) == 2 and len(invoices_of(broken)) == 1


# --- numbering ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ctx")
def test_invoice_numbers_are_inv_year_and_six_digits_consecutive_across_tenants_and_runs():
    book = [subscribe(plan, T0 + timedelta(minutes=i)) for i, plan in enumerate(["starter", "enterprise"] * 4)]
    run_billing(utc(2027, 2, 11))
    run_billing(utc(2027, 3, 11))
    numbers = sorted(invoice.number for s in book for invoice in invoices_of(s))
    assert all(NUMBER.match(number) and number.startswith("INV-2027-") for number in numbers)
    sequence = [int(number[-6:]) for number in numbers]
    assert sequence == list(range(sequence[0], sequence[0] + 24))
    # Issued in the order billed: a later period never has a smaller number.
    for subscription in book:
        issued = invoices_of(subscription)
        assert [i.period_start for i in issued] == sorted(i.period_start for i in issued)


# --- two runs at once, for real (PostgreSQL) ------------------------------------------------------


def test_two_runs_at_once_bill_what_one_run_bills_and_nothing_twice(committed_app):
    with committed_app.test_request_context():
        racing_book = [s.id for s in build_book()]
        first, second = runs.create_run("scheduler", AS_OF), runs.create_run("operator", AS_OF)
        commit()
        run_ids = [first.id, second.id]

    barrier, failures = threading.Barrier(2), []

    def execute(run_id):
        try:
            with committed_app.app_context():
                run = db.session.get(BillingRun, run_id)
                barrier.wait()
                runs.execute(run)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(repr(error))

    threads = [threading.Thread(target=execute, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert not any(thread.is_alive() for thread in threads)

    with committed_app.test_request_context():
        racing = [db.session.get(BillingRun, run_id) for run_id in run_ids]
        assert [run.status for run in racing] == ["completed", "completed"]
        assert [run.errors for run in racing] == [[], []]

        clean_book = build_book()
        alone = run_billing(AS_OF)
        assert alone.errors == []
        assert sum(run.invoices_created for run in racing) == alone.invoices_created
        racing_subscriptions = [db.session.get(Subscription, sid) for sid in racing_book]
        assert snapshot(racing_subscriptions) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())


def test_a_run_cut_into_shards_bills_what_one_shard_bills(committed_app, monkeypatch):
    """A run is cut into shards (jobs on the queue; here, the embedded mode, billed one after
    another); the result, figures and errors included, is the same as one shard's, and a
    subscription failing in one shard is recorded."""
    with committed_app.test_request_context():
        shared_book = [subscription.id for subscription in build_book()]
        failing = shared_book[7]
    real_renew = runs.renew

    def renew_failing_one(subscription, at, **kwargs):
        if subscription.id == failing:
            raise ValueError("the tax service is down")
        return real_renew(subscription, at, **kwargs)

    monkeypatch.setattr(runs, "renew", renew_failing_one)
    committed_app.config.update(BILLING_RUN_SHARD_SIZE=7)  # 30 due: five shards
    with committed_app.test_request_context():
        shared = run_billing(AS_OF)
        assert (shared.status, shared.subscriptions_due, shared.subscriptions_done) == ("completed", 30, 30)
        assert shared.errors == [{"subscription_id": failing, "error": "ValueError: the tax service is down"}]
        shards = db.session.query(BillingRunShard).filter_by(run_id=shared.id).order_by(BillingRunShard.position)
        assert [(len(shard.subscription_ids), shard.status) for shard in shards] == [(7, "done")] * 4 + [(2, "done")]

    monkeypatch.setattr(runs, "renew", real_renew)
    committed_app.config.update(BILLING_RUN_SHARD_SIZE=10**9)
    with committed_app.test_request_context():
        assert runs.due_subscription_ids(AS_OF) == [failing]  # left as it was, for the next run
        catch_up = run_billing(AS_OF)
        assert (catch_up.subscriptions_done, catch_up.errors) == (1, [])

        clean_book = build_book()
        alone = run_billing(AS_OF)
        assert alone.errors == []
        assert shared.invoices_created + catch_up.invoices_created == alone.invoices_created
        assert {
            currency: shared.totals.get(currency, 0) + catch_up.totals.get(currency, 0) for currency in alone.totals
        } == alone.totals
        shared_subscriptions = [db.session.get(Subscription, sid) for sid in shared_book]
        assert snapshot(shared_subscriptions) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())


# --- batches ------------------------------------------------------------------------------------


def usage_book() -> list[Subscription]:
    """Subscriptions with usage beyond what is included, anchored off the hour (so their periods
    start and end inside an hour: the roll-ups' whole hours and the events' partial ones)."""
    anchor = utc(2026, 1, 10, 8, 17, 13)
    heavy, light = subscribe("starter", anchor), subscribe("starter", anchor + timedelta(minutes=3))
    record(heavy.tenant_id, "compute_usage", Decimal("625.25"), at=anchor + timedelta(days=5), many=2)
    record(heavy.tenant_id, "compute_usage", Decimal("7.5"), at=anchor + timedelta(minutes=20))  # the first hour
    record(light.tenant_id, "compute_usage", Decimal("40"), at=anchor + timedelta(days=2))  # within the included
    return [heavy, light]


def issued_audit(book: list[Subscription]) -> list[tuple]:
    tenants = {reload(subscription).tenant_id for subscription in book}
    return sorted(
        (event.details["number"], event.details["total"])
        for event in db.session.query(AuditEvent).filter(
            AuditEvent.action == "invoice.issued", AuditEvent.tenant_id.in_(tenants)
        )
    )


@pytest.mark.usefixtures("ctx")
def test_a_batch_is_billed_as_a_set_and_bills_what_one_subscription_at_a_time_bills(monkeypatch):
    def fell_back(*args, **kwargs):
        raise AssertionError("a batch fell back to one subscription per transaction")

    monkeypatch.setattr(runs, "_renew_one_by_one", fell_back)
    batched_book = build_book(15) + usage_book()
    batched = run_billing(AS_OF)
    monkeypatch.undo()

    monkeypatch.setattr(runs, "BATCHED", False)
    single_book = build_book(15) + usage_book()
    single = run_billing(AS_OF)

    assert batched.errors == [] and single.errors == []
    assert (batched.subscriptions_billed, batched.invoices_created, batched.totals) == (
        single.subscriptions_billed,
        single.invoices_created,
        single.totals,
    )
    assert snapshot(batched_book) == snapshot(single_book)
    heavy_invoice = invoices_of(batched_book[-2])[1]
    # 1,250.5 + 7.5 hours, 100 included: 1,000 at 12 cents, then 158 at 10 cents.
    assert [(line.type, line.amount) for line in heavy_invoice.lines] == [
        ("plan", 4900),
        ("usage", 12000),
        ("usage", 1580),
    ]
    # Every invoice has its audit row, with its number, as when issued alone.
    assert [number for number, _ in issued_audit(batched_book)] == sorted(
        invoice.number for subscription in batched_book for invoice in invoices_of(subscription)
    )
    assert duplicate_periods() == []
    assert_numbers_gap_free(all_invoices())


def b2b_book() -> list[Subscription]:
    """Tenants taxed and discounted differently, side by side in one batch: domestic VAT,
    reverse charge, a Canadian province's rate, no billing profile; a discount for two periods
    (used up among the three periods caught up, so it ends within one renewal), one for ever,
    none."""
    address = {"address_line1": "1 Main Street", "city": "Somewhere", "postal_code": "12345"}
    profiles = [
        ProfileData(legal_name="Kunde GmbH", country="DE", **address),
        ProfileData(
            legal_name="Client SARL", country="FR", tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}], **address
        ),
        ProfileData(legal_name="Client Ltd", country="CA", region="ON", **address),
        None,
    ]
    two_periods = discounts.create_coupon(
        SYSTEM, "Two months", percent_off=25, duration="repeating", duration_periods=2
    )
    for_ever = discounts.create_coupon(SYSTEM, "Partner", amount_off=500, currency="USD", duration="forever")
    # Redeemed through a code by some: the code is named on each discount line.
    code = discounts.create_promotion_code(SYSTEM, for_ever, unique("PARTNER").upper(), at=T0)
    book = []
    for i in range(12):
        tenant = bare_tenant(f"B2B {i}")
        if profiles[i % 4] is not None:
            update_profile(SYSTEM, tenant, profiles[i % 4])
        subscription = subscribe(("starter", "professional")[i % 2], T0 + timedelta(hours=i), tenant)
        if i % 3 != 2:
            coupon = (two_periods, for_ever)[i % 3]
            through = code if coupon is for_ever and i % 2 else None
            discounts.apply(SYSTEM, subscription, coupon, through, at=T0 + timedelta(days=1))
        commit()
        book.append(subscription)
    return book


def b2b_snapshot(book: list[Subscription]) -> list[tuple]:
    """Each subscription's invoices (figures, tax note, lines with their tax) and discounts."""
    seen = []
    for subscription in book:
        subscription = reload(subscription)
        invoices = [
            (invoice.subtotal, invoice.discount, invoice.tax, invoice.total, invoice.tax_note)
            + tuple(
                # Each book has a code of its own: the line names it, the rest must match.
                (line.type, re.sub(r", code [A-Z0-9_-]+\)", ", code X)", line.description), line.amount)
                + (line.tax_name, line.tax_amount)
                for line in invoice.lines
            )
            for invoice in invoices_of(subscription)
        ]
        applied = db.session.execute(discounts.redemptions(tenant_id=subscription.tenant_id)).scalars()
        seen.append(
            (
                invoices,
                [
                    (d.status, d.periods_remaining, d.invoices_discounted, d.amount_discounted, d.ended_at)
                    for d in applied
                ],
            )
        )
    return seen


@pytest.mark.usefixtures("ctx")
def test_a_batch_taxes_and_discounts_each_subscription_as_one_at_a_time_does(app, monkeypatch):
    monkeypatch.setitem(app.config, "BILLING_SELLER_COUNTRY", "DE")

    def fell_back(*args, **kwargs):
        raise AssertionError("a batch fell back to one subscription per transaction")

    with monkeypatch.context() as batch_only:
        batch_only.setattr(runs, "_renew_one_by_one", fell_back)
        batched_book = b2b_book()
        assert run_billing(AS_OF).errors == []
    monkeypatch.setattr(runs, "BATCHED", False)
    single_book = b2b_book()
    assert run_billing(AS_OF).errors == []

    batched = b2b_snapshot(batched_book)
    assert batched == b2b_snapshot(single_book)
    # Tenant 0 (German, 19 %): the sign-up invoice, then three renewals; 25 % off the first two
    # (1,225 off 4,900: 3,675 + 698.25 VAT), then the discount has ended.
    german, french, canadian, no_profile = batched[:4]
    assert [invoice[:4] for invoice in german[0]] == [
        (4900, 0, 931, 5831),
        (4900, 1225, 698, 4373),
        (4900, 1225, 698, 4373),
        (4900, 0, 931, 5831),
    ]
    assert german[1][0][:4] == ("ended", 0, 2, 2450)
    # Tenant 1 (French VAT number, Professional after its trial): reverse charged, $5 off every
    # renewal for ever.
    assert {(invoice[2], invoice[4]) for invoice in french[0]} == {(0, taxes.REVERSE_CHARGE_NOTE)}
    assert [invoice[1] for invoice in french[0]] == [500, 500, 500]
    assert {line[1] for invoice in french[0] for line in invoice[5:] if line[0] == "discount"} == {
        "Discount: Partner ($5.00 off, code X)"
    }
    # Tenant 2 (Ontario): 13 % HST on $49, no discount; tenant 3: no profile, no tax.
    assert [invoice[2:4] for invoice in canadian[0]] == [(637, 5537)] * 4
    assert {invoice[2] for invoice in no_profile[0]} == {0}


@pytest.mark.usefixtures("ctx")
def test_a_crash_inside_a_batch_rolls_the_whole_batch_back_and_a_re_run_bills_it_once(monkeypatch):
    crashed_book = build_book()
    monkeypatch.setattr(runs, "PROGRESS_EVERY", 10)  # three batches of ten
    real_renew, calls = runs.renew, []

    def renew_then_die_on_the_13th(subscription, at, **kwargs):
        calls.append(subscription.id)
        issued = real_renew(subscription, at, **kwargs)
        if len(calls) == 13:
            raise SimulatedCrash
        return issued

    monkeypatch.setattr(runs, "renew", renew_then_die_on_the_13th)
    crashed = runs.create_run("worker", AS_OF)
    commit()
    with pytest.raises(SimulatedCrash):
        runs.execute(crashed)
    rollback()
    monkeypatch.setattr(runs, "renew", real_renew)

    assert db.session.get(BillingRun, crashed.id).subscriptions_done == 10  # the first batch
    settled = {s.id for s in crashed_book} - set(runs.due_subscription_ids(AS_OF))
    assert settled == set(calls[:10])  # the second batch went with the crash, whole

    rerun = run_billing(AS_OF)
    assert (rerun.subscriptions_due, rerun.errors) == (20, [])
    clean_book = build_book()
    clean = run_billing(AS_OF)
    assert clean.errors == []
    assert snapshot(crashed_book) == snapshot(clean_book)
    assert duplicate_periods() == []
    assert_numbers_gap_free(all_invoices())
