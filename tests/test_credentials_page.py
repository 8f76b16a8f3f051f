"""The Credentials page: roles, adding each provider's credential (the secret never shown
again nor stored in clear), per-field messages, other tenants' credentials, delete with a
confirmation, rename, re-validate and the provider filter, through HTTP."""

import html
import io
import json
import re

import pytest
from sqlalchemy import select, text

from portal.extensions import db
from portal.models import Credential
from tests.conftest import field_error, form_error
from tests.credential_samples import AWS_SECRET, PRIVATE_KEY

AZURE_SECRET = "az~Secret.Value_0123456789abcdefXYZ"


def gcp_key(**changes) -> dict:
    key = {
        "type": "service_account",
        "project_id": "acme-billing",
        "private_key_id": "0123456789abcdef",
        "private_key": PRIVATE_KEY,
        "client_email": "exporter@acme-billing.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    key.update(changes)
    return key


def gcp_form(name="GCP Billing", **changes) -> dict:
    return {"gcp-credential_name": name, "gcp-key_json": json.dumps(gcp_key(**changes))}


def aws_form(name="AWS Prod", **changes) -> dict:
    form = {
        "aws-credential_name": name,
        "aws-aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws-aws_secret_access_key": AWS_SECRET,
        "aws-region": "us-east-1",
        "aws-role_arn": "",
    }
    form.update({f"aws-{k}": v for k, v in changes.items()})
    return form


def azure_form(name="Azure Sub", **changes) -> dict:
    form = {
        "azure-credential_name": name,
        "azure-tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "azure-client_id": "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
        "azure-subscription_id": "11111111-2222-3333-4444-555555555555",
        "azure-client_secret": AZURE_SECRET,
    }
    form.update({f"azure-{k}": v for k, v in changes.items()})
    return form


def shown(page: str) -> dict[str, str]:
    """credential name -> its row's HTML, as the list shows them."""
    rows = re.findall(
        r'<tr data-testid="credential-row" data-credential-id="[^"]+" data-name="([^"]+)"[^>]*>(.*?)</tr>', page, re.S
    )
    return {html.unescape(name): row for name, row in rows}


def stored(app, tenant, deleted=False) -> list[Credential]:
    with app.app_context():
        query = select(Credential).where(Credential.tenant_id == tenant.tenant_id)
        if not deleted:
            query = query.where(Credential.deleted_at.is_(None))
        return list(db.session.execute(query).scalars())


def raw_columns(app) -> bytes:
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM credentials")).all()
    return b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for row in rows for v in row)


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Vault Co")


@pytest.fixture
def team(tenant, make_user):
    return {role: make_user(tenant, role=role) for role in ("owner", "admin", "developer", "viewer")}


def add(client, provider, form, **kwargs):
    return client.post(f"/credentials/add/{provider}", data=form, **kwargs)


def add_ok(client, provider, form) -> str:
    response = add(client, provider, form)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    return client.get(response.headers["Location"]).get_data(as_text=True)


# --- the page and roles ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_sees_the_list_but_only_managers_get_the_forms(client, team, login, role):
    login(client, team[role])
    page = client.get("/credentials").get_data(as_text=True)
    assert "<h1>Credentials</h1>" in page
    assert 'aria-current="page">Credentials</a>' in page
    assert ("Add a credential" in page) == (role != "viewer")
    assert ("can see the credentials but not add" in page) == (role == "viewer")
    assert "No credentials yet." in page


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/credentials")
    assert response.status_code == 302 and "/signin" in response.headers["Location"]


def test_viewer_sees_credentials_but_every_post_is_403(app, client, tenant, team, login):
    login(client, team["developer"])
    add_ok(client, "aws", aws_form())
    [credential] = stored(app, tenant)
    viewer = app.test_client()
    login(viewer, team["viewer"])
    page = viewer.get("/credentials").get_data(as_text=True)
    assert list(shown(page)) == ["AWS Prod"] and "Yes, delete" not in page and "Re-validate" not in page
    assert add(viewer, "gcp", gcp_form()).status_code == 403
    for action, data in (("rename", {"credential_name": "Mine"}), ("validate", {}), ("delete", {})):
        assert viewer.post(f"/credentials/{credential.id}/{action}", data=data).status_code == 403
    [after] = stored(app, tenant)
    assert after.name == "AWS Prod" and after.deleted_at is None


@pytest.mark.parametrize("role", ["owner", "admin", "developer"])
def test_managers_can_add_rename_revalidate_and_delete(app, client, tenant, team, login, role):
    login(client, team[role])
    add_ok(client, "azure", azure_form())
    [credential] = stored(app, tenant)
    response = client.post(f"/credentials/{credential.id}/rename", data={"credential_name": "Azure main"})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "“Azure Sub” is now called “Azure main”." in html.unescape(page)
    assert list(shown(page)) == ["Azure main"]
    response = client.post(f"/credentials/{credential.id}/validate")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "“Azure main” is valid." in html.unescape(page)
    response = client.post(f"/credentials/{credential.id}/delete")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "was deleted" in page and shown(page) == {}
    assert stored(app, tenant) == []


