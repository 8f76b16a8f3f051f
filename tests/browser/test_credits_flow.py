"""Credits in a real browser: the operator grants credit on a tenant's page through the
confirmation step, sees a clear error when deducting too much, and the tenant's owner finds the
balance and ledger on the Billing page."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.browser.test_admin_billing_flow import make_operator_and_tenant, sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_operator_grants_credit_and_the_owner_sees_it_on_the_billing_page(live_server, open_browser):
    from portal.auth.services import create_user
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import Membership

    suffix = uuid.uuid4().hex[:8]
    email, tenant_id = make_operator_and_tenant(live_server, suffix)
    owner_email = f"owner-{suffix}@ledger.example"
    with live_server.app.test_request_context():
        owner = create_user(owner_email, PASSWORD, "Olga Owner")
        db.session.add(Membership(tenant_id=tenant_id, user_id=owner.id, role="owner"))
        commit()

    page, console = open_browser()
    sign_in(page, email)
    page.goto(f"/admin/tenants/{tenant_id}")
    expect(page.get_by_test_id("credit-balance")).to_have_text("$0.00")

    page.get_by_text("Grant credit…").click()
    form = page.locator("#grant-credit-form")
    form.get_by_label("Amount").fill("30")
    form.get_by_label("Reason").fill("Sorry for the outage")
    form.get_by_role("button", name="Review grant").click()
    expect(page.get_by_test_id("credit-confirm-summary")).to_contain_text("Grant $30.00 of credit to")
    page.get_by_test_id("credit-confirm").click()
    expect(page.locator(".flash-success")).to_contain_text("$30.00 of credit granted to")
    expect(page.get_by_test_id("credit-balance")).to_have_text("$30.00")

    page.get_by_text("Deduct credit…").click()
    form = page.locator("#deduct-credit-form")
    form.get_by_label("Amount").fill("31")
    form.get_by_label("Reason").fill("Too much")
    form.get_by_role("button", name="Review deduction").click()
    page.get_by_test_id("credit-confirm").click()
    expect(page.locator("#deduct-amount-error")).to_have_text(
        "Cannot deduct $31.00: the credit balance is only $30.00."
    )
    expect(page.get_by_test_id("credit-balance")).to_have_text("$30.00")
    save_screenshot(page, "admin-credits.png")
    assert console.csp_violations == []

    owner_page, owner_console = open_browser()
    owner_page.goto("/signin")
    owner_page.get_by_label("Email").fill(owner_email)
    owner_page.get_by_label("Password").fill(PASSWORD)
    owner_page.get_by_role("button", name="Sign in").click()
    expect(owner_page.get_by_test_id("signed-in-as")).to_have_text(owner_email)  # signed in, not still posting
    owner_page.goto("/billing")
    expect(owner_page).to_have_url(re.compile(r"/billing$"))
    expect(owner_page.get_by_test_id("credit-balance")).to_have_text("$30.00")
    expect(owner_page.get_by_test_id("credit-ledger")).to_contain_text("Sorry for the outage")
    save_screenshot(owner_page, "billing-credits.png")
    assert owner_console.csp_violations == []
