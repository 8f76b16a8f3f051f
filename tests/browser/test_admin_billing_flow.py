"""The operator's billing console in a real browser: run billing, watch a run's progress block
poll until the run finishes (then stop), and mark a tenant's invoice paid."""

import re
import time
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def make_operator_and_tenant(live_server, suffix: str):
    from portal.access import SYSTEM
    from portal.auth.services import create_user
    from portal.infra.transactions import commit
    from portal.tenants.services import create_tenant

    email = f"op-{suffix}@portal.example"
    with live_server.app.test_request_context():
        create_user(email, PASSWORD, "Otto Operator", is_operator=True)
        tenant = create_tenant(SYSTEM, f"ledger_{suffix}", f"Ledger {suffix}", f"billing-{suffix}@ledger.example")
        commit()
        return email, tenant.tenant_id


def sign_in(page, email: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/tenants$"))


def test_operator_runs_billing_and_watches_a_queued_run_finish(live_server, open_browser):
    from portal.billing.runs import create_run, execute
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import BillingRun

    suffix = uuid.uuid4().hex[:8]
    email, _ = make_operator_and_tenant(live_server, suffix)
    page, console = open_browser()
    sign_in(page, email)

    # A run as of now from the console (inline in this mode): finished when its page shows.
    page.get_by_role("link", name="Billing runs").click()
    expect(page).to_have_url(re.compile(r"/admin/billing$"))
    page.get_by_role("button", name="Run billing now").click()
    expect(page).to_have_url(re.compile(r"/admin/billing/runs/run_\w+$"))
    expect(page.locator(".flash-success")).to_have_text("Billing run started.")
    expect(page.get_by_test_id("run-progress")).to_have_attribute("data-status", "completed")
    expect(page.get_by_test_id("run-progress")).not_to_have_attribute("hx-trigger", re.compile("every"))

    # A run a worker has not picked up yet: its block polls every second...
    with live_server.app.test_request_context():
        run = create_run(f"worker-{suffix}")
        commit()
        run_id = run.id
    polls: list[float] = []
    page.on("request", lambda request: polls.append(time.monotonic()) if request.url.endswith(run_id) else None)
    page.goto(f"/admin/billing/runs/{run_id}")
    block = page.get_by_test_id("run-progress")
    expect(block).to_have_attribute("data-status", "queued")
    expect(block).to_contain_text("Waiting to start")
    deadline = time.monotonic() + 5
    while len(polls) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(polls) >= 3, "the queued run's block did not poll"

    # ...and when the run finishes the block shows it without a reload, then stops asking.
    with live_server.app.test_request_context():
        execute(db.session.get(BillingRun, run_id))
    expect(block).to_have_attribute("data-status", "completed")
    expect(block.get_by_test_id("run-status")).to_have_text("completed")
    page.wait_for_timeout(1500)
    settled = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == settled, "the finished run's block kept polling"
    save_screenshot(page, "admin-billing-run.png")
    assert console.csp_violations == []


def test_operator_resumes_a_stalled_run_after_confirming(live_server, open_browser):
    from datetime import timedelta

    from portal.access import SYSTEM
    from portal.billing.runs import create_run, due_subscription_ids
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import BillingRun, Invoice, utcnow
    from portal.tenants.services import create_tenant

    suffix = uuid.uuid4().hex[:8]
    email, _ = make_operator_and_tenant(live_server, suffix)
    with live_server.app.test_request_context():
        # A tenant whose month ended ten days ago, and a run for it whose process died at once.
        late = create_tenant(
            SYSTEM,
            f"late_{suffix}",
            f"Late {suffix}",
            f"late-{suffix}@ledger.example",
            "starter",
            subscribed_at=utcnow() - timedelta(days=40),
        )
        run = create_run(f"worker-{suffix}")
        run.status, run.started_at = "running", utcnow() - timedelta(minutes=10)
        run.heartbeat_at, run.subscriptions_due = run.started_at, len(due_subscription_ids(run.as_of))
        commit()
        run_id, late_id = run.id, late.tenant_id

    page, console = open_browser()
    sign_in(page, email)
    page.goto(f"/admin/billing/runs/{run_id}")
    block = page.get_by_test_id("run-progress")
    expect(block).to_have_attribute("data-status", "stalled")
    expect(page.get_by_test_id("run-stalled-note")).to_contain_text("the process running it has most likely died")
    page.get_by_text("Resume…").click()
    page.wait_for_timeout(1500)  # a polling block would have replaced (and closed) the confirmation by now
    save_screenshot(page, "admin-billing-run-stalled.png")
    page.get_by_role("button", name="Yes, resume").click()

    expect(page.locator(".flash-success")).to_have_text(
        "Billing run resumed: the subscriptions still due are being billed."
    )
    expect(block).to_have_attribute("data-status", "completed")
    expect(page.get_by_test_id("run-stalled-note")).to_have_count(0)
    with live_server.app.app_context():
        assert db.session.get(BillingRun, run_id).status == "completed"
        assert db.session.query(Invoice).filter_by(tenant_id=late_id).count() == 2
    assert console.csp_violations == []


def test_operator_marks_a_tenants_invoice_paid(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    email, tenant_id = make_operator_and_tenant(live_server, suffix)
    page, console = open_browser()
    sign_in(page, email)

    page.goto(f"/admin/tenants/{tenant_id}")
    expect(page.get_by_test_id("subscription-plan")).to_have_text("Starter (v1) · $49.00 / month")
    page.get_by_test_id("invoice-row").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/admin/invoices/inv_\w+$"))
    expect(page.get_by_test_id("invoice-total")).to_have_text("$49.00")

    page.get_by_text("Mark paid…").click()
    form = page.locator("#mark-paid-form")
    form.get_by_role("button", name="Yes, mark paid").click()
    expect(page.locator("#reference-error")).to_have_text("Give the payment reference, e.g. the bank transfer id.")
    page.locator("#mark-paid-form").get_by_label("Payment reference").fill("WIRE-77")
    page.locator("#mark-paid-form").get_by_role("button", name="Yes, mark paid").click()
    expect(page.locator(".flash-success")).to_contain_text("is marked paid.")
    expect(page.get_by_test_id("invoice-status")).to_have_text("paid")
    expect(page.get_by_test_id("payment-reference")).to_have_text("WIRE-77")
    expect(page.locator("header.site")).to_have_count(1)
    save_screenshot(page, "admin-invoice-paid.png")

    # The catalog, one click away.
    page.get_by_role("link", name="Plans", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admin/plans$"))
    professional = page.locator('[data-testid="plan"][data-plan-key="professional"]')
    expect(professional.get_by_test_id("price").first).to_have_text("$499.00 / month")
    save_screenshot(page, "admin-plans.png")
    assert console.csp_violations == []
