"""A billing run "as of" a future instant is a preview (issue 16): it says what would be billed
and bills nothing (no subscription moved on, no invoice, no card charged, no dunning retry),
from the domain, the console and the CLI, unless the test clock is on, which production refuses.
"""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.config import check_production
from portal.credentials.crypto import generate_key
from portal.extensions import db
from portal.infra import queues
from portal.infra.transactions import commit
from portal.models import AuditEvent, CreditEntry, Invoice, Subscription, Tenant, utcnow
from tests.billing_engine_support import invoices_of, reload, run_billing, subscribe
from tests.test_admin_billing import as_of_input, cell, flashes

FIVE_WEEKS = timedelta(weeks=5)


@pytest.fixture
def production_clock(app, monkeypatch):
    """The test clock off, as in production: a future "as of" is only a preview."""
    monkeypatch.setitem(app.config, "BILLING_TEST_CLOCK", False)


@pytest.fixture
def card_payments(app, monkeypatch):
    """Card payment configured, and every job handed to the queue recorded instead of run (but
    emails: the first invoices of the subscriptions a test sets up queue theirs)."""
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_test_never_called")
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_never_called")
    enqueued: list[tuple[str, tuple]] = []

    def record(job, args, queue="default", **_):
        if queue != "email":
            enqueued.append((job, args))

    monkeypatch.setattr(queues, "enqueue", record)
    return enqueued


def live_state(subscription_ids: list[str]) -> dict:
    """Everything a billing run could write, as the tenants and the operator would see it."""
    return {
        "subscriptions": [
            (s.id, s.status, s.plan_version_id, s.current_period_start, s.current_period_end, s.period_index)
            for s in db.session.execute(
                select(Subscription).where(Subscription.id.in_(subscription_ids)).order_by(Subscription.id)
            ).scalars()
        ],
        "invoices": [
            (i.number, i.status, i.total, i.next_payment_attempt_at)
            for i in db.session.execute(select(Invoice).order_by(Invoice.number)).scalars()
        ],
        "audit_events": db.session.scalar(select(func.count()).select_from(AuditEvent)),
        "credit_entries": db.session.scalar(select(func.count()).select_from(CreditEntry)),
    }


@pytest.mark.usefixtures("ctx", "production_clock")
def test_a_run_as_of_five_weeks_ahead_is_a_preview_that_writes_nothing_and_charges_no_card(card_payments):
    now = utcnow()
    starter = subscribe("starter", now - timedelta(days=10))  # renews in about three weeks
    enterprise = subscribe("enterprise", now - timedelta(days=20))  # renews in about ten days
    with_card = db.session.get(Tenant, starter.tenant_id)
    with_card.stripe_customer_id, with_card.stripe_payment_method_id = "cus_preview", "pm_card_visa"
    # A failed payment whose dunning retry is due in three weeks: a real run then would retry it.
    [first_invoice] = invoices_of(enterprise)
    first_invoice.next_payment_attempt_at = now + timedelta(weeks=3)
    commit()
    before = live_state([starter.id, enterprise.id])

    run = run_billing(now + FIVE_WEEKS)

    # Nothing happened: periods, invoices, dunning, audit log and credit are as they were.
    assert live_state([starter.id, enterprise.id]) == before
    assert reload(starter).current_period_start <= utcnow()
    assert db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.issued_at > utcnow())) == 0
    assert card_payments == []  # no charge, no dunning retry handed to the queue
    # What a run then would bill: one renewal each, at the plans' prices.
    assert (run.preview, run.status, run.errors) == (True, "completed", [])
    assert (run.subscriptions_due, run.subscriptions_done, run.subscriptions_billed, run.invoices_created) == (
        2,
        2,
        2,
        2,
    )
    assert run.totals == {"USD": 4900 + 199900}
    assert sorted((item["tenant_id"], item["plan"], item["total"]) for item in run.preview_items) == sorted(
        [(starter.tenant_id, "Starter", 4900), (enterprise.tenant_id, "Enterprise", 199900)]
    )
    # A real run as of now (nothing due yet) is not a preview, and still finds nothing to do.
    today = run_billing(utcnow())
    assert (today.preview, today.subscriptions_due) == (False, 0)


