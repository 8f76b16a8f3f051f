"""Time travel: ``flask --app wsgi billing run --at …`` and runs.execute across month ends, leap
days, a run that was down for months, and daylight saving time changes (periods are UTC).
"""

import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import BillingRun
from tests.billing_engine_support import (
    NUMBER,
    add_plan,
    invoices_of,
    prorated,
    reload,
    run_billing,
    subscribe,
    utc,
)

pytestmark = pytest.mark.usefixtures("ctx")

NEW_YORK, BERLIN = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")


@pytest.fixture
def billing_run(app):
    """billing_run("2027-02-28T10:00:00Z") -> the CLI's result (output, exit code)."""
    runner = app.test_cli_runner()

    def invoke(at: str):
        return runner.invoke(args=["billing", "run", "--at", at])

    return invoke


def periods(subscription) -> list[tuple]:
    return [(invoice.period_start, invoice.period_end) for invoice in invoices_of(subscription, "period")]


# --- month ends and leap days -------------------------------------------------------------------


@pytest.mark.parametrize("year, february_end", [(2027, 28), (2028, 29)])
def test_jan_31_anchor_bills_feb_28_or_29_then_mar_31_never_drifting(billing_run, year, february_end):
    subscription = subscribe("starter", utc(year, 1, 31, 10))
    feb, mar, apr = utc(year, 2, february_end, 10), utc(year, 3, 31, 10), utc(year, 4, 30, 10)
    assert reload(subscription).current_period_end == feb

    early = billing_run(f"{year}-02-{february_end}T09:59:59Z")
    assert early.exit_code == 0, early.output
    assert "0 invoice(s)" in early.output

    result = billing_run(f"{year}-02-{february_end}T10:00:00Z")
    assert result.exit_code == 0, result.output
    assert "1 billed, 1 invoice(s), $49.00 invoiced, 0 error(s)" in result.output
    result = billing_run(f"{year}-03-31T10:00:00Z")
    assert result.exit_code == 0, result.output

    assert periods(subscription) == [(utc(year, 1, 31, 10), feb), (feb, mar), (mar, apr)]
    march = invoices_of(subscription)[-1]
    assert march.lines[0].description == f"Starter plan (monthly), Mar 31, {year} – Apr 30, {year}"
    assert march.issued_at == mar


def test_leap_day_anchor_on_a_yearly_plan_bills_feb_28_and_returns_to_feb_29_in_leap_years(billing_run):
    add_plan("leap_yearly", 120000, interval="year", name="Leap yearly")
    subscription = subscribe("leap_yearly", utc(2028, 2, 29, 12))
    assert reload(subscription).current_period_end == utc(2029, 2, 28, 12)

    assert billing_run("2029-02-28T12:00:00Z").exit_code == 0
    assert periods(subscription)[-1] == (utc(2029, 2, 28, 12), utc(2030, 2, 28, 12))

    result = billing_run("2032-02-29T12:00:00Z")  # three years later in one run
    assert result.exit_code == 0, result.output
    assert "3 invoice(s), $3,600.00 invoiced" in result.output
    assert periods(subscription) == [
        (utc(2028, 2, 29, 12), utc(2029, 2, 28, 12)),
        (utc(2029, 2, 28, 12), utc(2030, 2, 28, 12)),
        (utc(2030, 2, 28, 12), utc(2031, 2, 28, 12)),
        (utc(2031, 2, 28, 12), utc(2032, 2, 29, 12)),
        (utc(2032, 2, 29, 12), utc(2033, 2, 28, 12)),
    ]
    assert all(invoice.total == 120000 for invoice in invoices_of(subscription))


# --- catching up --------------------------------------------------------------------------------


def test_a_run_down_for_three_months_catches_up_with_three_invoices_in_order(billing_run):
    subscription = subscribe("starter", utc(2027, 1, 15))
    other = subscribe("enterprise", utc(2027, 1, 20))

    result = billing_run("2027-04-20T00:00:00Z")

    assert result.exit_code == 0, result.output
    assert "2 due, 2 billed, 6 invoice(s), $6,144.00 invoiced, 0 error(s)" in result.output
    mine = invoices_of(subscription)
    assert [invoice.period_start for invoice in mine] == [utc(2027, m, 15) for m in (1, 2, 3, 4)]
    # Each renewal is issued as of its own boundary, so it is dated as it would have been.
    assert [invoice.issued_at for invoice in mine[1:]] == [utc(2027, m, 15) for m in (2, 3, 4)]
    assert [invoice.total for invoice in mine] == [4900] * 4
    assert reload(subscription).current_period_end == utc(2027, 5, 15)

    # Numbers are consecutive, in the order the periods were billed, with nothing in between.
    numbers = [int(NUMBER.match(invoice.number).group(2)) for invoice in mine[1:]]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]
    theirs = [int(NUMBER.match(invoice.number).group(2)) for invoice in invoices_of(other)[1:]]
    assert sorted(numbers + theirs) == list(range(numbers[0], numbers[0] + 6))

    again = billing_run("2027-04-20T00:00:00Z")
    assert "0 due, 0 billed, 0 invoice(s)" in again.output
    assert len(invoices_of(subscription)) == 4


def test_catching_up_applies_a_scheduled_downgrade_at_its_boundary_only():
    subscription = subscribe("enterprise", utc(2027, 1, 15))
    subscriptions.change_plan(SYSTEM, subscription, "starter", at=utc(2027, 1, 20))
    commit()

    run_billing(utc(2027, 4, 20))

    assert [(i.period_start, i.total) for i in invoices_of(subscription)] == [
        (utc(2027, 1, 15), 199900),
        (utc(2027, 2, 15), 4900),
        (utc(2027, 3, 15), 4900),
        (utc(2027, 4, 15), 4900),
    ]


