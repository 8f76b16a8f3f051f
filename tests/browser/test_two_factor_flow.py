"""Two-factor authentication in real Chromium: an authenticator app (codes computed with pyotp
from the key the page shows), a passkey on Chromium's virtual authenticator (CDP), signing in
with each, recovery codes, and an owner who requires two-factor of every member.

Passkeys run at http://localhost:<port>, not 127.0.0.1: browsers refuse an IP address as the
WebAuthn RP ID, and the portal offers passkeys on a loopback PUBLIC_BASE_URL only to requests
for localhost (portal.auth.two_factor.services.relying_party).
"""

import re
import time
import uuid

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import TIMEOUT_MS, ConsoleLog, save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

WIDTHS = (360, 1920)


@pytest.fixture
def localhost_browser(browser, live_server):
    """open() -> (context, page, console) on http://localhost:<port> (the same live server)."""
    base_url = live_server.url.replace("127.0.0.1", "localhost")
    contexts = []

    def open_context(width: int = 1280):
        context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console = ConsoleLog()
        page.on("console", console.record)
        return context, page, console

    yield open_context
    for context in contexts:
        context.close()


def code_for(secret: str, steps_from_now: int = 0) -> str:
    """The app's code; never within a second of a step boundary, so it is still good when it arrives.

    Enrolment uses the current step and later sign-ins the next one (the server accepts one step
    either way and each step once): both stay good for a whole step however slow the machine."""
    if 30 - time.time() % 30 < 1.5:
        time.sleep(1.6)
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_from_now)


def add_virtual_authenticator(context, page) -> None:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )


def sign_up(page, company: str, tenant_id: str, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(company)
    page.get_by_label("Account ID").fill(tenant_id)
    page.get_by_label("Your name").fill("Tess Twofactor")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def password_step(page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("One more step")
    expect(page.get_by_test_id("signed-in-as")).to_have_count(0)


def enrol_app(page) -> tuple[str, list[str]]:
    """From the two-factor page: set up the authenticator app; (secret, recovery codes)."""
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up an authenticator app")
    expect(page.get_by_test_id("totp-qr").locator("svg")).to_be_visible()
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from the app").fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#code-error")).to_contain_text("That code is not correct")
    page.get_by_label("Code from the app").fill(code_for(secret))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor authentication is on")
    codes = page.get_by_test_id("recovery-code").all_inner_texts()
    assert len(codes) == 10
    return secret, codes


# What in <main> reaches past the window's right edge (the page's own content; the site header is
# the layout's). A table may scroll inside its own box, so what it holds is not counted.
WIDER_THAN_WINDOW = """() => [...document.querySelectorAll("main *")]
  .filter((e) => !e.closest(".table-scroll") && e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : ""))"""


def assert_fits(page, name: str) -> None:
    """Nothing in the page wider than the window (360 px phones to 1920 px); a screenshot at each width."""
    width = page.viewport_size["width"]
    assert page.evaluate(WIDER_THAN_WINDOW) == [], f"{name} does not fit a {width}px window"
    save_screenshot(page, f"two-factor-{name}-{width}.png")


def test_app_passkey_and_recovery_codes_from_set_up_to_sign_in(live_server, localhost_browser):
    suffix = uuid.uuid4().hex[:8]
    email = f"tess-{suffix}@twofactor.example"
    context, page, console = localhost_browser()
    sign_up(page, f"Twofold {suffix}", f"twofold_{suffix}", email)

    # The account page links to two-factor; the app is set up with a code computed from the key shown.
    page.get_by_test_id("signed-in-as").get_by_role("link").click()
    expect(page.get_by_test_id("two-factor-summary")).to_contain_text("Your password alone signs you in.")
    page.get_by_role("button", name="Manage two-factor authentication").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor authentication")
    secret, codes = enrol_app(page)
    page.get_by_role("button", name="I have saved them").click()
    expect(page.get_by_test_id("totp-status")).to_contain_text("on")
    expect(page.get_by_test_id("recovery-codes-left")).to_contain_text("10 of 10 recovery codes left")

    # A passkey on Chromium's virtual authenticator.
    add_virtual_authenticator(context, page)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#add-passkey-form [data-passkey-error]")).to_have_text(
        "Give the passkey a name first, such as “Work laptop”."
    )
    page.get_by_label("Name of this passkey").fill("Work laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator(".flash-success")).to_have_text("Passkey “Work laptop” added.")
    expect(page.locator('[data-testid="passkey-row"][data-name="Work laptop"]')).to_be_visible()

    # Password alone is not enough: the app's code is the second step.
    sign_out(page)
    password_step(page, email)
    page.get_by_label("Code").fill(code_for(secret, 1))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("signed-in-as")).to_have_text(email)

    # The passkey alone: no email, no password.
    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("signed-in-as")).to_have_text(email)

    # The passkey as the second step.
    sign_out(page)
    password_step(page, email)
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("signed-in-as")).to_have_text(email)

    # A recovery code works once.
    sign_out(page)
    password_step(page, email)
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account/two-factor$"))
    expect(page.locator(".flash-warning")).to_contain_text("You signed in with a recovery code; 9 left.")
    sign_out(page)
    password_step(page, email)
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#code-error")).to_have_text("That recovery code is not correct, or it was already used.")
    expect(page.get_by_test_id("signed-in-as")).to_have_count(0)
    assert_fits(page, "second-step")

    assert [m for m in live_server.emails_to(email) if m.subject.startswith("Security:")], "security emails"
    assert console.csp_violations == []


