"""The operator console for billing: the plan catalog, billing runs and their live progress,
a tenant's subscription and invoices, and marking invoices paid or void."""

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, BillingRun, Invoice, PlanVersion, Subscription, utcnow
from portal.timezones import format_in
from tests.conftest import HTMX, field_error, make_app


@pytest.fixture
def operator(make_operator):
    return make_operator()


@pytest.fixture
def operator_client(app, operator, login):
    client = app.test_client()
    login(client, operator)
    return client


@pytest.fixture
def tenant(make_tenant):
    """A starter tenant: monthly, no trial, so its first $49.00 invoice is already issued."""
    return make_tenant(company_name="Billed Co")


def invoices_of(app, tenant) -> list[Invoice]:
    with app.app_context():
        return list(
            db.session.execute(
                select(Invoice).where(Invoice.tenant_id == tenant.tenant_id).order_by(Invoice.number)
            ).scalars()
        )


def first_invoice(app, tenant) -> Invoice:
    return invoices_of(app, tenant)[0]


def invoice_row(app, invoice_id: str) -> Invoice:
    with app.app_context():
        return db.session.get(Invoice, invoice_id, populate_existing=True)


def run_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(BillingRun))


def flashes(page: str) -> list[str]:
    return re.findall(r'<li class="flash flash-\w+" role="status">([^<]*)</li>', page)


def version_row(page: str, plan_key: str, version: int) -> str:
    plan = re.search(rf'<section data-testid="plan" data-plan-key="{plan_key}">(.*?)</section>', page, flags=re.S)
    assert plan, f"plan {plan_key} is not listed"
    row = re.search(rf'<tr data-testid="plan-version" data-version="{version}">(.*?)</tr>', plan.group(1), flags=re.S)
    assert row, f"{plan_key} v{version} is not listed"
    return row.group(1)