@pytest.mark.usefixtures("ctx", "production_clock")
def test_a_run_as_of_a_past_instant_still_catches_up_for_real():
    now = utcnow()
    late = subscribe("starter", now - timedelta(days=70))  # two periods ended, never billed
    run = run_billing(now - timedelta(hours=1))
    assert (run.preview, run.status, run.invoices_created) == (False, "completed", 2)
    assert len(invoices_of(late)) == 3
    assert reload(late).current_period_start <= now < reload(late).current_period_end


@pytest.mark.usefixtures("ctx")
def test_with_the_test_clock_on_a_future_run_really_bills(app):
    assert app.config["BILLING_TEST_CLOCK"] is True  # the suite's own setting, for time travel
    subscription = subscribe("starter", utcnow() - timedelta(days=10))
    run = run_billing(utcnow() + FIVE_WEEKS)
    assert (run.preview, run.invoices_created) == (False, 1)
    assert reload(subscription).current_period_start > utcnow()


def test_production_refuses_to_start_with_the_test_clock_on():
    config = {
        "PORTAL_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://portal@db/portal",
        "MAIL_SERVER": "smtp.example.com",
        "CREDENTIALS_KEYS": generate_key(),
        "BILLING_TEST_CLOCK": False,
    }
    check_production(config)  # everything else is in order
    with pytest.raises(RuntimeError, match="BILLING_TEST_CLOCK must be off"):
        check_production({**config, "BILLING_TEST_CLOCK": True})


# --- the console and the CLI ---------------------------------------------------------------------


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


@pytest.mark.usefixtures("production_clock")
def test_console_shows_a_future_as_of_as_a_preview_and_bills_nothing(app, operator_client, make_tenant):
    tenant = make_tenant(company_name="Previewed Co")  # Starter, its first $49 invoice issued now
    with app.app_context():
        period_before = db.session.execute(
            select(Subscription.current_period_start, Subscription.current_period_end).where(
                Subscription.tenant_id == tenant.tenant_id
            )
        ).one()

    response = operator_client.post(
        "/admin/billing/runs", data={"as_of": as_of_input(utcnow() + FIVE_WEEKS)}, follow_redirects=True
    )
    page = response.get_data(as_text=True)

    assert "Preview started: the “as of” instant is in the future, so nothing will be billed." in flashes(page)
    assert 'data-status="completed"' in page and 'data-preview="true"' in page
    assert 'data-testid="run-preview-note"' in page and "nothing is billed" in page
    assert cell(page, "run-status") == "completed preview"
    assert cell(page, "run-billed") == "1 subscription"
    assert cell(page, "run-totals") == "$49.00"
    item = re.search(r'<tr data-testid="run-preview-item">(.*?)</tr>', page, flags=re.S).group(1)
    assert f'<a href="/admin/tenants/{tenant.tenant_id}">{tenant.tenant_id}</a>' in item and "$49.00" in item
    # Listed among the runs as a preview.
    listing = operator_client.get("/admin/billing").get_data(as_text=True)
    assert re.search(r'data-testid="run-row".*?badge-preview', listing, flags=re.S)

    with app.app_context():
        assert [i.total for i in db.session.scalars(select(Invoice).where(Invoice.tenant_id == tenant.tenant_id))] == [
            4900
        ]
        assert (
            db.session.execute(
                select(Subscription.current_period_start, Subscription.current_period_end).where(
                    Subscription.tenant_id == tenant.tenant_id
                )
            ).one()
            == period_before
        )


@pytest.mark.usefixtures("ctx", "production_clock")
def test_cli_describes_a_future_as_of_as_a_preview(app):
    subscription = subscribe("starter", utcnow() - timedelta(days=10))
    at = (utcnow() + FIVE_WEEKS).replace(microsecond=0)
    result = app.test_cli_runner().invoke(args=["billing", "run", "--at", at.isoformat()])
    assert result.exit_code == 0, result.output
    assert f"as of {at.isoformat()}: 1 due, would bill 1, 1 invoice(s), $49.00, 0 error(s)." in result.stdout
    assert result.stdout.startswith("Preview (Billing run run_")
    assert "Nothing was billed: the instant is in the future" in result.stdout
    assert f"  {subscription.tenant_id} (Starter): 1 invoice(s), $49.00" in result.stdout
    assert len(invoices_of(subscription)) == 1
    assert reload(subscription).current_period_start <= utcnow()