def test_two_factor_pages_fit_from_360_to_1920_pixels(live_server, localhost_browser):
    for width in WIDTHS:
        suffix = uuid.uuid4().hex[:8]
        context, page, console = localhost_browser(width)
        sign_up(page, f"Narrow {suffix}", f"narrow_{suffix}", f"nina-{suffix}@narrow.example")
        page.goto("/account/two-factor")
        assert_fits(page, "settings")
        page.get_by_role("button", name="Set up an authenticator app").click()
        expect(page.get_by_test_id("totp-qr").locator("svg")).to_be_visible()
        qr = page.get_by_test_id("totp-qr").locator("svg").bounding_box()
        assert 150 <= qr["width"] <= min(400, width - 32), qr  # scannable, inside the screen's margins
        assert_fits(page, "setup")
        secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
        page.get_by_label("Code from the app").fill(code_for(secret, 1))
        page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_test_id("recovery-code")).to_have_count(10)
        assert_fits(page, "recovery-codes")
        sign_out(page)
        assert_fits(page, "sign-in")
        assert console.csp_violations == []


def test_an_owner_requiring_two_factor_sends_a_member_to_set_it_up(live_server, localhost_browser, open_browser):
    suffix = uuid.uuid4().hex[:8]
    company = f"Strict {suffix}"
    member_email = f"mo-{suffix}@strict.example"
    context, owner, owner_console = localhost_browser()
    sign_up(owner, company, f"strict_{suffix}", f"olga-{suffix}@strict.example")

    # The owner sets up two-factor first, then requires it in the settings.
    owner.goto("/account/two-factor")
    enrol_app(owner)
    owner.get_by_role("link", name="Settings", exact=True).click()
    owner.get_by_label("Require two-factor authentication for every member").check()
    owner.locator("#two-factor-policy-form").get_by_role("button", name="Save").click()
    expect(owner.locator(".flash-success")).to_have_text(
        "Every member now needs two-factor authentication to use this account."
    )

    # A new member joins from the invitation and is sent to set it up before anything else.
    owner.get_by_role("link", name="Team", exact=True).click()
    owner.locator("#invite-form").get_by_label("Email").fill(member_email)
    owner.locator("#invite-form").get_by_role("button", name="Send invitation").click()
    expect(owner.locator(".flash-success")).to_have_text(f"Invitation sent to {member_email}.")
    member, member_console = open_browser()
    member.goto(live_server.link_in_latest_email(member_email, "/invite/"))
    member.get_by_label("Your name").fill("Mo Member")
    member.get_by_label("Choose a password").fill(PASSWORD)
    member.get_by_role("button", name="Create account and join").click()
    expect(member).to_have_url(re.compile(r"/account/two-factor$"))
    expect(member.locator(".flash-warning")).to_have_text(
        f"{company} requires two-factor authentication. Set up two-factor authentication to continue."
    )
    member.goto("/team")
    expect(member).to_have_url(re.compile(r"/account/two-factor$"))

    enrol_app(member)
    member.get_by_role("button", name="I have saved them").click()
    # Wait for that page before the next click: clicking on while it loads races two navigations.
    expect(member.get_by_test_id("totp-status")).to_contain_text("on")
    member.get_by_role("link", name="Overview", exact=True).click()
    expect(member).to_have_url(re.compile(r"/overview$"))
    expect(member.locator("main")).to_contain_text("you are")
    assert owner_console.csp_violations == []
    assert member_console.csp_violations == []
