"""Your account in a real browser: see where you are signed in, change the password, and the
other browser is signed out while this one carries on; the page fits a phone and a wide screen."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a fresh and longer passphrase"


def sign_up(page, suffix: str, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(f"Juniper {suffix}")
    page.get_by_label("Account ID").fill(f"juniper_{suffix}")
    page.get_by_label("Your name").fill("Jun Owner")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))


def sign_in(page, email: str, password: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def overflowing(page) -> list[str]:
    """What on the page (below the site header, whose nav is the layout's) sticks out to the right."""
    return page.evaluate(
        """() => [...document.querySelectorAll('main *')]
            .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
            .map(el => el.tagName + (el.id ? '#' + el.id : '') + ' ' + (el.textContent || '').trim().slice(0, 40))"""
    )


def test_changing_the_password_on_the_account_page_signs_out_the_other_browser(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    email = f"jun-{suffix}@juniper.example"
    laptop, laptop_console = open_browser()
    sign_up(laptop, suffix, email)
    phone, phone_console = open_browser()
    sign_in(phone, email, PASSWORD)
    expect(phone).to_have_url(re.compile(r"/overview$"))

    # The account page is the email address in the header; it lists both browsers.
    laptop.get_by_test_id("signed-in-as").get_by_role("link").click()
    expect(laptop).to_have_url(re.compile(r"/account$"))
    sessions = laptop.locator("#account-sessions")
    expect(sessions.get_by_test_id("session-row")).to_have_count(2)
    expect(sessions.locator('[data-current="true"]')).to_contain_text("This browser")
    expect(sessions.get_by_test_id("session-device").first).to_have_text("Chrome on Linux")

    # A wrong current password is refused beside its field; what was typed is not kept.
    form = laptop.locator("#password-form")
    form.get_by_label("Current password").fill("not my password")
    form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    form.get_by_label("New password again").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(laptop.locator("#current_password-error")).to_have_text("That password is not correct.")
    expect(laptop.locator("#current_password")).to_have_value("")

    form = laptop.locator("#password-form")
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    form.get_by_label("New password again").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(laptop.locator(".flash-success")).to_have_text(
        "Your password is changed. Every other browser and device is signed out."
    )
    expect(laptop).to_have_url(re.compile(r"/account$"))
    expect(sessions.get_by_test_id("session-row")).to_have_count(1)
    expect(sessions.get_by_test_id("no-other-sessions")).to_be_visible()
    messages = live_server.emails_to(email)
    assert messages[0].subject == "Security: your password was changed"

    # The phone's next click lands on sign-in; the old password no longer opens the account.
    phone.get_by_role("link", name="Team", exact=True).click()
    expect(phone).to_have_url(re.compile(r"/signin\?next=%2Fteam$"))
    sign_in(phone, email, PASSWORD)
    expect(phone.locator(".form-errors")).to_have_text("Email or password is not correct.")
    sign_in(phone, email, NEW_PASSWORD)
    expect(phone).to_have_url(re.compile(r"/overview$"))

    # The laptop carries on, and the page fits a phone's screen and a wide one.
    laptop.reload()
    expect(sessions.get_by_test_id("session-row")).to_have_count(2)
    for width, height in ((360, 740), (1920, 1080)):
        laptop.set_viewport_size({"width": width, "height": height})
        assert overflowing(laptop) == [], f"wider than {width}px"
        expect(laptop.get_by_role("button", name="Change password")).to_be_visible()
        expect(laptop.get_by_role("button", name="Send confirmation link")).to_be_visible()
    laptop.set_viewport_size({"width": 360, "height": 740})
    save_screenshot(laptop, "account-page-360.png")
    laptop.set_viewport_size({"width": 1920, "height": 1080})
    save_screenshot(laptop, "account-page-1920.png")

    assert laptop_console.csp_violations == []
    assert phone_console.csp_violations == []
