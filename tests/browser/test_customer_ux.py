"""What a customer notices in a real browser: the menu on a phone, keyboard use, the account ID
suggestion, and an address bar that always names the page shown (a reload shows it again)."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _sign_up(page, company: str, email: str, plan: str | None = None) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(company)
    # The suggestion fills the Account ID field itself (no copying from a hint).
    expect(page.get_by_label("Account ID")).not_to_have_value("")
    page.get_by_label("Your name").fill("Mara Müller")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if plan:
        page.get_by_label(re.compile(rf"^{plan}")).check()
    page.get_by_role("button", name="Create account").click()


def test_sign_up_fills_a_transliterated_account_id_and_lands_on_a_reloadable_overview(live_server, open_browser):
    suffix = uuid.uuid4().hex[:6]
    page, console = open_browser()
    page.goto("/signup")
    page.get_by_label("Company name").fill(f"Müller & Söhne {suffix}")
    account_id = page.get_by_label("Account ID")
    expect(account_id).to_have_value(f"muller_sohne_{suffix}")
    # Typing on in the company name keeps the suggestion in step...
    page.get_by_label("Company name").fill(f"Müller & Söhne {suffix} KG")
    expect(account_id).to_have_value(f"muller_sohne_{suffix}_kg")
    # ...until the person types an ID of their own, which a later suggestion leaves alone.
    account_id.fill(f"ms_{suffix}")
    page.get_by_label("Company name").fill(f"Müller & Söhne {suffix} GmbH")
    expect(page.get_by_test_id("suggested-tenant-id")).to_have_text(f"muller_sohne_{suffix}_gmbh")
    expect(account_id).to_have_value(f"ms_{suffix}")

    page.get_by_label("Your name").fill("Mara Müller")
    page.get_by_label("Work email").fill(f"mara-{suffix}@muller.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    page.reload()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Müller & Söhne {suffix} GmbH")
    assert console.csp_violations == []


def test_confirming_a_plan_change_shows_the_billing_page_at_its_own_address(live_server, open_browser):
    suffix = uuid.uuid4().hex[:6]
    page, console = open_browser()
    _sign_up(page, f"Downshift {suffix}", f"dora-{suffix}@downshift.example")
    expect(page).to_have_url(re.compile(r"/overview$"))
    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page).to_have_url(re.compile(r"/billing$"))
    page.locator('[data-testid="plan-card"][data-plan="professional"]').get_by_role("button").click()
    expect(page).to_have_url(re.compile(r"/billing/change/professional$"))
    page.get_by_test_id("confirm-change").click()
    expect(page.locator(".flash-success")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/billing$"))
    page.reload()
    expect(page).to_have_url(re.compile(r"/billing$"))
    expect(page.get_by_test_id("current-plan")).to_have_text("Professional")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/billing/change/professional$"))
    assert console.csp_violations == []


def test_on_a_phone_the_navigation_is_a_menu_that_opens_by_keyboard(live_server, open_browser):
    suffix = uuid.uuid4().hex[:6]
    page, console = open_browser()
    _sign_up(page, f"Pocket {suffix}", f"pia-{suffix}@pocket.example")
    expect(page).to_have_url(re.compile(r"/overview$"))
    team = page.get_by_role("link", name="Team", exact=True)
    menu = page.locator("nav.site-nav summary")
    # Wide: every link in a row, no menu button.
    expect(team).to_be_visible()
    expect(menu).to_be_hidden()

    page.set_viewport_size({"width": 360, "height": 740})
    expect(menu).to_be_visible()
    expect(team).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(team).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    team.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/team$"))
    # The new page starts with the menu closed again.
    expect(page.get_by_role("link", name="Team", exact=True)).to_be_hidden()
    assert console.csp_violations == []


def test_a_long_company_name_is_cut_short_in_the_header_with_the_full_name_on_hover(live_server, open_browser):
    suffix = uuid.uuid4().hex[:6]
    name = f"Verylongcompanynamewithoutanyspaces{suffix}" * 4
    page, console = open_browser()
    _sign_up(page, name, f"lou-{suffix}@long.example")
    expect(page).to_have_url(re.compile(r"/overview$"))
    shown = page.get_by_test_id("current-tenant")
    expect(shown).to_have_attribute("title", name)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        box = shown.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()


def test_help_text_sits_under_its_own_field_and_errors_are_announced(live_server, open_browser):
    page, console = open_browser()
    page.goto("/signup")
    account_id = page.get_by_label("Account ID")
    help_text = page.locator("#tenant_id-help")
    next_label = page.locator('label[for="name"]')
    field_box, help_box, next_box = account_id.bounding_box(), help_text.bounding_box(), next_label.bounding_box()
    gap_to_own = help_box["y"] - (field_box["y"] + field_box["height"])
    gap_to_next = next_box["y"] - (help_box["y"] + help_box["height"])
    assert 0 <= gap_to_own < gap_to_next
    expect(account_id).to_have_attribute("aria-describedby", "tenant_id-help")

    account_id.fill("no spaces allowed")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#tenant_id-error")).to_be_visible()
    expect(account_id).to_have_attribute("aria-invalid", "true")
    expect(account_id).to_have_attribute("aria-describedby", "tenant_id-error")
    assert console.csp_violations == []
