"""Billing emails: invoice issued (with its PDF), payment receipt, upcoming yearly renewal, trial
ending, cancellation confirmed and plan changed; each sent once per cause, each but the receipt
switchable per tenant, in the invoice's currency with dates in UTC as the invoice writes them."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from jobs.billing import invoice_issued_email
from portal.access import SYSTEM
from portal.billing import invoices as invoice_service
from portal.billing import notices, subscriptions
from portal.billing.profile import ProfileData, billing_recipients
from portal.billing.profile import update as update_profile
from portal.extensions import db
from portal.infra.transactions import commit
from portal.mail import attachment_content
from portal.models import EmailAttachment, EmailMessage, Tenant
from tests.billing_engine_support import bare_tenant, invoices_of, reload, run_billing, subscribe, utc
from tests.conftest import make_app, unique
from tests.test_email_smtp import parts_of, smtp_server  # noqa: F401 (fixture)

T0 = utc(2027, 1, 10, 8, 0, 0)
T1 = utc(2027, 2, 10, 8, 0, 0)


def mails(tenant: Tenant, subject_part: str = "") -> list[EmailMessage]:
    """Every email sent about the tenant whose subject has ``subject_part``, oldest first."""
    rows = db.session.execute(
        select(EmailMessage).where(EmailMessage.tenant_id == tenant.tenant_id).order_by(EmailMessage.created_at)
    ).scalars()
    return [row for row in rows if subject_part in row.subject]


def attachments(message: EmailMessage) -> list[EmailAttachment]:
    return list(db.session.execute(select(EmailAttachment).where(EmailAttachment.message_id == message.id)).scalars())


def switch_off(tenant: Tenant, *kinds: str) -> None:
    notices.update_settings(SYSTEM, tenant, {kind: kind not in kinds for kind in notices.OPTIONAL_BILLING_EMAILS})
    commit()


@pytest.fixture
def tenant(ctx):
    """A tenant with no subscription yet; its emails go to its contact (no members)."""
    return bare_tenant(company_name="Mail Co")


# --- invoice issued ------------------------------------------------------------------------------


def test_the_first_invoice_is_emailed_with_its_pdf_in_its_currency_and_utc_dates(tenant):
    subscription = subscribe("starter", T0, tenant)
    [invoice] = invoices_of(subscription)

    [mail] = mails(tenant, "Invoice ")
    assert mail.to == tenant.contact_email
    assert mail.subject == f"Invoice {invoice.number} for $49.00"
    assert "issued on Jan 10, 2027" in mail.text_body
    assert "Starter plan (monthly), Jan 10, 2027 – Feb 10, 2027: $49.00" in mail.text_body
    assert "Total: $49.00" in mail.text_body and "Due on Jan 24, 2027" in mail.text_body
    assert "Dates are in UTC" in mail.text_body
    assert "<html" in mail.html_body and invoice.number in mail.html_body
    [pdf] = attachments(mail)
    assert (pdf.filename, pdf.content_type) == (f"{invoice.number}.pdf", "application/pdf")
    # Drawn when SMTP sends it (the outbox needs no PDF): the SMTP test below receives it.
    assert pdf.content is None and attachment_content(pdf).startswith(b"%PDF-")


def test_a_billing_run_run_again_or_a_retried_job_sends_no_second_invoice_email(tenant):
    subscription = subscribe("starter", T0, tenant)
    run_billing(T1)
    renewal = invoices_of(subscription)[-1]
    assert len(mails(tenant, renewal.number)) == 1

    again = run_billing(T1)
    invoice_issued_email(renewal.id)  # the job, retried
    commit()

    assert again.invoices_created == 0
    assert len(mails(tenant, renewal.number)) == 1
    assert len(mails(tenant, "Invoice ")) == 2  # the first month's and the renewal's, nothing else


def test_a_preview_run_emails_nothing(tenant, app, monkeypatch):
    subscribe("starter", T0, tenant)
    monkeypatch.setitem(app.config, "BILLING_TEST_CLOCK", False)
    before = len(mails(tenant))
    run = run_billing(T1 + timedelta(days=400))
    assert run.preview and run.invoices_created > 0
    assert len(mails(tenant)) == before


# --- payment receipts -----------------------------------------------------------------------------


def test_a_payment_gets_one_receipt_even_when_stripe_replays_it(tenant):
    subscription = subscribe("starter", T0, tenant)
    [invoice] = invoices_of(subscription)
    paid_at = utc(2027, 1, 12, 9)

    assert invoice_service.record_card_payment(invoice, 4900, "pi_123", paid_at)
    commit()
    assert not invoice_service.record_card_payment(invoice, 4900, "pi_123", paid_at)  # the webhook, replayed
    commit()

    [receipt] = mails(tenant, "Receipt")
    assert receipt.subject == f"Receipt for invoice {invoice.number}: $49.00 paid"
    assert "We received $49.00 for invoice" in receipt.text_body and "on Jan 12, 2027" in receipt.text_body
    assert "pi_123" in receipt.text_body
    # A receipt cannot be switched off, so it offers no such link.
    assert "Choose which billing emails" not in receipt.text_body


def test_switched_off_emails_are_not_sent_but_receipts_are(tenant):
    switch_off(tenant, *notices.OPTIONAL_BILLING_EMAILS)
    subscription = subscribe("starter", T0, tenant)
    [invoice] = invoices_of(subscription)
    subscriptions.change_plan(SYSTEM, subscription, "professional", at=utc(2027, 1, 15))
    commit()
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 16))
    commit()
    invoice_service.mark_paid(SYSTEM, invoice, "bank transfer 42", utc(2027, 1, 17))
    commit()

    assert len(invoices_of(subscription)) == 2  # the first month and the upgrade's proration
    assert [mail.subject for mail in mails(tenant)] == [f"Receipt for invoice {invoice.number}: $49.00 paid"]


def test_turning_one_email_off_leaves_the_others_on(tenant):
    switch_off(tenant, "invoice_issued")
    subscription = subscribe("starter", T0, tenant)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 16))
    commit()
    assert [mail.subject for mail in mails(tenant)] == ["Your Starter subscription is cancelled"]


# --- plan changed and cancellation ----------------------------------------------------------------


def test_an_upgrade_is_confirmed_with_the_invoice_and_a_scheduled_downgrade_with_its_date(tenant):
    subscription = subscribe("starter", T0, tenant)
    _, invoice = subscriptions.change_plan(SYSTEM, subscription, "starter_yearly", at=utc(2027, 1, 20))
    commit()
    [upgraded] = mails(tenant, "Your plan is now")
    assert upgraded.subject == "Your plan is now Starter (yearly)"
    assert "now on Starter (yearly) ($490.00 / year), changed from Starter on Jan 20, 2027" in upgraded.text_body
    assert f"Invoice {invoice.number} for {'$%.2f' % (invoice.total / 100)}" in upgraded.text_body
    assert "the unused time on Starter credited" in upgraded.text_body

    subscriptions.change_plan(SYSTEM, reload(subscription), "starter", at=utc(2027, 3, 1))
    commit()
    [scheduled] = mails(tenant, "Your plan changes to")
    assert "from Starter (yearly) to Starter ($49.00 / month) on Jan 20, 2028" in scheduled.text_body


def test_each_cancellation_is_confirmed_once_and_a_second_one_after_resuming_is_confirmed_again(tenant):
    subscription = subscribe("starter", T0, tenant)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 15))
    commit()
    [first] = mails(tenant, "cancelled")
    assert "It ends on Feb 10, 2027" in first.text_body

    subscriptions.resume(SYSTEM, subscription, at=utc(2027, 1, 16))
    subscriptions.cancel(SYSTEM, subscription, at_period_end=False, at=utc(2027, 1, 17))
    commit()
    run_billing(T1)  # the run ends nothing more: no other email
    assert [mail.text_body.count("ended on Jan 17, 2027") for mail in mails(tenant, "cancelled")] == [0, 1]


# --- reminders: the billing run's periodic pass ---------------------------------------------------


def test_a_yearly_renewal_is_announced_7_days_before_once(tenant):
    subscription = subscribe("starter_yearly", T0, tenant)
    renews = utc(2028, 1, 10, 8)

    run_billing(renews - timedelta(days=7, seconds=1))
    assert mails(tenant, "renews") == []
    run_billing(renews - timedelta(days=7))
    run_billing(renews - timedelta(days=3))  # a later run, and the same one again
    run_billing(renews - timedelta(days=3))

    [reminder] = mails(tenant, "renews")
    assert reminder.subject == "Your Starter (yearly) subscription renews on Jan 10, 2028"
    assert "The next year will be invoiced then: $490.00" in reminder.text_body
    # The next year's is announced in its turn.
    run_billing(renews)
    assert reload(subscription).current_period_end == utc(2029, 1, 10, 8)
    run_billing(utc(2029, 1, 4))
    assert len(mails(tenant, "renews")) == 2


def test_monthly_and_cancelled_yearly_plans_get_no_renewal_reminder(tenant, make_tenant):
    subscribe("starter", T0, tenant)
    other = bare_tenant()
    cancelled = subscribe("starter_yearly", T0, other)
    subscriptions.cancel(SYSTEM, cancelled, at=utc(2027, 6, 1))
    commit()
    run_billing(utc(2027, 2, 5))
    run_billing(utc(2028, 1, 5))
    assert mails(tenant, "renews") == [] and mails(other, "renews") == []


def test_a_trial_ending_is_announced_3_days_before_once(tenant):
    subscription = subscribe("professional", T0, tenant)
    trial_end = reload(subscription).trial_end
    assert trial_end == utc(2027, 1, 24, 8)

    run_billing(trial_end - timedelta(days=4))
    assert mails(tenant, "trial") == []
    run_billing(trial_end - timedelta(days=3))
    run_billing(trial_end - timedelta(days=1))

    [reminder] = mails(tenant, "trial")
    assert reminder.subject == "Your Professional trial ends on Jan 24, 2027"
    assert "Then the first month is invoiced: $499.00" in reminder.text_body
    assert "There is no card on file" in reminder.text_body


def test_without_a_billing_email_the_owner_and_admins_get_them_then_the_billing_details_decide(
    make_tenant, make_user, ctx
):
    tenant = make_tenant(company_name="Team Mail Co")
    admin = make_user(tenant, role="admin")
    make_user(tenant, role="viewer")
    owner = make_user(tenant, role="owner")
    assert sorted(billing_recipients(tenant)) == sorted([owner.email, admin.email])
    subscriptions.change_plan(SYSTEM, subscriptions.subscription_of(tenant), "professional")
    commit()
    assert sorted(mail.to for mail in mails(tenant, "Your plan")) == sorted([owner.email, admin.email])

    update_profile(
        SYSTEM, tenant, ProfileData(billing_email="ap@team-mail.example", extra_recipients=["cfo@team-mail.example"])
    )
    subscriptions.cancel(SYSTEM, subscriptions.subscription_of(tenant))
    commit()
    assert sorted(mail.to for mail in mails(tenant, "cancelled")) == ["ap@team-mail.example", "cfo@team-mail.example"]


# --- over SMTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp_app(database_url, smtp_server):  # noqa: F811
    return make_app(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)


def test_the_invoice_email_arrives_over_smtp_with_the_pdf_attached(smtp_app, smtp_server):  # noqa: F811
    with smtp_app.test_request_context():
        tenant = bare_tenant(company_name="Smtp Co")
        tenant.contact_email = f"{unique('ap')}@smtp.example"
        subscription = subscribe("starter", T0, tenant)
        [invoice] = invoices_of(subscription)

    [delivered] = smtp_server.inbox.to(tenant.contact_email)
    mail = delivered.message
    assert mail["Subject"] == f"Invoice {invoice.number} for $49.00"
    assert mail.get_content_type() == "multipart/mixed"
    body, pdf = list(mail.iter_parts())
    assert [kind for kind, _ in parts_of(body)] == ["text/plain", "text/html"]
    assert (pdf.get_content_type(), pdf.get_filename()) == ("application/pdf", f"{invoice.number}.pdf")
    assert pdf.get_content().startswith(b"%PDF-")


# --- Billing → Emails ---------------------------------------------------------------------------


@pytest.fixture
def members(make_tenant, make_user):
    tenant = make_tenant(company_name="Settings Co")
    return tenant, {role: make_user(tenant, role=role) for role in ("owner", "admin", "viewer")}


def test_owner_switches_billing_emails_off_and_the_page_shows_the_choice(client, app, members, login):
    tenant, team = members
    login(client, team["admin"])
    page = client.get("/billing").get_data(as_text=True)
    assert 'href="/billing/emails"' in page
    page = client.get("/billing/emails").get_data(as_text=True)
    assert page.count('role="switch"') == 6 and page.count("checked") == 6
    assert team["owner"].email in page and team["admin"].email in page and team["viewer"].email not in page

    response = client.post("/billing/emails", data={"invoice_issued": "y", "trial_ending": "y"})
    assert response.status_code == 303 and response.headers["Location"] == "/billing/emails"
    page = client.get("/billing/emails").get_data(as_text=True)
    assert "Billing email choices saved. Payment receipts are always sent." in page
    assert page.count("checked") == 3  # the two kept, and the receipt's (disabled) switch
    with app.app_context():
        settings = notices.settings_of(tenant.tenant_id)
        assert settings.wants("invoice_issued") and settings.wants("trial_ending") and settings.wants("payment_receipt")
        assert not settings.wants("plan_changed") and not settings.wants("renewal_upcoming")
    activity = client.get("/activity").get_data(as_text=True)
    assert "Billing emails changed" in activity
    assert "Upcoming renewal, Cancellation confirmed, Plan changed" in activity


def test_viewers_cannot_read_or_change_billing_emails(client, app, members, login):
    tenant, team = members
    login(client, team["viewer"])
    assert 'href="/billing/emails"' not in client.get("/billing").get_data(as_text=True)
    assert client.get("/billing/emails").status_code == 403
    assert client.post("/billing/emails", data={}).status_code == 403
    with app.app_context():
        assert notices.settings_of(tenant.tenant_id).wants("plan_changed")
