"""A billing run whose process was killed (issue 16): it is shown as stalled once its heartbeat
stops, and resuming it from the console or the CLI bills only what is left and ends it
"completed" with the figures of one clean run. On PostgreSQL the process is really SIGKILLed.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import jobs.billing
from portal.billing import runs
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import BillingRun, Invoice, Subscription, utcnow
from tests.billing_engine_support import (
    all_invoices,
    assert_numbers_gap_free,
    duplicate_periods,
    run_billing,
    subscribe,
)
from tests.conftest import HTMX
from tests.test_admin_billing import cell, flashes
from tests.test_billing_runs import AS_OF, SimulatedCrash, build_book, snapshot

ROOT = Path(__file__).resolve().parent.parent


def kill_half_way(monkeypatch, die_at: int = 13) -> tuple[str, list[str]]:
    """A run as of AS_OF over a fresh book of 30, its process dying while renewing the
    ``die_at``-th subscription (after its progress was last written at the 10th)."""
    book = [subscription.id for subscription in build_book()]
    monkeypatch.setattr(runs, "PROGRESS_EVERY", 5)
    monkeypatch.setattr(runs, "BATCHED", False)  # a commit per subscription: it dies between two
    real_renew, calls = runs.renew, []

    def renew_then_die(subscription, at, **kwargs):
        calls.append(subscription.id)
        issued = real_renew(subscription, at, **kwargs)
        if len(calls) == die_at:
            raise SimulatedCrash  # killed before this subscription's commit
        return issued

    monkeypatch.setattr(runs, "renew", renew_then_die)
    run = runs.create_run("worker", AS_OF)
    commit()
    with pytest.raises(SimulatedCrash):
        runs.execute(run)
    rollback()  # the dead process's open transaction is gone with it
    monkeypatch.setattr(runs, "renew", real_renew)
    monkeypatch.setattr(runs, "PROGRESS_EVERY", 25)
    monkeypatch.setattr(runs, "BATCHED", True)
    return run.id, book


def silence(run_id: str, minutes: int) -> None:
    """Time passes with no heartbeat from the dead process."""
    table = BillingRun.__table__
    db.session.execute(
        update(table).where(table.c.id == run_id).values(heartbeat_at=utcnow() - timedelta(minutes=minutes))
    )
    commit()
    # A Core UPDATE behind the ORM's back, in a test session that keeps objects over commits: the
    # run may be held from the dead process's last moments (an inline invoice email job loaded it).
    db.session.expire_all()


def clean_figures() -> tuple[list, BillingRun]:
    """The same book billed by one run that nobody killed."""
    book = build_book()
    run = run_billing(AS_OF)
    assert run.errors == []
    return book, run


def figures(run: BillingRun) -> tuple:
    return (
        run.status,
        run.subscriptions_due,
        run.subscriptions_done,
        run.subscriptions_billed,
        run.invoices_created,
        run.totals,
        run.errors,
    )


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


def test_a_killed_run_is_shown_stalled_and_resuming_it_in_the_console_bills_only_the_rest(
    app, operator_client, monkeypatch
):
    with app.test_request_context():
        run_id, book = kill_half_way(monkeypatch)
        killed = db.session.get(BillingRun, run_id)
        assert (killed.status, killed.subscriptions_done) == ("running", 10)  # its last report
        settled = set(book) - set(runs.due_subscription_ids(AS_OF))
        assert len(settled) == 12  # two more were billed and committed after that report
        invoices_before = {invoice.id for invoice in all_invoices()}
    url = f"/admin/billing/runs/{run_id}"

    # Just killed: its heartbeat is fresh, it still looks alive, and it cannot be resumed yet.
    page = operator_client.get(url).get_data(as_text=True)
    assert cell(page, "run-status") == "running" and "Resume…" not in page
    refused = operator_client.post(f"{url}/resume", follow_redirects=True).get_data(as_text=True)
    assert [m for m in flashes(refused) if m.startswith("This billing run is still running")]

    with app.test_request_context():
        silence(run_id, minutes=10)  # the default timeout is five minutes
    listing = operator_client.get("/admin/billing").get_data(as_text=True)
    row = re.search(rf'<tr data-testid="run-row" data-run-id="{run_id}">(.*?)</tr>', listing, flags=re.S).group(1)
    assert "badge-stalled" in row and ">stalled<" in row
    page = operator_client.get(url).get_data(as_text=True)
    assert 'data-status="stalled"' in page and cell(page, "run-status") == "stalled"
    assert 'data-testid="run-stalled-note"' in page
    assert re.search(r"<summary[^>]*>Resume…</summary>", page) and "Yes, resume" in page
    # Nothing moves until someone resumes it: the block stops polling (and never closes the
    # confirmation under the operator's pointer).
    fragment = operator_client.get(url, headers=HTMX)
    assert fragment.status_code == 286 and "hx-trigger" not in fragment.get_data(as_text=True)

    response = operator_client.post(f"{url}/resume")
    assert response.status_code == 303 and response.headers["Location"] == url
    page = operator_client.get(url).get_data(as_text=True)
    assert "Billing run resumed: the subscriptions still due are being billed." in flashes(page)
    assert 'data-status="completed"' in page and "Resume…" not in page

    with app.test_request_context():
        resumed = db.session.get(BillingRun, run_id, populate_existing=True)
        assert runs.due_subscription_ids(AS_OF) == []
        resumed_book = [db.session.get(Subscription, sid) for sid in book]
        # Only the 18 left were renewed on resuming (those cancelling end without an invoice);
        # the 12 billed before were not billed again.
        on_resume = {invoice.subscription_id for invoice in all_invoices() if invoice.id not in invoices_before}
        assert on_resume and on_resume <= set(book) - settled
        # The run's figures are the whole run's, the two subscriptions it never reported included.
        clean_book, clean = clean_figures()
        assert figures(resumed) == figures(clean)
        assert snapshot(resumed_book) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())
    # Done is done: a second resume is refused.
    again = operator_client.post(f"{url}/resume", follow_redirects=True).get_data(as_text=True)
    assert "This billing run has completed; there is nothing to resume." in flashes(again)


@pytest.mark.usefixtures("ctx")
def test_cli_resumes_a_stalled_run_and_prints_the_whole_runs_figures(app, monkeypatch):
    run_id, book = kill_half_way(monkeypatch, die_at=7)
    silence(run_id, minutes=6)
    assert runs.shown_status(db.session.get(BillingRun, run_id)) == "stalled"

    result = app.test_cli_runner().invoke(args=["billing", "resume", run_id])

    assert result.exit_code == 0, result.output
    resumed = db.session.get(BillingRun, run_id, populate_existing=True)
    resumed_book = [db.session.get(Subscription, sid) for sid in book]
    clean_book, clean = clean_figures()
    assert figures(resumed) == figures(clean)
    assert snapshot(resumed_book) == snapshot(clean_book)
    assert (
        f"Billing run {run_id} (resumed) as of 2027-04-12T09:00:00+00:00: 30 due, {clean.subscriptions_billed} "
        f"billed, {clean.invoices_created} invoice(s)" in result.stdout
    )
    again = app.test_cli_runner().invoke(args=["billing", "resume", run_id])
    assert again.exit_code == 1
    assert "This billing run has completed; there is nothing to resume." in again.output


@pytest.mark.usefixtures("ctx")
def test_a_live_run_or_an_unknown_one_cannot_be_resumed(app):
    run = runs.create_run("worker", AS_OF)
    commit()
    result = app.test_cli_runner().invoke(args=["billing", "resume", run.id])
    assert result.exit_code == 1 and "has not started yet" in result.output
    result = app.test_cli_runner().invoke(args=["billing", "resume", "run_nope"])
    assert result.exit_code == 1 and "There is no such billing run." in result.output


@pytest.mark.usefixtures("ctx")
def test_a_running_run_beats_its_heart_as_it_goes(monkeypatch):
    build_book(12)
    monkeypatch.setattr(runs, "PROGRESS_EVERY", 5)
    beats = []
    real_report = runs._report

    def report(run_id, tally):
        real_report(run_id, tally)
        beats.append(db.session.get(BillingRun, run_id).heartbeat_at)

    monkeypatch.setattr(runs, "_report", report)
    run = run_billing(AS_OF)
    assert run.status == "completed"
    assert len(beats) == 3  # after 5 and 10 subscriptions, and at the end
    assert all(beat is not None for beat in beats) and beats == sorted(beats)
    assert run.heartbeat_at == run.finished_at


# --- SIGKILL, for real (PostgreSQL) --------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from portal import create_app
    from portal.billing import runs
    from portal.infra.transactions import commit

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": sys.argv[1], "SECRET_KEY": "test-secret-key", "JOBS_INLINE": True,
        "REDIS_URL": "", "MAIL_SERVER": "", "BILLING_TEST_CLOCK": True,
    })
    runs.PROGRESS_EVERY = 4
    real_renew = runs.renew

    def slow_renew(subscription, at, **kwargs):
        time.sleep(0.15)  # slow enough to be killed in the middle
        return real_renew(subscription, at, **kwargs)

    runs.renew = slow_renew
    with app.app_context():
        runs.execute(runs.db.session.get(runs.BillingRun, sys.argv[2]))
    """
)


