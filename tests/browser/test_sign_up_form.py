"""The sign-up form in a real browser: htmx fragment swaps under the strict CSP."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_sign_up_error_shows_field_message_keeps_input_and_breaks_no_csp_rule(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    company = f"Quill & Quire {suffix}"
    email = f"quentin-{suffix}@quill.example"
    page, console = open_browser()
    page.goto("/signup")

    # Typing the company name asks htmx for a suggested account id.
    page.get_by_label("Company name").fill(company)
    expect(page.get_by_test_id("suggested-tenant-id")).to_have_text(f"quill_quire_{suffix}")

    page.get_by_label("Account ID").fill("quill quire!")
    page.get_by_label("Your name").fill("Quentin Quill")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    # The form comes back in place with the message beside the field and the input kept.
    account_id = page.get_by_label("Account ID")
    expect(page.locator("#tenant_id-error")).to_have_text("Use 3 to 50 letters, digits or underscores.")
    expect(account_id).to_have_attribute("aria-invalid", "true")
    expect(account_id).to_have_value("quill quire!")
    expect(page.get_by_label("Company name")).to_have_value(company)
    expect(page.get_by_label("Your name")).to_have_value("Quentin Quill")
    expect(page.get_by_label("Work email")).to_have_value(email)
    expect(page.locator(".field-error")).to_have_count(1)
    # Swapped as a fragment: still one page, not a page pasted inside the form.
    expect(page).to_have_url(re.compile(r"/signup$"))
    expect(page.locator("header.site")).to_have_count(1)
    expect(page.get_by_role("heading", name="Create your account")).to_have_count(1)
    expect(page.get_by_role("link", name="Sign in", exact=True).first).to_be_visible()

    # The re-rendered form still submits (its CSRF token travelled with the fragment).
    account_id.fill(f"quill_{suffix}")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(company)
    expect(page.get_by_test_id("signed-in-as")).to_have_text(email)

    assert console.csp_violations == []
