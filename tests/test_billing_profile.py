"""Billing details (the billing profile): the portal page and the API, tax ID validation in
plain words, who may change it, who receives invoices, and the activity log."""

import html
import re

import pytest

from portal.access import SYSTEM
from portal.billing import profile as profiles
from portal.billing.tax_ids import validate
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.models import AuditEvent, BillingProfile, Tenant
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, send_json, with_key
from tests.conftest import HTMX, field_error

VALID_FR_VAT = "FR40303265045"
VALID_DE_VAT = "DE123456788"


def details_form(**changes) -> dict:
    data = {
        "legal_name": "Müller & Söhne 東京 Łódź Ltd",
        "address_line1": "12 rue de la Paix",
        "address_line2": "",
        "postal_code": "75002",
        "city": "Paris",
        "region": "",
        "country": "FR",
        "po_number": "PO-7781",
        "billing_email": "Finance@Example.com",
        "extra_recipients": "ap@example.com, cfo@example.com",
        "tax_ids-0-type": "eu_vat",
        "tax_ids-0-value": "fr 40 303 265 045",
    }
    data.update(changes)
    return data


def stored(app, tenant) -> BillingProfile | None:
    with app.app_context():
        profile = db.session.get(BillingProfile, tenant.tenant_id)
        if profile is not None:
            db.session.expunge(profile)
        return profile


@pytest.fixture
def team(make_tenant, make_user):
    tenant = make_tenant(company_name="Profile Co")
    return tenant, {role: make_user(tenant, role=role) for role in ("owner", "admin", "viewer")}


# --- tax IDs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "compact"),
    [
        ("eu_vat", "fr 40 303 265 045", VALID_FR_VAT),
        ("eu_vat", "DE 123 456 788", VALID_DE_VAT),
        ("gb_vat", "GB 980 7806 84", "GB980780684"),
        ("us_ein", "04-2103594", "042103594"),
        ("au_abn", "51 824 753 556", "51824753556"),
        ("ch_vat", "CHE-113.947.518 MWST", "CHE113947518MWST"),
        ("no_vat", "NO 995 525 828 MVA", "NO995525828MVA"),
        ("in_gst", "27AAPFU0939F1ZV", "27AAPFU0939F1ZV"),
    ],
)
def test_a_valid_tax_id_of_each_kind_is_kept_in_its_compact_form(kind, value, compact):
    assert validate(kind, value) == {"type": kind, "value": compact}


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("eu_vat", "FR41303265045", "That VAT number's check digit is wrong"),
        ("eu_vat", "DE123456789", "That VAT number's check digit is wrong"),
        ("eu_vat", "DE12345", "DE12345 is not a valid German VAT number"),
        ("eu_vat", "GB980780684", "GB is not an EU country's VAT prefix"),
        ("eu_vat", "US123456789", "US is not an EU country's VAT prefix"),
        ("eu_vat", "40303265045", "starts with its country's two letters"),
        ("gb_vat", VALID_DE_VAT, "and a UK VAT number is from United Kingdom"),
        ("us_ein", "04-21035", "is not a valid US EIN"),
        ("au_abn", "51 824 753 557", "That ABN's check digit is wrong"),
        ("bogus", "123", "Choose the kind of tax ID"),
    ],
)
def test_a_wrong_tax_id_is_refused_in_plain_words(kind, value, message):
    with pytest.raises(ValidationFailed) as refused:
        validate(kind, value)
    assert message in refused.value.message


# --- the page ----------------------------------------------------------------------------


def test_an_owner_saves_billing_details_and_the_page_shows_them(app, client, login, team):
    tenant, members = team
    login(client, members["owner"])
    response = client.post("/billing/details", data=details_form())
    assert response.status_code == 303 and response.headers["Location"] == "/billing/details"
    page = client.get("/billing/details").get_data(as_text=True)
    assert "Billing details saved" in page
    assert 'value="Müller &amp; Söhne 東京 Łódź Ltd"' in page
    assert f'value="{VALID_FR_VAT}"' in page  # normalised
    recipients = " ".join(
        html.unescape(re.sub(r"<[^>]+>", "", page.split('data-testid="invoice-recipients"')[1])).split()
    )
    assert recipients.startswith(">Invoices go to: finance@example.com, ap@example.com, cfo@example.com.")

    profile = stored(app, tenant)
    assert profile.country == "FR" and profile.po_number == "PO-7781"
    assert profile.tax_ids == [{"type": "eu_vat", "value": VALID_FR_VAT}]
    billing = client.get("/billing").get_data(as_text=True)
    assert "France" in billing and VALID_FR_VAT in billing


def test_a_vat_number_with_a_wrong_check_digit_is_shown_beside_the_field_and_nothing_is_saved(app, client, login, team):
    tenant, members = team
    login(client, members["admin"])
    response = client.post("/billing/details", data=details_form(**{"tax_ids-0-value": "FR41303265045"}))
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert "That VAT number's check digit is wrong" in page
    assert 'value="FR41303265045"' in page  # what was typed is kept
    assert stored(app, tenant) is None


def test_an_unknown_country_and_a_bad_email_are_refused(app, client, login, team):
    tenant, members = team
    login(client, members["owner"])
    page = client.post("/billing/details", data=details_form(country="XX"), headers=HTMX).get_data(as_text=True)
    assert "Choose a country from the list." in field_error(page, "country")
    page = client.post("/billing/details", data=details_form(billing_email="not-an-email"), headers=HTMX)
    assert "not-an-email is not an email address" in html.unescape(page.get_data(as_text=True))
    assert stored(app, tenant) is None