# --- adding each provider -----------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, form, secret, identity",
    [
        ("gcp", gcp_form(), PRIVATE_KEY.splitlines()[5], "exporter@acme-billing.iam.gserviceaccount.com"),
        ("aws", aws_form(role_arn="arn:aws:iam::123456789012:role/Deployer"), AWS_SECRET, "****************MPLE"),
        ("azure", azure_form(), AZURE_SECRET, "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"),
    ],
    # Fixed ids: the GCP key is generated at import, and xdist workers must agree on names.
    ids=["gcp", "aws", "azure"],
)
def test_adding_a_credential_lists_it_and_the_secret_is_never_shown_or_stored_in_clear(
    app, client, tenant, team, login, provider, form, secret, identity
):
    login(client, team["developer"])
    page = add_ok(client, provider, form)
    [credential] = stored(app, tenant)
    assert credential.provider == provider and credential.identity == identity
    row = shown(page)[credential.name]
    assert identity in row and credential.fingerprint in row and "active" in row
    assert secret not in page and secret not in client.get("/credentials").get_data(as_text=True)
    raw = raw_columns(app)
    assert secret.encode() not in raw
    if provider == "aws":
        assert b"AKIAIOSFODNN7EXAMPLE" not in raw


def test_gcp_key_file_can_be_uploaded(app, client, tenant, team, login):
    login(client, team["owner"])
    upload = (io.BytesIO(json.dumps(gcp_key()).encode()), "key.json")
    response = add(
        client,
        "gcp",
        {"gcp-credential_name": "Uploaded", "gcp-key_json": "", "gcp-key_file": upload},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    [credential] = stored(app, tenant)
    assert credential.name == "Uploaded" and credential.identity == "exporter@acme-billing.iam.gserviceaccount.com"


# --- invalid input ------------------------------------------------------------------------


def test_invalid_aws_input_shows_a_message_per_field_and_stores_nothing(app, client, tenant, team, login):
    login(client, team["developer"])
    response = add(
        client,
        "aws",
        aws_form(
            name="",
            aws_access_key_id="AKIA123",
            region="mars-1",
            role_arn="arn:nope",
            aws_secret_access_key="short-secret-value",
        ),
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert field_error(page, "aws-credential_name") == "Give the credential a name."
    assert "AKIA or ASIA" in field_error(page, "aws-aws_access_key_id")
    assert "exactly 40 characters" in field_error(page, "aws-aws_secret_access_key")
    assert "not an AWS region" in field_error(page, "aws-region")
    assert "Role ARN must look like" in field_error(page, "aws-role_arn")
    assert field_error(page, "aws-aws_access_key_id").startswith("Access key ID must be AKIA or ASIA")
    assert field_error(page, "aws-region").startswith("Region is not an AWS region")
    errors = " ".join(re.findall(r'class="field-error"[^>]*>([^<]*)<', page))
    for internal in ("aws_access_key_id", "aws_secret_access_key", "role_arn", "region is"):
        assert internal not in errors  # the form's own words, never the API's field names
    assert "short-secret-value" not in page
    assert 'value="AKIA123"' in page  # the non-secret key id is kept for correcting
    assert re.search(r'<details class="add-credential" data-provider="aws"\s+open', page)
    assert stored(app, tenant, deleted=True) == []


def test_invalid_azure_input_clears_the_secret_and_stores_nothing(app, client, tenant, team, login):
    login(client, team["developer"])
    response = add(client, "azure", azure_form(tenant_id="not-a-guid", client_secret="x" * 300))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "must be a GUID" in field_error(page, "azure-tenant_id")
    assert "at most 255 characters" in field_error(page, "azure-client_secret")
    assert field_error(page, "azure-client_id") == ""
    assert "x" * 300 not in page
    assert stored(app, tenant, deleted=True) == []


def test_invalid_gcp_key_shows_each_problem_and_does_not_echo_the_key(app, client, tenant, team, login):
    login(client, team["developer"])
    truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    response = add(client, "gcp", gcp_form(private_key=truncated, client_email="someone@gmail.com"))
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 422
    message = field_error(page, "gcp-key_json")
    assert "not a readable PEM private key" in message and "iam.gserviceaccount.com" in message
    assert "The key file's private key is not a readable PEM private key" in message
    assert "private_key" not in message and "client_email" not in message
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in page
    assert stored(app, tenant, deleted=True) == []

    page = add(client, "gcp", {"gcp-credential_name": "Junk", "gcp-key_json": "{not json"}).get_data(as_text=True)
    assert "not valid JSON" in field_error(page, "gcp-key_json")
    assert "{not json" not in page
    page = add(client, "gcp", {"gcp-credential_name": "Empty", "gcp-key_json": ""}).get_data(as_text=True)
    assert html.unescape(field_error(page, "gcp-key_json")) == (
        "Paste the service account key file's contents here, or upload the file."
    )
    assert form_error(page) == ""
    assert stored(app, tenant, deleted=True) == []


def test_adding_the_same_key_twice_warns_and_names_the_copy(app, client, tenant, team, login):
    login(client, team["developer"])
    same_key = gcp_form(name="Billing export")
    add_ok(client, "gcp", same_key)
    response = client.post("/credentials/add/gcp", data={**same_key, "gcp-credential_name": "Billing again"})
    page = html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "The same key is already stored as “Billing export”." in page
    assert "Billing export" in page and "Billing again" in page  # both kept: the warning lets them choose


def test_the_list_names_each_type_in_words_and_the_name_is_text_until_rename(app, client, tenant, team, login):
    login(client, team["developer"])
    add_ok(client, "gcp", gcp_form(name="Billing export"))
    page = html.unescape(client.get("/credentials").get_data(as_text=True))
    assert re.search(r'data-testid="credential-type">Google Cloud service account<', page)
    assert "service_account<" not in page
    assert re.search(r'data-testid="credential-name">Billing export<', page)
    # The rename field is behind the Rename button, not an always-open input in every row.
    assert re.search(r'<details class="confirm rename">\s*<summary[^>]*>Rename</summary>', page)


def test_an_unknown_provider_is_not_found(client, team, login):
    login(client, team["owner"])
    assert client.post("/credentials/add/oracle", data={}).status_code == 404


# --- other tenants ------------------------------------------------------------------------


def test_another_tenants_credential_is_not_found_and_nothing_changes(
    app, client, tenant, team, login, make_tenant, make_user
):
    login(client, team["owner"])
    add_ok(client, "aws", aws_form(name="Ours"))
    [ours] = stored(app, tenant)
    other = make_tenant(company_name="Other Co")
    intruder = app.test_client()
    login(intruder, make_user(other, role="owner"))
    assert "Ours" not in intruder.get("/credentials").get_data(as_text=True)
    for action, data in (("rename", {"credential_name": "Theirs"}), ("validate", {}), ("delete", {})):
        assert intruder.post(f"/credentials/{ours.id}/{action}", data=data).status_code == 404
    [after] = stored(app, tenant)
    assert after.name == "Ours" and after.deleted_at is None and after.is_active
    assert after.last_validated_at == ours.last_validated_at


# --- delete, rename, filter -----------------------------------------------------------------


def test_delete_asks_for_confirmation_and_then_hides_the_credential(app, client, tenant, team, login):
    login(client, team["admin"])
    page = add_ok(client, "gcp", gcp_form(name="Doomed"))
    [credential] = stored(app, tenant)
    confirm = re.search(r'<details class="confirm">(.*?)</details>', shown(page)["Doomed"], re.S)
    assert confirm and f'action="/credentials/{credential.id}/delete"' in confirm.group(1)
    assert "Yes, delete" in confirm.group(1) and "cannot be undone" in confirm.group(1)
    response = client.post(f"/credentials/{credential.id}/delete")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The credential “Doomed” was deleted." in html.unescape(page)
    assert shown(page) == {} and "No credentials yet." in page
    [row] = stored(app, tenant, deleted=True)
    assert row.deleted_at is not None
    # Gone for good: a second delete or a rename finds nothing.
    assert client.post(f"/credentials/{credential.id}/delete").status_code == 404


def test_rename_to_an_empty_name_is_refused(app, client, tenant, team, login):
    login(client, team["owner"])
    add_ok(client, "azure", azure_form(name="Keep me"))
    [credential] = stored(app, tenant)
    response = client.post(f"/credentials/{credential.id}/rename", data={"credential_name": "  "})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Give the credential a name." in page and list(shown(page)) == ["Keep me"]


def test_filter_by_provider(app, client, team, login):
    login(client, team["owner"])
    add_ok(client, "gcp", gcp_form(name="G"))
    add_ok(client, "aws", aws_form(name="A"))
    add_ok(client, "azure", azure_form(name="Z"))
    assert set(shown(client.get("/credentials").get_data(as_text=True))) == {"G", "A", "Z"}
    assert list(shown(client.get("/credentials?provider=gcp").get_data(as_text=True))) == ["G"]
    assert list(shown(client.get("/credentials?provider=aws").get_data(as_text=True))) == ["A"]
    page = client.get("/credentials?provider=azure").get_data(as_text=True)
    assert list(shown(page)) == ["Z"] and 'aria-current="page">Azure</a>' in page
    assert set(shown(client.get("/credentials?provider=bogus").get_data(as_text=True))) == {"G", "A", "Z"}
