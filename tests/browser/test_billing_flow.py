"""Billing in a real browser: an owner upgrades to Enterprise after seeing the exact preview, then
finds the invoice it issued, under the strict CSP. One navigation at a time: each boosted
navigation is waited for before the next click."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_owner_upgrades_to_enterprise_and_finds_the_invoice(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    page.goto("/signup")
    page.get_by_label("Company name").fill(f"Upward {suffix}")
    page.get_by_label("Account ID").fill(f"upward_{suffix}")
    page.get_by_label("Your name").fill("Uma Upward")
    page.get_by_label("Work email").fill(f"uma-{suffix}@upward.example")
    page.get_by_label("Password").fill(PASSWORD)
    expect(page.get_by_label("Starter: $49.00 / month")).to_be_checked()
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("overview-plan")).to_have_text("Starter")

    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page).to_have_url(re.compile(r"/billing$"))
    expect(page.get_by_test_id("current-plan")).to_have_text("Starter")
    enterprise = page.locator('[data-testid="plan-card"][data-plan="enterprise"]')
    expect(enterprise.get_by_test_id("plan-price")).to_have_text("$1,999.00 / month")
    save_screenshot(page, "billing-page.png")

    enterprise.get_by_role("button", name="Change plan to Enterprise").click()
    expect(page).to_have_url(re.compile(r"/billing/change/enterprise$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Change plan to Enterprise")
    # Just signed up: all of Starter's $49 comes back, all but seconds of Enterprise is charged.
    total = page.get_by_test_id("preview-total")
    expect(total).to_have_text(re.compile(r"^\$1,9[45]\d\.\d\d$"))
    previewed = total.inner_text()
    expect(page.get_by_test_id("preview-line")).to_have_count(2)
    save_screenshot(page, "billing-change-preview.png")

    page.get_by_role("button", name="Confirm upgrade to Enterprise").click()
    expect(page).to_have_url(re.compile(r"/billing$"))
    flash = page.locator(".flash-success")
    expect(flash).to_have_text(
        re.compile(rf"^Upgraded to Enterprise\. Invoice INV-\d{{4}}-\d{{6}} for {re.escape(previewed)} issued\.$")
    )
    number = re.search(r"INV-\d{4}-\d{6}", flash.inner_text()).group(0)
    expect(page.get_by_test_id("current-plan")).to_have_text("Enterprise")

    page.get_by_role("link", name="All invoices").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices$"))
    row = page.locator(f'[data-testid="invoice-row"][data-number="{number}"]')
    expect(row.get_by_test_id("invoice-total")).to_have_text(previewed)
    expect(page.get_by_test_id("invoice-row")).to_have_count(2)

    # The status filter swaps the table in place and keeps the URL shareable.
    page.get_by_label("Status").select_option("paid")
    expect(page).to_have_url(re.compile(r"/billing/invoices\?status=paid$"))
    expect(page.get_by_test_id("no-invoices")).to_have_text("No paid invoices.")
    page.get_by_label("Status").select_option("")
    expect(page).to_have_url(re.compile(r"/billing/invoices\?status=$"))
    expect(row).to_be_visible()

    row.get_by_role("link", name=number).click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    expect(page.get_by_test_id("total")).to_have_text(previewed)
    expect(page.get_by_test_id("invoice-line")).to_have_count(2)
    with page.expect_download() as download:
        page.get_by_test_id("pdf-link").click()
    assert download.value.suggested_filename == f"{number}.pdf"
    save_screenshot(page, "billing-invoice.png")

    expect(page.locator("header.site")).to_have_count(1)
    assert console.csp_violations == []
