"""Seed 003's invoice breakdown in the API: subtotal, discount, credits, tax (per rate), total,
the buyer as issued, and ``pdf_url``, an authenticated API path answering the PDF."""

import io

import pytest
from pypdf import PdfReader

from tests.api_support import assert_envelope, send_json
from tests.test_api_billing import admin_key, path, tenant_on

DE_PROFILE = {
    "legal_name": "Müller & Söhne GmbH",
    "address_line1": "Hauptstraße 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
    "tax_ids": [{"type": "eu_vat", "value": "DE123456788"}],
    "po_number": "4500012345",
}
FR_PROFILE = {
    **DE_PROFILE,
    "legal_name": "Dupont SA",
    "country": "FR",
    "tax_ids": [{"type": "eu_vat", "value": "FR40303265045"}],
}


@pytest.fixture(autouse=True)
def seller_de(app, monkeypatch):
    monkeypatch.setitem(app.config, "BILLING_SELLER_COUNTRY", "DE")


def upgraded_invoice(client, app, profile):
    """A Starter tenant with this billing profile that upgrades to Professional mid-period."""
    tenant = tenant_on(app, "starter", days_ago=5)
    key = admin_key(app, tenant)
    assert send_json(client, "put", path(tenant, "/billing-profile"), profile, key).status_code == 200
    upgrade = client.post(path(tenant, "/subscription/upgrade"), headers=key, json={"new_plan": "professional"})
    assert upgrade.status_code == 200, upgrade.get_json()
    response = client.get(path(tenant, f"/invoices/{upgrade.get_json()['invoice_id']}"), headers=key)
    assert response.status_code == 200, response.get_json()
    return tenant, key, response.get_json()


def test_a_domestic_invoice_shows_subtotal_tax_per_rate_and_total(app, client):
    tenant, key, invoice = upgraded_invoice(client, app, DE_PROFILE)
    line_taxes = [line["tax"] for line in invoice["line_items"]]
    assert [line["tax_name"] for line in invoice["line_items"]] == ["VAT", "VAT"]
    assert line_taxes[0] < 0 < line_taxes[1]  # the unused Starter time is a credit: negative tax
    assert invoice["discount"] == 0 and invoice["credits_applied"] == 0
    assert invoice["tax"] == sum(line_taxes)
    assert invoice["total"] == invoice["subtotal"] + invoice["tax"]
    assert invoice["tax_lines"] == [
        {
            "name": "VAT",
            "percentage": 19,
            "inclusive": False,
            "label": "VAT 19%",
            "taxable": invoice["subtotal"],
            "amount": invoice["tax"],
        }
    ]
    assert invoice["tax_note"] is None
    assert invoice["billing_name"] == "Müller & Söhne GmbH"
    assert invoice["buyer"]["tax_ids"] == [{"type": "eu_vat", "value": "DE123456788"}]
    assert invoice["buyer"]["po_number"] == "4500012345"
    assert invoice["pdf_url"] == path(tenant, f"/invoices/{invoice['invoice_id']}/pdf")


def test_a_reverse_charged_invoice_carries_no_tax_and_the_mention(app, client):
    _, _, invoice = upgraded_invoice(client, app, FR_PROFILE)
    assert invoice["tax"] == 0 and invoice["total"] == invoice["subtotal"]
    assert invoice["tax_note"].startswith("Reverse charge: VAT to be accounted for by the recipient")
    assert [rate["label"] for rate in invoice["tax_lines"]] == ["VAT reverse charge 0%"]


def test_pdf_url_answers_the_invoice_pdf_to_the_tenants_keys_only(app, client):
    tenant, key, invoice = upgraded_invoice(client, app, DE_PROFILE)
    response = client.get(invoice["pdf_url"], headers=key)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert f'filename="{invoice["number"]}.pdf"' in response.headers["Content-Disposition"]
    text = " ".join(PdfReader(io.BytesIO(response.data)).pages[0].extract_text().split())
    assert invoice["number"] in text and "VAT 19%" in text

    other = tenant_on(app, "starter")
    other_key = admin_key(app, other)
    assert_envelope(client.get(invoice["pdf_url"], headers=other_key), 403, "FORBIDDEN")
    # Another tenant's invoice under one's own path: not found.
    assert_envelope(client.get(path(other, f"/invoices/{invoice['invoice_id']}/pdf"), headers=other_key), 404)
    assert_envelope(client.get(invoice["pdf_url"]), 401, "UNAUTHORIZED")