def test_catching_up_ends_a_cancelled_subscription_at_the_first_boundary():
    subscription = subscribe("starter", utc(2027, 1, 15))
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()
    run = run_billing(utc(2027, 6, 1))
    assert run.invoices_created == 0
    subscription = reload(subscription)
    assert (subscription.status, subscription.ended_at) == ("canceled", utc(2027, 2, 15))


def test_catching_up_through_a_new_year_restarts_numbering_for_that_year():
    subscription = subscribe("starter", utc(2040, 11, 5))
    run_billing(utc(2041, 2, 6))
    numbers = [invoice.number for invoice in invoices_of(subscription)]
    # Nov 5 and Dec 5 are billed in 2040, Jan 5 and Feb 5 in 2041.
    assert [n[:9] for n in numbers] == ["INV-2040-", "INV-2040-", "INV-2041-", "INV-2041-"]
    first, second = (int(n[-6:]) for n in numbers if n.startswith("INV-2041-"))
    assert (first, second) == (1, 2)  # no one else bills in 2041 in this test's database


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["yesterday", "2027-13-01T00:00:00Z", "2027-02-30", ""])
def test_cli_refuses_an_instant_it_cannot_read_and_starts_no_run(app, at):
    before = db.session.execute(select(func.count()).select_from(BillingRun)).scalar()
    result = app.test_cli_runner().invoke(args=["billing", "run", "--at", at])
    if at == "":
        # An empty --at means "now", like leaving it out.
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    assert "is not an ISO 8601 instant such as 2026-01-31T00:00:00Z" in result.output
    assert db.session.execute(select(func.count()).select_from(BillingRun)).scalar() == before


# --- daylight saving time -----------------------------------------------------------------------


def test_us_dst_change_does_not_move_period_boundaries_they_are_utc_instants(billing_run):
    # Signed up at 07:00 New York time in winter (EST, UTC-5), i.e. 12:00 UTC. DST starts on
    # Mar 14, 2027; the period still ends at 12:00 UTC, which New York sees as 08:00 EDT.
    signed_up = utc(2027, 3, 1, 7).replace(tzinfo=NEW_YORK)
    subscription = subscribe("starter", signed_up)
    subscription = reload(subscription)
    assert subscription.current_period_start == utc(2027, 3, 1, 12)
    assert subscription.current_period_end == utc(2027, 4, 1, 12)
    assert subscription.current_period_end.astimezone(NEW_YORK).hour == 8

    # The operator passes instants in their own zone: the same instant bills the same.
    assert "0 invoice(s)" in billing_run("2027-04-01T07:59:59-04:00").output
    result = billing_run("2027-04-01T08:00:00-04:00")
    assert "1 invoice(s)" in result.output, result.output
    assert periods(subscription)[-1] == (utc(2027, 4, 1, 12), utc(2027, 5, 1, 12))
    start, end = periods(subscription)[0]
    assert end - start == timedelta(days=31)  # 744 hours, though New York's clocks show 743


def test_eu_dst_end_leaves_periods_and_proration_in_utc_seconds():
    # Signed up at noon Berlin summer time (CEST, UTC+2) on Oct 15; DST ends Oct 31, 2027.
    subscription = subscribe("starter", utc(2027, 10, 15, 12).replace(tzinfo=BERLIN))
    start, end = utc(2027, 10, 15, 10), utc(2027, 11, 15, 10)
    assert (reload(subscription).current_period_start, subscription.current_period_end) == (start, end)

    # Upgrading at 09:00 Berlin winter time (CET, UTC+1) on Nov 1 is 08:00 UTC.
    at = utc(2027, 11, 1, 9).replace(tzinfo=BERLIN)
    _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional", at=at)
    commit()
    assert invoice.period_start == utc(2027, 11, 1, 8)
    assert [line.amount for line in invoice.lines] == [
        -prorated(4900, start, end, utc(2027, 11, 1, 8)),
        prorated(49900, start, end, utc(2027, 11, 1, 8)),
    ]


def test_the_servers_local_timezone_does_not_change_billing(billing_run, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        subscription = subscribe("starter", utc(2027, 3, 1, 12))
        # An --at without an offset is UTC, whatever zone the server runs in.
        assert "0 invoice(s)" in billing_run("2027-04-01T11:59:59").output
        assert "1 invoice(s)" in billing_run("2027-04-01T12:00:00").output
        assert periods(subscription)[-1] == (utc(2027, 4, 1, 12), utc(2027, 5, 1, 12))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_run_time_of_day_in_a_viewer_zone_never_shifts_which_period_is_billed():
    # A period boundary at 00:30 UTC is still "yesterday evening" in New York; a run as of
    # 20:29:59 New York time (00:29:59 UTC) must not bill it, 20:30:00 must.
    subscription = subscribe("starter", utc(2027, 6, 1, 0, 30))
    assert run_billing(utc(2027, 6, 30, 20, 29, 59).replace(tzinfo=NEW_YORK)).invoices_created == 0
    assert run_billing(utc(2027, 6, 30, 20, 30).replace(tzinfo=NEW_YORK)).invoices_created == 1
    assert periods(subscription)[-1] == (utc(2027, 7, 1, 0, 30), utc(2027, 8, 1, 0, 30))