def cell(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</td>', html, flags=re.S)
    assert match, f"no {testid} in the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip()


def as_of_input(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


# --- who may enter ---------------------------------------------------------------------


def console_urls(app, tenant):
    invoice = first_invoice(app, tenant)
    with app.test_request_context():
        from portal.billing.runs import create_run
        from portal.infra.transactions import commit

        run = create_run("someone@example.com")
        commit()
    gets = [
        "/admin/plans",
        "/admin/billing",
        f"/admin/billing/runs/{run.id}",
        f"/admin/invoices/{invoice.id}",
        f"/admin/invoices/{invoice.id}.pdf",
    ]
    posts = {
        "/admin/billing/runs": {"as_of": ""},
        f"/admin/invoices/{invoice.id}/mark-paid": {"reference": "TRX-1"},
        f"/admin/invoices/{invoice.id}/mark-uncollectible": {"reason": "forged"},
        f"/admin/invoices/{invoice.id}/void": {"reason": "forged"},
    }
    return invoice, gets, posts


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_tenant_users_get_not_found_on_every_billing_console_url(client, app, tenant, make_user, login, role):
    # Even their own account's invoice: the operator's actions are not theirs to take.
    invoice, gets, posts = console_urls(app, tenant)
    runs_before = run_count(app)
    login(client, make_user(tenant, role=role))
    for url in gets:
        assert client.get(url).status_code == 404, url
        assert client.get(url, headers=HTMX).status_code == 404, url
    for url, data in posts.items():
        assert client.post(url, data=data).status_code == 404, url
    assert invoice_row(app, invoice.id).status == "open"
    assert run_count(app) == runs_before


def test_anonymous_visitor_is_sent_to_sign_in_and_changes_nothing(client, app, tenant):
    invoice, gets, posts = console_urls(app, tenant)
    runs_before = run_count(app)
    for url in [*gets, *posts]:
        response = client.get(url) if url in gets else client.post(url, data=posts[url])
        assert response.status_code == 302, url
        assert "/signin" in response.headers["Location"]
    assert invoice_row(app, invoice.id).status == "open"
    assert run_count(app) == runs_before


def test_unknown_run_or_invoice_is_not_found(operator_client):
    assert operator_client.get("/admin/billing/runs/run_nope").status_code == 404
    assert operator_client.get("/admin/invoices/inv_nope").status_code == 404
    assert operator_client.post("/admin/invoices/inv_nope/mark-paid", data={"reference": "x"}).status_code == 404
    assert operator_client.post("/admin/invoices/inv_nope/void", data={"reason": "x"}).status_code == 404
    assert operator_client.post("/admin/invoices/inv_nope/mark-uncollectible", data={"reason": "x"}).status_code == 404


def test_console_navigation_links_to_plans_and_billing_runs(operator_client):
    page = operator_client.get("/admin/plans").get_data(as_text=True)
    nav = re.search(r'<nav class="secondary-nav".*?</nav>', page, flags=re.S).group(0)
    assert re.search(r'<a href="/admin/plans"\s+aria-current="page">Plans</a>', nav)
    assert re.search(r'<a href="/admin/billing"\s*>Billing runs</a>', nav)
    page = operator_client.get("/admin/billing").get_data(as_text=True)
    assert re.search(r'<a href="/admin/billing"\s+aria-current="page">Billing runs</a>', page)


# --- plans -----------------------------------------------------------------------------


def test_plans_page_lists_the_catalog_with_prices_and_limits(operator_client, tenant):
    page = operator_client.get("/admin/plans").get_data(as_text=True)
    assert re.findall(r'data-testid="plan" data-plan-key="([^"]+)"', page) == [
        "starter",
        "starter_yearly",
        "professional",
        "professional_yearly",
        "enterprise",
        "enterprise_yearly",
    ]
    professional = version_row(page, "professional", 1)
    assert "$499.00 / month" in cell(professional, "price")
    assert "14 days" in professional
    assert 'data-testid="current-version"' in professional
    starter = version_row(page, "starter", 1)
    assert cell(starter, "price") == "$49.00 / month"
    assert "Pipelines a month: 1,000" in starter
    assert "100 / min" in starter and "5,000 / hour" in starter
    # The tenant made by the fixture subscribes to starter.
    assert cell(starter, "subscribers") == "1"
    assert cell(professional, "subscribers") == "0"
    assert "flask --app wsgi catalog sync" in page


def test_a_price_change_is_a_new_version_and_existing_subscribers_keep_theirs(
    operator_client, app, tenant, make_tenant
):
    from portal.billing.catalog import load_catalog
    from portal.billing.plans import sync_catalog
    from portal.infra.transactions import commit

    specs = load_catalog().plans
    specs = [spec.model_copy(update={"price": 5900}) if spec.key == "starter" else spec for spec in specs]
    with app.test_request_context():
        result = sync_catalog(specs)
        commit()
    assert result.new_versions == ["starter"]
    newcomer = make_tenant(company_name="Newcomer Co")

    page = operator_client.get("/admin/plans").get_data(as_text=True)
    v2, v1 = version_row(page, "starter", 2), version_row(page, "starter", 1)
    assert cell(v2, "price") == "$59.00 / month"
    assert 'data-testid="current-version"' in v2 and 'data-testid="current-version"' not in v1
    assert cell(v1, "price") == "$49.00 / month"
    # The existing subscriber stays on version 1; the newcomer signed up on version 2.
    assert cell(v1, "subscribers") == "1"
    assert cell(v2, "subscribers") == "1"
    with app.app_context():
        versions = dict(
            db.session.execute(
                select(Subscription.tenant_id, PlanVersion.version).join(PlanVersion, Subscription.plan_version)
            ).all()
        )
    assert versions[tenant.tenant_id] == 1 and versions[newcomer.tenant_id] == 2


# --- billing runs ----------------------------------------------------------------------


def test_run_as_of_forty_days_ahead_bills_the_monthly_subscription(operator_client, operator, app, tenant):
    assert len(invoices_of(app, tenant)) == 1
    response = operator_client.post("/admin/billing/runs", data={"as_of": as_of_input(utcnow() + timedelta(days=40))})
    assert response.status_code == 303
    run_url = response.headers["Location"]
    assert re.fullmatch(r"/admin/billing/runs/run_\w+", run_url)

    page = operator_client.get(run_url).get_data(as_text=True)
    assert "Billing run started." in flashes(page)
    assert 'data-status="completed"' in page
    assert cell(page, "run-status") == "completed"
    assert cell(page, "run-progress-count").startswith("1 of 1 due subscription")
    assert '<progress value="1" max="1">' in page
    assert cell(page, "run-billed") == "1 subscription"
    assert cell(page, "run-invoices") == "1"
    assert cell(page, "run-totals") == "$49.00"
    assert f"started by {operator.email}" in page
    assert 'hx-trigger="every 1s"' not in page

    # The second period's invoice exists, and the run is listed on the billing page.
    invoices = invoices_of(app, tenant)
    assert len(invoices) == 2 and invoices[1].total == 4900
    listing = operator_client.get("/admin/billing").get_data(as_text=True)
    run_id = run_url.rsplit("/", 1)[1]
    row = re.search(rf'<tr data-testid="run-row" data-run-id="{run_id}">(.*?)</tr>', listing, flags=re.S).group(1)
    assert "completed" in row and "$49.00" in row and operator.email in row

    # Running again as of the same day bills nothing twice.
    operator_client.post("/admin/billing/runs", data={"as_of": as_of_input(utcnow() + timedelta(days=40))})
    assert len(invoices_of(app, tenant)) == 2


def test_blank_as_of_runs_as_of_now_and_says_nothing_was_due(operator_client, app, tenant):
    response = operator_client.post("/admin/billing/runs", data={"as_of": ""}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert 'data-status="completed"' in page
    assert "No subscription was due." in page
    assert cell(page, "run-totals") == "nothing"
    assert len(invoices_of(app, tenant)) == 1


@pytest.mark.parametrize(
    "as_of, message",
    [
        ("next tuesday", "Enter a date and time such as 2026-01-31T00:00 (UTC), or leave it blank for now."),
        ("2026-13-45T99:99", "Enter a date and time such as 2026-01-31T00:00 (UTC), or leave it blank for now."),
        ("9999-12-31T23:59", "Choose a date at most a year from now: a later one would invoice years ahead."),
    ],
)
def test_bad_as_of_gets_a_field_error_and_queues_nothing(operator_client, app, tenant, as_of, message):
    runs_before = run_count(app)
    response = operator_client.post("/admin/billing/runs", data={"as_of": as_of})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "as_of") == message
    assert f'value="{as_of}"' in page  # what was typed stays in the box
    assert run_count(app) == runs_before
    assert len(invoices_of(app, tenant)) == 1


def test_progress_block_polls_while_the_run_is_unfinished_and_stops_when_it_is(operator_client, app, tenant):
    from portal.billing.runs import create_run, execute
    from portal.infra.transactions import commit

    with app.test_request_context():
        run = create_run("test", utcnow() + timedelta(days=40))
        commit()
        run_id = run.id
    url = f"/admin/billing/runs/{run_id}"

    waiting = operator_client.get(url, headers=HTMX)
    assert waiting.status_code == 200
    fragment = waiting.get_data(as_text=True)
    assert fragment.lstrip().startswith("<section")  # the block only, not the page
    assert "<html" not in fragment
    assert f'hx-get="{url}"' in fragment
    assert 'hx-trigger="every 1s"' in fragment and 'hx-swap="outerHTML"' in fragment
    assert 'data-status="queued"' in fragment
    assert "Waiting to start" in fragment
    assert "HX-Request" in waiting.headers["Vary"]
    # The full page of an unfinished run polls as well.
    assert 'hx-trigger="every 1s"' in operator_client.get(url).get_data(as_text=True)

    with app.test_request_context():
        execute(db.session.get(BillingRun, run_id))

    finished = operator_client.get(url, headers=HTMX)
    assert finished.status_code == 286  # htmx stops polling on this status
    fragment = finished.get_data(as_text=True)
    assert 'data-status="completed"' in fragment
    assert "hx-trigger" not in fragment and "hx-get" not in fragment
    assert cell(fragment, "run-totals") == "$49.00"
    # A boosted navigation to the run gets the whole page with a normal status.
    boosted = operator_client.get(url, headers={**HTMX, "HX-Boosted": "true"})
    assert boosted.status_code == 200 and "<html" in boosted.get_data(as_text=True)


def test_a_failing_subscription_is_listed_with_a_link_to_its_tenant(operator_client, app, tenant, monkeypatch):
    import portal.billing.runs as runs

    def broken_renew(subscription, at, **_):
        raise RuntimeError("card network unreachable")

    monkeypatch.setattr(runs, "renew", broken_renew)
    response = operator_client.post(
        "/admin/billing/runs", data={"as_of": as_of_input(utcnow() + timedelta(days=40))}, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    assert 'data-status="completed"' in page
    errors = re.search(r'<table data-testid="run-errors">(.*?)</table>', page, flags=re.S).group(1)
    assert f'<a href="/admin/tenants/{tenant.tenant_id}">{tenant.tenant_id}</a>' in errors
    assert "RuntimeError: card network unreachable" in errors
    assert cell(page, "run-billed") == "0 subscriptions"
    assert len(invoices_of(app, tenant)) == 1


# --- a tenant's subscription and invoices ----------------------------------------------------


def test_tenant_detail_shows_the_subscription_and_links_its_invoices(operator_client, app, tenant):
    invoice = first_invoice(app, tenant)
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert 'data-testid="subscription" data-status="active"' in page
    assert cell(page, "subscription-plan") == "Starter (v1) · $49.00 / month"
    assert cell(page, "scheduled-change") == "None"
    assert cell(page, "cancel-at-period-end") == "No"
    row = re.search(rf'<tr data-testid="invoice-row" data-invoice-id="{invoice.id}">(.*?)</tr>', page, flags=re.S)
    assert f'<a href="/admin/invoices/{invoice.id}">{invoice.number}</a>' in row.group(1)
    assert "$49.00" in row.group(1) and "open" in row.group(1)


def test_tenant_detail_shows_a_scheduled_downgrade_then_a_pending_cancellation(operator_client, app, make_tenant):
    from portal.access import SYSTEM
    from portal.billing import subscriptions
    from portal.infra.transactions import commit
    from portal.models import Tenant

    tenant = make_tenant(company_name="Shrinking Co")
    url = f"/admin/tenants/{tenant.tenant_id}"
    with app.test_request_context():
        subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        subscriptions.change_plan(SYSTEM, subscription, "professional")
        commit()
        subscriptions.change_plan(SYSTEM, subscription, "starter")
        commit()
        period_end = format_in(subscription.current_period_end, None)
    page = operator_client.get(url).get_data(as_text=True)
    assert cell(page, "subscription-plan") == "Professional (v1) · $499.00 / month"
    assert cell(page, "scheduled-change") == f"To Starter (v1, $49.00 / month) on {period_end}"
    assert cell(page, "cancel-at-period-end") == "No"

    with app.test_request_context():
        subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        subscriptions.cancel(SYSTEM, subscription, at_period_end=True, reason="too_expensive")
        commit()
    page = operator_client.get(url).get_data(as_text=True)
    assert cell(page, "cancel-at-period-end") == f"Yes: ends {period_end} (too_expensive)"
    assert cell(page, "scheduled-change") == "None"  # cancelling drops the downgrade
    # Upgrading issued a proration invoice: both invoices are listed, newest first.
    numbers = re.findall(r'<a href="/admin/invoices/inv_\w+">(INV-\d{4}-\d{6})</a>', page)
    assert len(numbers) == 2 and numbers == sorted(numbers, reverse=True)


def test_operator_invoice_page_shows_lines_and_totals(operator_client, app, tenant):
    invoice = first_invoice(app, tenant)
    page = operator_client.get(f"/admin/invoices/{invoice.id}").get_data(as_text=True)
    assert f"Invoice {invoice.number}" in page
    assert f'<a href="/admin/tenants/{tenant.tenant_id}">Billed Co</a>' in page
    assert "Starter plan (monthly)" in page
    assert cell(page, "invoice-total") == "$49.00"
    assert cell(page, "invoice-due") == "$49.00"
    assert "Mark paid…" in page and "Void…" in page


# --- mark paid and void ------------------------------------------------------------------


def test_the_operator_downloads_the_pdf_the_customer_gets(operator_client, app, tenant):
    from pypdf import PdfReader

    invoice = first_invoice(app, tenant)
    page = operator_client.get(f"/admin/invoices/{invoice.id}").get_data(as_text=True)
    assert f'href="/admin/invoices/{invoice.id}.pdf" download' in page
    response = operator_client.get(f"/admin/invoices/{invoice.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    text = PdfReader(io.BytesIO(response.data)).pages[0].extract_text()
    assert invoice.number in text and "Billed Co" in text and "$49.00" in text
    assert operator_client.get("/admin/invoices/inv_nothing.pdf").status_code == 404


def test_mark_paid_with_a_reference_shows_the_invoice_paid(operator_client, operator, app, tenant):
    invoice = first_invoice(app, tenant)
    response = operator_client.post(f"/admin/invoices/{invoice.id}/mark-paid", data={"reference": "  WIRE-2026-0042 "})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/invoices/{invoice.id}"

    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Invoice {invoice.number} is marked paid." in flashes(page)
    assert 'data-testid="invoice" data-status="paid"' in page
    assert '<code data-testid="payment-reference">WIRE-2026-0042</code>' in page
    assert cell(page, "invoice-due") == "$0.00"
    assert "Mark paid…" not in page and "Void…" not in page  # nothing left to do
    assert invoice_row(app, invoice.id).amount_paid == 4900
    with app.app_context():
        event = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "invoice.marked_paid", AuditEvent.target_id == invoice.id)
        ).scalar_one()
    assert event.actor_label == operator.email and event.tenant_id == tenant.tenant_id
    # The tenant's list in the console agrees.
    detail = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert "badge-paid" in re.search(rf'data-invoice-id="{invoice.id}">(.*?)</tr>', detail, flags=re.S).group(1)


@pytest.mark.parametrize(
    "reference, message",
    [
        ("", "Give the payment reference, e.g. the bank transfer id."),
        ("   ", "Give the payment reference, e.g. the bank transfer id."),
        ("x" * 201, "Use at most 200 characters."),
    ],
)
def test_mark_paid_needs_a_reference(operator_client, app, tenant, reference, message):
    invoice = first_invoice(app, tenant)
    response = operator_client.post(f"/admin/invoices/{invoice.id}/mark-paid", data={"reference": reference})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "reference") == message
    assert invoice_row(app, invoice.id).status == "open"


def test_void_requires_a_reason_then_voids_with_it(operator_client, app, tenant):
    invoice = first_invoice(app, tenant)
    response = operator_client.post(f"/admin/invoices/{invoice.id}/void", data={"reason": "  "})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "reason") == "Say why the invoice is voided."
    assert re.search(r'<details class="confirm" open>\s*<summary[^>]*>Void…', page)  # the form stays open
    assert invoice_row(app, invoice.id).status == "open"

    response = operator_client.post(f"/admin/invoices/{invoice.id}/void", data={"reason": "Issued twice by mistake"})
    assert response.status_code == 303
    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Invoice {invoice.number} is void." in flashes(page)
    assert 'data-testid="invoice" data-status="void"' in page
    assert '<span data-testid="void-reason">Issued twice by mistake</span>' in page
    assert cell(page, "invoice-due") == "$0.00"
    voided = invoice_row(app, invoice.id)
    assert (voided.status, voided.void_reason) == ("void", "Issued twice by mistake")