def test_a_run_sigkilled_on_postgresql_is_resumed_and_bills_exactly_what_a_clean_run_bills(committed_app):
    committed_app.config.update(BILLING_RUN_STALLED_AFTER_SECONDS=2)
    with committed_app.test_request_context():
        book = [subscription.id for subscription in build_book()]
        run = runs.create_run("worker", AS_OF)
        commit()
        run_id = run.id
        url = db.engine.url.render_as_string(hide_password=False)

    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, url, run_id], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with committed_app.app_context():
                done = db.session.get(BillingRun, run_id).subscriptions_done
            if done >= 8:
                break
            assert child.poll() is None, "the billing process ended before it could be killed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with committed_app.test_request_context():
        killed = db.session.get(BillingRun, run_id)
        assert killed.status == "running" and 8 <= killed.subscriptions_done < 30
        assert 0 < len(runs.due_subscription_ids(AS_OF)) < 30
        deadline = time.monotonic() + 30
        while runs.shown_status(db.session.get(BillingRun, run_id, populate_existing=True)) != "stalled":
            assert time.monotonic() < deadline, "the killed run was never shown as stalled"
            time.sleep(0.2)

    result = committed_app.test_cli_runner().invoke(args=["billing", "resume", run_id])
    assert result.exit_code == 0, result.output

    with committed_app.test_request_context():
        resumed = db.session.get(BillingRun, run_id)
        resumed_book = [db.session.get(Subscription, sid) for sid in book]
        clean_book, clean = clean_figures()
        assert figures(resumed) == figures(clean)
        assert snapshot(resumed_book) == snapshot(clean_book)
        assert duplicate_periods() == []
        assert_numbers_gap_free(all_invoices())