def test_tax_ids_need_a_country(app, client, login, team):
    tenant, members = team
    login(client, members["owner"])
    response = client.post("/billing/details", data=details_form(country=""))
    assert response.status_code == 422
    assert "Choose the country of the billing address" in html.unescape(response.get_data(as_text=True))


def test_a_viewer_sees_the_details_read_only_and_cannot_save_them(app, client, login, team):
    tenant, members = team
    login(client, members["owner"])
    client.post("/billing/details", data=details_form())
    client.post("/signout")
    login(client, members["viewer"])
    page = client.get("/billing/details").get_data(as_text=True)
    assert "Only the owner and admins can change the billing details." in page
    assert "<fieldset disabled" in page and "Save billing details" not in page
    assert client.post("/billing/details", data=details_form(legal_name="Hijack Ltd")).status_code == 403
    assert stored(app, tenant).legal_name == "Müller & Söhne 東京 Łódź Ltd"


def test_saving_billing_details_is_in_the_activity_log(app, client, login, team):
    tenant, members = team
    login(client, members["owner"])
    client.post("/billing/details", data=details_form())
    with app.app_context():
        event = (
            db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="billing_profile.updated").one()
        )
        assert "Tax IDs" in event.details["fields"] and event.details["country"] == "FR"
    activity = html.unescape(client.get("/activity").get_data(as_text=True))
    assert "Billing details changed" in activity


def test_invoices_go_to_the_owner_and_admins_until_a_billing_email_is_set(app, team):
    tenant, members = team
    with app.test_request_context():
        tenant = db.session.get(Tenant, tenant.tenant_id)
        assert profiles.billing_recipients(tenant) == sorted([members["owner"].email, members["admin"].email])
        profiles.update(
            SYSTEM, tenant, profiles.ProfileData(billing_email="ap@example.com", extra_recipients=["x@example.com"])
        )
        assert profiles.billing_recipients(tenant) == ["ap@example.com", "x@example.com"]


# --- the API -----------------------------------------------------------------------------


def api_body(**changes) -> dict:
    body = {
        "legal_name": "Müller & Söhne GmbH",
        "address_line1": "Hauptstraße 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
        "billing_email": "ap@mueller.example",
        "extra_recipients": ["cfo@mueller.example"],
        "tax_ids": [{"type": "eu_vat", "value": "DE 123 456 788"}],
        "po_number": "4500012345",
    }
    body.update(changes)
    return body


def test_the_api_reads_an_empty_profile_then_replaces_it(app, client, team):
    tenant, members = team
    _, key = issue_key(app, tenant, scopes=["admin:*"])
    path = f"/api/v1/tenants/{tenant.tenant_id}/billing-profile"
    empty = client.get(path, headers=with_key(key)).get_json()
    assert empty["updated_at"] is None and empty["tax_ids"] == [] and empty["country"] is None
    assert sorted(empty["recipients"]) == sorted([members["owner"].email, members["admin"].email])

    response = send_json(client, "put", path, api_body(), with_key(key))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["tax_ids"] == [{"type": "eu_vat", "value": VALID_DE_VAT, "country": "DE", "label": "EU VAT number"}]
    assert body["recipients"] == ["ap@mueller.example", "cfo@mueller.example"]
    assert client.get(path, headers=with_key(key)).get_json() == body

    # PUT replaces: what is left out is cleared.
    cleared = send_json(client, "put", path, {"legal_name": "Müller AG"}, with_key(key)).get_json()
    assert cleared["tax_ids"] == [] and cleared["country"] is None and cleared["legal_name"] == "Müller AG"


def test_the_api_refuses_a_bad_vat_number_with_its_reason_and_changes_nothing(app, client, team):
    tenant, _ = team
    _, key = issue_key(app, tenant, scopes=["admin:*"])
    path = f"/api/v1/tenants/{tenant.tenant_id}/billing-profile"
    body = assert_envelope(
        send_json(client, "put", path, api_body(tax_ids=[{"type": "eu_vat", "value": "DE123456789"}]), with_key(key)),
        400,
        "VALIDATION_ERROR",
    )
    assert "That VAT number's check digit is wrong" in body["detail"]
    body = assert_envelope(send_json(client, "put", path, api_body(country="de"), with_key(key)), 400)
    assert body["errors"][0]["field"] == "country"
    assert stored(app, tenant) is None


def test_the_api_keeps_profiles_to_their_tenant_and_writes_to_admin_keys(app, client, team, make_tenant):
    tenant, _ = team
    other = make_tenant(company_name="Other Co")
    _, admin_key = issue_key(app, tenant, scopes=["admin:*"])
    _, reader_key = issue_key(app, tenant, scopes=["usage:read"])
    own = f"/api/v1/tenants/{tenant.tenant_id}/billing-profile"
    others = f"/api/v1/tenants/{other.tenant_id}/billing-profile"
    assert_envelope(client.get(others, headers=with_key(admin_key)), 403, "FORBIDDEN")
    assert_envelope(send_json(client, "put", others, api_body(), with_key(admin_key)), 403, "FORBIDDEN")
    assert client.get(own, headers=with_key(reader_key)).status_code == 200
    assert_envelope(send_json(client, "put", own, api_body(), with_key(reader_key)), 403, "INSUFFICIENT_SCOPE")
    # An operator token reads and writes any tenant's.
    token = operator_token(app)
    assert send_json(client, "put", others, api_body(), bearer(token)).status_code == 200
    assert stored(app, other).po_number == "4500012345" and stored(app, tenant) is None
