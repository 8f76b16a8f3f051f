"""API keys in a real browser: create one, see it once, copy it, use it, revoke it, under the strict CSP."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def sign_up(page, company: str, tenant_id: str, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(company)
    page.get_by_label("Account ID").fill(tenant_id)
    page.get_by_label("Your name").fill("Kim Keys")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/overview$"))


def test_key_is_shown_once_copied_used_and_revoked(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    tenant_id = f"keyhole_{suffix}"
    page, console = open_browser()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_up(page, f"Keyhole {suffix}", tenant_id, f"kim-{suffix}@keyhole.example")

    page.get_by_role("link", name="API keys", exact=True).click()
    expect(page).to_have_url(re.compile(r"/api-keys$"))
    expect(page.get_by_test_id("no-keys")).to_be_visible()

    form = page.locator("#create-key-form")
    form.get_by_label("Name").fill("Nightly export")
    # Least privilege by default: only the read-only usage scope is ticked, admin:* is not.
    expect(form.locator('input[name="scopes"][value="usage:read"]')).to_be_checked()
    expect(form.locator('input[name="scopes"][value="admin:*"]')).not_to_be_checked()
    expect(form.locator('input[name="scopes"][value="pipelines:write"]')).to_have_count(0)
    form.get_by_label("Expires after (days)").fill("30")
    form.get_by_role("button", name="Create key").click()

    # The key appears once, in place of the form, with its warning; the list updates beside it.
    reveal = page.get_by_test_id("secret-reveal")
    expect(reveal).to_contain_text("Copy it now: this is the only time it is shown.")
    secret = page.get_by_test_id("secret-value").input_value()
    assert re.fullmatch(rf"{tenant_id}_api_[A-Za-z0-9_-]{{43}}", secret)
    row = page.locator('[data-testid="key-row"][data-name="Nightly export"]')
    expect(row.get_by_test_id("key-status")).to_have_text("active")
    expect(row).to_contain_text("usage:read")
    expect(row).not_to_contain_text("admin:*")
    expect(page.locator("header.site")).to_have_count(1)

    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    save_screenshot(page, "api-keys-created.png")

    # The key works against the API.
    api = page.request.get(f"/api/v1/tenants/{tenant_id}", headers={"X-API-Key": secret})
    assert api.status == 200, api.text()

    # Reloading shows only the prefix; leaving and coming back through htmx history neither.
    page.reload()
    expect(page.get_by_test_id("secret-reveal")).to_have_count(0)
    expect(row.get_by_test_id("key-prefix")).to_have_text(re.compile(rf"^{tenant_id}_api_.{{6}}…$"))
    assert secret not in page.content()
    page.get_by_role("link", name="Team", exact=True).click()
    expect(page).to_have_url(re.compile(r"/team$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/api-keys$"))
    expect(row).to_be_visible()
    assert secret not in page.content()
    assert secret not in (page.evaluate("JSON.stringify(window.localStorage)") or "")

    # Revoking asks for a reason and a confirmation; the key stops working.
    row.get_by_role("button", name="Revoke").click()
    row.get_by_label("Reason").fill("Export moved to the new pipeline")
    row.get_by_role("button", name="Yes, revoke").click()
    expect(page.locator(".flash-success")).to_contain_text("was revoked")
    expect(row.get_by_test_id("key-status")).to_contain_text("revoked")
    expect(row).to_contain_text("Export moved to the new pipeline")
    save_screenshot(page, "api-keys-list.png")
    assert page.request.get(f"/api/v1/tenants/{tenant_id}", headers={"X-API-Key": secret}).status == 401

    assert console.csp_violations == []


def test_invalid_key_form_shows_messages_in_place(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    sign_up(page, f"Lockbox {suffix}", f"lockbox_{suffix}", f"lee-{suffix}@lockbox.example")
    page.get_by_role("link", name="API keys", exact=True).click()
    expect(page).to_have_url(re.compile(r"/api-keys$"))
    form = page.locator("#create-key-form")
    form.get_by_label("Name").fill("No scopes")
    for checkbox in form.locator('input[name="scopes"]').all():
        checkbox.uncheck()
    form.get_by_role("button", name="Create key").click()
    expect(page.locator("#scopes-error")).to_have_text("Choose at least one scope.")
    expect(page.locator("#create-key-form").get_by_label("Name")).to_have_value("No scopes")
    expect(page.locator("header.site")).to_have_count(1)
    expect(page.get_by_test_id("no-keys")).to_be_visible()
    save_screenshot(page, "api-keys-invalid.png")
    assert console.csp_violations == []


def test_operator_creates_and_copies_a_token(live_server, open_browser):
    from portal.auth.services import create_user
    from portal.infra.transactions import commit

    email = f"op-{uuid.uuid4().hex[:8]}@portal.example"
    with live_server.app.test_request_context():
        create_user(email, PASSWORD, "Olga Operator", is_operator=True)
        commit()
    page, console = open_browser()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(email)
    # Operators land on the console. One navigation at a time: a second click while a
    # boosted request is in flight lets its late answer push its URL over the newer page.
    expect(page).to_have_url(re.compile(r"/admin/tenants$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Tenants")
    page.get_by_role("link", name="API tokens").click()
    expect(page).to_have_url(re.compile(r"/admin/tokens$"))
    expect(page.get_by_test_id("bootstrap-note")).to_contain_text("PORTAL_ADMIN_TOKEN")
    page.locator("#create-token-form").get_by_label("Name").fill("Billing sync")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("secret-value").input_value()
    assert secret.startswith("opt_")
    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.locator('[data-testid="token-row"][data-name="Billing sync"]')).to_contain_text("active")
    save_screenshot(page, "operator-tokens.png")
    assert page.request.get("/api/v1/admin/tenants", headers={"Authorization": f"Bearer {secret}"}).status == 200
    assert console.csp_violations == []