@pytest.mark.usefixtures("ctx")
def test_a_stalled_runs_job_requeued_from_failed_jobs_resumes_it(monkeypatch):
    run_id, book = kill_half_way(monkeypatch, die_at=21)
    silence(run_id, minutes=30)

    jobs.billing.execute_billing_run(run_id)  # what Requeue on the Failed jobs page runs

    resumed = db.session.get(BillingRun, run_id, populate_existing=True)
    resumed_book = [db.session.get(Subscription, sid) for sid in book]
    clean_book, clean = clean_figures()
    assert figures(resumed) == figures(clean)
    assert snapshot(resumed_book) == snapshot(clean_book)


@pytest.mark.usefixtures("ctx")
def test_a_stalled_preview_starts_over_when_resumed_and_still_bills_nothing(app, monkeypatch):
    monkeypatch.setitem(app.config, "BILLING_TEST_CLOCK", False)
    now = utcnow()
    book = [subscribe("starter", now - timedelta(days=20, minutes=i)) for i in range(7)]
    invoices_before = len(all_invoices())
    monkeypatch.setattr(runs, "PROGRESS_EVERY", 2)
    real_renew, calls = runs.renew, []

    def renew_then_die(subscription, at, **kwargs):
        calls.append(subscription.id)
        if len(calls) == 5:
            raise SimulatedCrash
        return real_renew(subscription, at, **kwargs)

    monkeypatch.setattr(runs, "renew", renew_then_die)
    preview = runs.create_run("operator", now + timedelta(weeks=5))
    commit()
    with pytest.raises(SimulatedCrash):
        runs.execute(preview)
    rollback()
    monkeypatch.setattr(runs, "renew", real_renew)
    assert db.session.get(BillingRun, preview.id).subscriptions_done == 4
    silence(preview.id, minutes=10)

    runs.claim_stalled(preview.id)
    commit()
    jobs.billing.resume_billing_run(preview.id)

    resumed = db.session.get(BillingRun, preview.id, populate_existing=True)
    assert (resumed.preview, resumed.status, resumed.subscriptions_due, resumed.subscriptions_done) == (
        True,
        "completed",
        7,
        7,
    )
    assert (resumed.subscriptions_billed, resumed.invoices_created, resumed.totals) == (7, 7, {"USD": 7 * 4900})
    assert len(resumed.preview_items) == 7
    assert len(all_invoices()) == invoices_before
    assert all(db.session.get(Subscription, s.id).current_period_start < now for s in book)
    assert db.session.query(Invoice).filter(Invoice.issued_at > utcnow()).count() == 0
