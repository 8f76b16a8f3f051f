"""Credentials in a real browser: upload a GCP service account key file, see it listed, under the strict CSP."""

import json
import re
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.browser.test_api_keys_flow import sign_up

pytestmark = pytest.mark.browser


def service_account_key(project: str) -> dict:
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"exporter@{project}.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def test_upload_a_gcp_key_file_and_see_it_listed(live_server, open_browser, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    sign_up(page, f"Cloudy {suffix}", f"cloudy_{suffix}", f"cai-{suffix}@cloudy.example")

    page.get_by_role("link", name="Credentials", exact=True).click()
    expect(page).to_have_url(re.compile(r"/credentials$"))
    expect(page.get_by_test_id("no-credentials")).to_be_visible()

    key = service_account_key(f"cloudy-{suffix}")
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(key, indent=2))

    page.get_by_text("Google Cloud service account").click()
    form = page.locator("#add-gcp-form")
    form.get_by_label("Name").fill("Billing export")
    form.get_by_label("…or upload the key file (.json)").set_input_files(str(key_file))
    form.get_by_role("button", name="Add GCP credential").click()

    expect(page.locator(".flash-success")).to_contain_text("“Billing export” was added")
    row = page.locator('[data-testid="credential-row"][data-name="Billing export"]')
    expect(row.get_by_test_id("credential-identity")).to_have_text(key["client_email"])
    expect(row.get_by_test_id("credential-active")).to_have_text("active")
    expect(page.locator("header.site")).to_have_count(1)
    save_screenshot(page, "credentials-list.png")
    secret_line = key["private_key"].splitlines()[3]
    assert secret_line not in page.content()
    page.reload()
    expect(row).to_be_visible()
    assert secret_line not in page.content()
    assert console.csp_violations == []


def test_invalid_aws_key_shows_messages_beside_the_fields(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    page, console = open_browser()
    sign_up(page, f"Bucket {suffix}", f"bucket_{suffix}", f"bo-{suffix}@bucket.example")
    page.get_by_role("link", name="Credentials", exact=True).click()
    expect(page).to_have_url(re.compile(r"/credentials$"))
    page.get_by_text("AWS access key").click()
    form = page.locator("#add-aws-form")
    form.get_by_label("Name").fill("Broken")
    form.get_by_label("Access key ID").fill("AKIA-nope")
    form.get_by_label("Secret access key").fill("too-short")
    form.get_by_label("Region").select_option("eu-west-1")
    form.get_by_role("button", name="Add AWS credential").click()
    expect(page.locator("#aws-aws_access_key_id-error")).to_contain_text("AKIA or ASIA")
    expect(page.locator("#aws-aws_secret_access_key-error")).to_contain_text("exactly 40 characters")
    expect(page.locator("#add-aws-form").get_by_label("Secret access key")).to_have_value("")
    expect(page.locator("#add-aws-form").get_by_label("Access key ID")).to_have_value("AKIA-nope")
    expect(page.get_by_test_id("no-credentials")).to_be_visible()
    expect(page.locator("header.site")).to_have_count(1)
    assert console.csp_violations == []
