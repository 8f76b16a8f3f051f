"""Webhooks in a real browser: add an endpoint, copy its secret, send a test event, see the
delivery in the log and resend it, under the strict CSP, at desktop and phone widths."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.browser.test_api_keys_flow import sign_up

pytestmark = pytest.mark.browser


def test_owner_adds_an_endpoint_copies_the_secret_tests_and_resends(live_server, open_browser, receiver):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_up(page, f"Hooked {suffix}", f"hooked_{suffix}", f"hana-{suffix}@hooked.example")

    page.get_by_role("link", name="Webhooks", exact=True).click()
    expect(page).to_have_url(re.compile(r"/integrations/webhooks$"))
    expect(page.get_by_test_id("no-endpoints")).to_be_visible()

    form = page.locator("#add-endpoint-form")
    form.get_by_label("Endpoint URL").fill("ftp://wrong.example")
    form.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#url-error")).to_contain_text("starting with https://")

    form = page.locator("#add-endpoint-form")
    form.get_by_label("Endpoint URL").fill(receiver.url)
    form.get_by_label("Description").fill("Finance sync")
    form.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("secret-reveal")).to_contain_text("never shown again")
    secret = page.get_by_test_id("secret-value").input_value()
    assert secret.startswith("whsec_")
    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.get_by_test_id("endpoint-row")).to_contain_text("Finance sync")

    page.get_by_test_id("created-endpoint-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Finance sync")
    expect(page.get_by_test_id("no-deliveries")).to_be_visible()
    assert secret not in page.content()

    page.get_by_test_id("send-test").click()
    delivery = page.get_by_test_id("delivery").first
    expect(delivery.get_by_test_id("delivery-state")).to_have_text("delivered")
    [request] = receiver.wait_for(1)
    assert request.verify(secret)["event_type"] == "webhook.test"
    delivery.locator("summary").click()
    expect(delivery.get_by_test_id("request-body")).to_contain_text('"event_type": "webhook.test"')
    save_screenshot(page, "webhooks-delivery.png")

    receiver.answer_with(503)
    delivery.get_by_test_id("resend").click()
    expect(page.get_by_test_id("delivery").first.get_by_test_id("delivery-state")).to_have_text("retrying")
    page.get_by_test_id("delivery").first.locator("summary").click()
    expect(page.get_by_test_id("attempt")).to_have_count(2)
    expect(page.get_by_test_id("attempt").nth(1)).to_contain_text("503")
    assert len(receiver.wait_for(2)) == 2

    # Narrow screens: the log still fits.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    save_screenshot(page, "webhooks-delivery-phone.png")
    assert console.csp_violations == []
