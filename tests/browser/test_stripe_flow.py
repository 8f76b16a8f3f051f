"""Cards in a real browser against localstripe: its stand-in Stripe.js renders the Elements
form, the portal confirms the SetupIntent with it and charges the open invoice to the new card,
and the invoice turns paid on the page only once localstripe's signed
``payment_intent.succeeded`` webhook has been processed. A card that wants 3-D Secure cannot be
charged while nobody is there, so the customer pays with Pay now and authenticates."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import _serve, save_screenshot
from tests.conftest import PASSWORD, database
from tests.stripe_support import localstripe  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, localstripe):  # noqa: F811
    """The browser fixtures' live portal, configured for localstripe, whose webhooks it receives."""
    with database("stripelive", tmp_path_factory) as database_url:
        for server in _serve(database_url, sqlite_begin="BEGIN IMMEDIATE", **localstripe.config()):
            localstripe.register_webhook(f"{server.url}/webhooks/stripe", name=f"browser-{uuid.uuid4().hex[:8]}")
            yield server


def _sign_up(page, suffix: str) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(f"Cardholder {suffix}")
    page.get_by_label("Account ID").fill(f"card_{suffix}")
    page.get_by_label("Your name").fill("Carla Card")
    page.get_by_label("Work email").fill(f"carla-{suffix}@card.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))
    expect(page.get_by_test_id("test-mode")).to_have_text("test mode")


def _add_card(page, number: str) -> None:
    """Billing → Add a card → the Elements form, typed into as a customer would."""
    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page).to_have_url(re.compile(r"/billing$"))
    page.get_by_test_id("payment-method").get_by_role("link", name="Add a card").click()
    expect(page).to_have_url(re.compile(r"/billing/payment-method$"))
    expect(page.get_by_test_id("no-card")).to_be_visible()
    page.get_by_test_id("add-card").click()
    expect(page).to_have_url(re.compile(r"/billing/payment-method/new\?setup_intent=seti_\w+$"))
    card = page.get_by_test_id("card-element")
    # localstripe's stand-in Elements: plain inputs named by their placeholders.
    card.get_by_placeholder("number").press_sequentially(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("34")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("10115")
    page.get_by_test_id("save-card").click()


def _open_invoice(page):
    page.get_by_role("link", name="Billing", exact=True).click()
    page.get_by_role("link", name="All invoices").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices$"))
    # Signing up invoiced the first month of Starter; it is open and the only one.
    row = page.get_by_test_id("invoice-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("invoice-status")).to_have_text("open")
    row.get_by_role("link", name=re.compile(r"^INV-")).click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+$"))
    expect(page.get_by_test_id("payment")).to_have_text(re.compile(r"^Due by "))


def test_saving_an_empty_card_form_asks_for_the_card_in_words(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    _sign_up(page, suffix)
    page.goto("/billing/payment-method")
    page.get_by_test_id("add-card").click()
    expect(page).to_have_url(re.compile(r"/billing/payment-method/new\?setup_intent=seti_\w+$"))
    page.get_by_test_id("save-card").click()
    error = page.get_by_test_id("card-error")
    expect(error).to_have_text("Enter the card number, expiry date and CVC.")
    expect(page.get_by_test_id("card-element")).to_have_attribute("aria-invalid", "true")
    # A half-typed card that Stripe cannot read gets a sentence, never a script's error text.
    page.get_by_test_id("card-element").get_by_placeholder("number").fill("4242")
    page.get_by_test_id("save-card").click()
    expect(error).not_to_have_text("")
    assert "undefined" not in error.inner_text() and "Cannot read" not in error.inner_text()
    expect(page).to_have_url(re.compile(r"/billing/payment-method/new\?setup_intent=seti_\w+$"))
    assert console.csp_violations == []


def test_owner_adds_a_card_and_it_pays_the_open_invoice(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    _sign_up(page, suffix)

    _add_card(page, "4242424242424242")
    expect(page).to_have_url(re.compile(r"/billing/payment-method$"))
    expect(page.locator(".flash-success")).to_have_text("Card saved: visa ending 4242, expires 12/2034.")
    expect(page.get_by_test_id("card-summary")).to_have_text("Visa ending 4242")
    expect(page.get_by_test_id("card-expiry")).to_have_text("12/2034")
    save_screenshot(page, "stripe-card-saved.png")

    # Saving the card charged the month invoiced at sign-up; the page turns paid when the
    # signed webhook lands.
    page.get_by_role("link", name="Billing", exact=True).click()
    page.get_by_role("link", name="All invoices").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices$"))
    row = page.get_by_test_id("invoice-row")
    expect(row).to_have_count(1)
    row.get_by_role("link", name=re.compile(r"^INV-")).click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+$"))
    expect(page.get_by_test_id("payment")).to_have_text(re.compile(r"^Paid on "))
    expect(page.get_by_test_id("invoice-status")).to_have_text("paid")
    expect(page.get_by_test_id("pay-now")).to_have_count(0)
    save_screenshot(page, "stripe-invoice-paid.png")
    assert console.csp_violations == []


def test_three_d_secure_card_is_authenticated_in_the_browser_then_pays(live_server, open_browser):
    """4000 0025 0000 3155 asks for 3-D Secure when saved and again for each payment: the
    customer completes localstripe's stand-in dialog both times."""
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    _sign_up(page, suffix)

    _add_card(page, "4000002500003155")
    page.get_by_role("button", name="Complete authentication").click()
    expect(page).to_have_url(re.compile(r"/billing/payment-method$"))
    expect(page.get_by_test_id("card-summary")).to_have_text("Visa ending 3155")

    # Saving it tried the open invoice off-session, which the bank refused without the customer.
    _open_invoice(page)
    expect(page.get_by_test_id("payment-failed")).to_contain_text("Your bank asked you to confirm this payment")
    page.get_by_test_id("pay-now").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+/authenticate\?attempt=2$"))
    page.get_by_role("button", name="Complete authentication").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+$"))
    expect(page.get_by_test_id("payment")).to_have_text(re.compile(r"^Paid on "))
    expect(page.get_by_test_id("invoice-status")).to_have_text("paid")
    assert console.csp_violations == []


def test_failed_three_d_secure_shows_the_failure_and_pay_now_again(live_server, open_browser):
    """A failed authentication sends no webhook; the portal reads the outcome back from Stripe."""
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    _sign_up(page, suffix)
    _add_card(page, "4000002500003155")
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_test_id("card-summary")).to_have_text("Visa ending 3155")

    _open_invoice(page)
    page.get_by_test_id("pay-now").click()
    page.get_by_role("button", name="Fail authentication").click()
    expect(page).to_have_url(re.compile(r"/billing/invoices/inv_\w+$"))
    expect(page.get_by_test_id("payment-failed")).to_contain_text(
        "The provided PaymentMethod has failed authentication."
    )
    expect(page.get_by_test_id("invoice-status")).to_have_text("open")
    expect(page.get_by_test_id("pay-now")).to_be_visible()
    # Beside Pay now, after a failure: the way to pay with a different card.
    expect(page.get_by_test_id("use-another-card")).to_have_attribute("href", "/billing/payment-method")
    expect(page.get_by_test_id("past-due-banner")).to_contain_text("Payment overdue.")
    assert console.csp_violations == []
