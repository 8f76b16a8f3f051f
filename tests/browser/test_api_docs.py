"""The API reference at /api/docs renders the live OpenAPI document under the strict CSP."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot

pytestmark = pytest.mark.browser


def test_api_docs_render_every_operation_without_breaking_the_csp(live_server, open_browser):
    page, console = open_browser()
    page.add_init_script(
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    response = page.goto("/api/docs")
    assert "style-src 'self';" in response.headers["content-security-policy"]

    expect(page.locator(".info .title")).to_contain_text("Tenant portal API")
    spec = page.request.get("/api/v1/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    # ...and one block per outbound webhook event (the document's ``webhooks`` section).
    webhooks = sum(len(methods) for methods in spec["webhooks"].values())
    expect(page.locator(".opblock")).to_have_count(operations + webhooks)
    expect(page.locator(".opblock", has_text="invoice.created")).to_have_count(1)

    # Open one operation: its parameters, body schema and error responses are shown.
    get_tenant = page.locator("#operations-tenants-get_tenant")
    get_tenant.locator(".opblock-summary").click()
    expect(get_tenant.locator(".parameters")).to_contain_text("tenant_id")
    expect(get_tenant.locator(".responses-table").first).to_contain_text("401")
    save_screenshot(page, "api-docs.png")

    assert page.evaluate("window.__cspViolations") == []
    assert console.csp_violations == []