def test_marking_a_void_invoice_paid_is_refused_with_a_message(operator_client, app, tenant):
    invoice = first_invoice(app, tenant)
    operator_client.post(f"/admin/invoices/{invoice.id}/void", data={"reason": "Duplicate"})
    response = operator_client.post(f"/admin/invoices/{invoice.id}/mark-paid", data={"reference": "WIRE-1"})
    assert response.status_code == 303
    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Invoice {invoice.number} is void; only open or uncollectible invoices can be marked paid." in flashes(page)
    refused = invoice_row(app, invoice.id)
    assert (refused.status, refused.payment_reference, refused.amount_paid) == ("void", None, 0)


def test_voiding_a_paid_invoice_is_refused_with_a_message(operator_client, app, tenant):
    invoice = first_invoice(app, tenant)
    operator_client.post(f"/admin/invoices/{invoice.id}/mark-paid", data={"reference": "WIRE-7"})
    response = operator_client.post(
        f"/admin/invoices/{invoice.id}/void", data={"reason": "Changed my mind"}, follow_redirects=True
    )
    assert f"Invoice {invoice.number} is paid and cannot be voided." in flashes(response.get_data(as_text=True))
    paid = invoice_row(app, invoice.id)
    assert (paid.status, paid.void_reason) == ("paid", None)


# --- CSRF ------------------------------------------------------------------------------------


def test_every_billing_post_without_a_csrf_token_is_refused_and_changes_nothing(database_url, app, tenant, operator):
    csrf_app = make_app(database_url, WTF_CSRF_ENABLED=True)
    invoice = first_invoice(app, tenant)
    browser = csrf_app.test_client()
    page = browser.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    signed_in = browser.post(
        "/signin", data={"email": operator.email, "password": operator.password, "csrf_token": token}
    )
    assert signed_in.status_code == 303
    runs_before = run_count(app)
    for url, data in {
        "/admin/billing/runs": {"as_of": ""},
        f"/admin/invoices/{invoice.id}/mark-paid": {"reference": "WIRE-1"},
        f"/admin/invoices/{invoice.id}/mark-uncollectible": {"reason": "forged"},
        f"/admin/invoices/{invoice.id}/void": {"reason": "forged"},
    }.items():
        response = browser.post(url, data=data)
        assert response.status_code == 400, url
        assert "Your form expired or was sent from elsewhere." in response.get_data(as_text=True)
    assert run_count(app) == runs_before
    assert invoice_row(app, invoice.id).status == "open"

    # With the page's token the same form goes through.
    page = browser.get(f"/admin/invoices/{invoice.id}").get_data(as_text=True)
    token = re.search(
        r'id="mark-paid-form" novalidate>\s*<input id="csrf_token" name="csrf_token" type="hidden" '
        r'value="([^"]+)"',
        page,
    ).group(1)
    response = browser.post(
        f"/admin/invoices/{invoice.id}/mark-paid", data={"reference": "WIRE-1", "csrf_token": token}
    )
    assert response.status_code == 303
    assert invoice_row(app, invoice.id).status == "paid"
