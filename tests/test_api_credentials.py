"""Seed 000's cloud credential endpoints: add, list, delete, re-validate; scopes, cross-tenant, secrecy."""

import json

import pytest
from sqlalchemy import text

from portal.extensions import db
from portal.models import AuditEvent, Credential
from tests.api_support import assert_envelope, count, fetch, issue_key, send_json, with_key
from tests.credential_samples import AWS_SECRET, PRIVATE_KEY, TRUNCATED_KEY

WRITE = ["credentials:read", "credentials:write"]
LIST_FIELDS = {
    "credential_id",
    "provider",
    "credential_type",
    "credential_name",
    "identity",
    "fingerprint",
    "is_active",
    "created_at",
    "last_validated_at",
}


def seed_gcp(private_key: str = PRIVATE_KEY) -> dict:
    """Seed 000's GCP request body, with a real RSA key in place of the truncated one."""
    return {
        "provider": "gcp",
        "credential_type": "service_account",
        "credential_name": "GCP Billing Export",
        "credentials": {
            "type": "service_account",
            "project_id": "customer-project-123",
            "private_key": private_key,
            "client_email": "service-account@customer-project.iam.gserviceaccount.com",
            "client_id": "123456789",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        },
        "scopes": ["bigquery.readonly"],
    }


def seed_aws() -> dict:
    return {
        "provider": "aws",
        "credential_type": "access_key",
        "credential_name": "AWS Cost Explorer",
        "credentials": {
            "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key": AWS_SECRET,
            "region": "us-east-1",
        },
    }


# Substrings of the secrets that must never leave the vault in clear.
PEM_BODY = PRIVATE_KEY.splitlines()[5]
SECRETS = [AWS_SECRET, PEM_BODY, "BEGIN PRIVATE KEY", "AKIAIOSFODNN7EXAMPLE"]


@pytest.fixture
def tenant_and_key(app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant, scopes=WRITE)
    return tenant, plaintext


def _path(tenant, suffix=""):
    return f"/api/v1/tenants/{tenant.tenant_id}/credentials{suffix}"


def _assert_no_secret(response):
    raw = response.get_data(as_text=True)
    for secret in SECRETS:
        assert secret not in raw, f"secret leaked in {response.request.method} {response.request.path}"
    assert "MIIE" not in raw


def _add(client, tenant, key, body):
    response = client.post(_path(tenant), json=body, headers=with_key(key))
    assert response.status_code == 200, response.get_json()
    _assert_no_secret(response)
    return response.get_json()


def test_seed_gcp_body_is_accepted(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    data = _add(client, tenant, key, seed_gcp())
    assert data["credential_id"].startswith("cred")
    assert data["tenant_id"] == tenant.tenant_id
    assert data["provider"] == "gcp"
    assert data["credential_type"] == "service_account"
    assert data["credential_name"] == "GCP Billing Export"
    assert data["identity"] == "service-account@customer-project.iam.gserviceaccount.com"
    assert len(data["fingerprint"]) == 16
    assert data["is_active"] is True
    assert data["created_at"] and data["last_validated_at"]
    assert data["message"] == "Credentials added and validated successfully"
    assert "credentials" not in data and "private_key" not in json.dumps(data)
    stored = fetch(app, Credential, data["credential_id"])
    assert stored.tenant_id == tenant.tenant_id and stored.provider == "gcp"


def test_seed_aws_body_is_accepted_and_the_key_id_is_masked(client, tenant_and_key):
    tenant, key = tenant_and_key
    data = _add(client, tenant, key, seed_aws())
    assert data["provider"] == "aws" and data["credential_type"] == "access_key"
    assert data["identity"] == "*" * 16 + "MPLE"


def test_truncated_seed_key_is_rejected_and_nothing_is_stored(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    response = client.post(_path(tenant), json=seed_gcp(TRUNCATED_KEY), headers=with_key(key))
    body = assert_envelope(response, 400, "INVALID_CREDENTIALS")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"credentials.private_key"}
    assert "MIIEvQ" not in response.get_data(as_text=True)
    assert count(app, Credential, tenant_id=tenant.tenant_id) == 0


def test_every_failing_field_gets_its_own_error(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    body = seed_aws()
    body["credential_name"] = "   "
    body["credentials"] = {
        "aws_access_key_id": "AKIA123",
        "aws_secret_access_key": "short",
        "region": "mars-1",
        "aws_region": "x",
    }
    response = client.post(_path(tenant), json=body, headers=with_key(key))
    errors = assert_envelope(response, 400, "INVALID_CREDENTIALS")["errors"]
    assert {error["field"] for error in errors} == {
        "credential_name",
        "credentials.aws_access_key_id",
        "credentials.aws_secret_access_key",
        "credentials.region",
        "credentials.aws_region",
    }
    assert "short" not in response.get_data(as_text=True)
    assert count(app, Credential, tenant_id=tenant.tenant_id) == 0


def test_wrong_credential_type_and_bad_bodies(client, tenant_and_key):
    tenant, key = tenant_and_key
    body = seed_aws()
    body["credential_type"] = "service_account"
    errors = assert_envelope(client.post(_path(tenant), json=body, headers=with_key(key)), 400, "INVALID_CREDENTIALS")[
        "errors"
    ]
    assert [error["field"] for error in errors] == ["credential_type"]
    for bad in (
        {**seed_aws(), "provider": "oracle"},
        {**seed_aws(), "credentials": "text"},
        {**seed_aws(), "extra": 1},
        {"provider": "aws"},
        [],
        "x",
    ):
        response = send_json(client, "post", _path(tenant), bad, with_key(key))
        assert_envelope(response, 400, "VALIDATION_ERROR")
    response = client.post(_path(tenant), data="{}", content_type="text/plain", headers=with_key(key))
    assert_envelope(response, 415)


def test_list_filters_by_provider_and_never_shows_secrets(client, tenant_and_key):
    tenant, key = tenant_and_key
    gcp = _add(client, tenant, key, seed_gcp())
    aws = _add(client, tenant, key, seed_aws())
    response = client.get(_path(tenant), headers=with_key(key))
    assert response.status_code == 200
    _assert_no_secret(response)
    data = response.get_json()
    assert {item["credential_id"] for item in data["credentials"]} == {gcp["credential_id"], aws["credential_id"]}
    for item in data["credentials"]:
        assert set(item) == LIST_FIELDS
    assert data["pagination"]["total_items"] == 2
    only_gcp = client.get(_path(tenant) + "?provider=gcp", headers=with_key(key)).get_json()
    assert [item["credential_id"] for item in only_gcp["credentials"]] == [gcp["credential_id"]]
    assert len(client.get(_path(tenant) + "?provider=all", headers=with_key(key)).get_json()["credentials"]) == 2
    paged = client.get(_path(tenant) + "?page_size=1&page=2", headers=with_key(key)).get_json()
    assert len(paged["credentials"]) == 1 and paged["pagination"]["has_previous"] is True
    assert_envelope(client.get(_path(tenant) + "?provider=oracle", headers=with_key(key)), 400, "VALIDATION_ERROR")


def test_delete_removes_it_from_the_list(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    created = _add(client, tenant, key, seed_aws())
    response = client.delete(_path(tenant, f"/{created['credential_id']}"), headers=with_key(key))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "credential_id": created["credential_id"],
        "message": "Credentials deleted successfully",
    }
    assert client.get(_path(tenant), headers=with_key(key)).get_json()["credentials"] == []
    assert fetch(app, Credential, created["credential_id"]).deleted_at is not None
    # Deleted: gone for every route.
    again = client.delete(_path(tenant, f"/{created['credential_id']}"), headers=with_key(key))
    assert_envelope(again, 404, "RESOURCE_NOT_FOUND")
    validate = client.post(_path(tenant, f"/{created['credential_id']}/validate"), headers=with_key(key))
    assert_envelope(validate, 404, "RESOURCE_NOT_FOUND")
    assert_envelope(client.delete(_path(tenant, "/cred_nope"), headers=with_key(key)), 404, "RESOURCE_NOT_FOUND")


def test_validate_reports_valid_and_invalid(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    created = _add(client, tenant, key, seed_gcp())
    response = client.post(_path(tenant, f"/{created['credential_id']}/validate"), headers=with_key(key))
    assert response.status_code == 200, response.get_json()
    _assert_no_secret(response)
    data = response.get_json()
    assert data["valid"] is True and data["errors"] == [] and data["is_active"] is True
    assert data["credential_id"] == created["credential_id"]

    # A secret that has stopped passing (here: the validator grew stricter) is reported per field.
    from portal.credentials import services

    with app.test_request_context():
        credential = db.session.get(Credential, created["credential_id"])
        broken = services._open(credential)
        broken["private_key"] = TRUNCATED_KEY
        services._seal(credential, broken, services.crypto.current_keyring())
        db.session.commit()
    response = client.post(_path(tenant, f"/{created['credential_id']}/validate"), headers=with_key(key))
    assert response.status_code == 200
    data = response.get_json()
    assert data["valid"] is False and data["is_active"] is False
    assert [error["field"] for error in data["errors"]] == ["credentials.private_key"]
    assert "MIIEvQ" not in response.get_data(as_text=True)


def test_undecryptable_secret_gives_409_not_500(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    created = _add(client, tenant, key, seed_aws())
    with app.test_request_context():
        credential = db.session.get(Credential, created["credential_id"])
        credential.ciphertext = credential.ciphertext[:-1] + bytes([credential.ciphertext[-1] ^ 1])
        db.session.commit()
    response = client.post(_path(tenant, f"/{created['credential_id']}/validate"), headers=with_key(key))
    assert_envelope(response, 409, "CONFLICT")


@pytest.mark.parametrize("scopes", [["credentials:read"], ["pipelines:read", "usage:read"]])
def test_writes_need_credentials_write(client, app, make_tenant, scopes):
    tenant = make_tenant()
    _, writer = issue_key(app, tenant, scopes=WRITE)
    _, reader = issue_key(app, tenant, scopes=scopes)
    created = _add(client, tenant, writer, seed_aws())
    assert_envelope(client.post(_path(tenant), json=seed_aws(), headers=with_key(reader)), 403, "INSUFFICIENT_SCOPE")
    assert_envelope(
        client.delete(_path(tenant, f"/{created['credential_id']}"), headers=with_key(reader)),
        403,
        "INSUFFICIENT_SCOPE",
    )
    assert_envelope(
        client.post(_path(tenant, f"/{created['credential_id']}/validate"), headers=with_key(reader)),
        403,
        "INSUFFICIENT_SCOPE",
    )
    assert count(app, Credential, tenant_id=tenant.tenant_id) == 1
    assert fetch(app, Credential, created["credential_id"]).deleted_at is None


def test_list_needs_credentials_read(client, app, make_tenant):
    tenant = make_tenant()
    _, no_read = issue_key(app, tenant, scopes=["credentials:write"])
    _, reader = issue_key(app, tenant, scopes=["credentials:read"])
    _, admin = issue_key(app, tenant, scopes=["admin:*"])
    assert_envelope(client.get(_path(tenant), headers=with_key(no_read)), 403, "INSUFFICIENT_SCOPE")
    assert client.get(_path(tenant), headers=with_key(reader)).status_code == 200
    assert client.get(_path(tenant), headers=with_key(admin)).status_code == 200
    assert client.post(_path(tenant), json=seed_aws(), headers=with_key(admin)).status_code == 200


def test_no_key_is_401(client, tenant_and_key):
    tenant, _ = tenant_and_key
    assert_envelope(client.get(_path(tenant)), 401, "UNAUTHORIZED")
    assert_envelope(client.post(_path(tenant), json=seed_aws(), headers=with_key("nope")), 401, "INVALID_API_KEY")


def test_cross_tenant(client, app, make_tenant):
    tenant_a, tenant_b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, tenant_a, scopes=WRITE)
    _, key_b = issue_key(app, tenant_b, scopes=WRITE)
    b_cred = _add(client, tenant_b, key_b, seed_aws())["credential_id"]

    # A's key on B's paths: "Access denied", whatever the route.
    for response in (
        client.get(_path(tenant_b), headers=with_key(key_a)),
        client.post(_path(tenant_b), json=seed_aws(), headers=with_key(key_a)),
        client.delete(_path(tenant_b, f"/{b_cred}"), headers=with_key(key_a)),
        client.post(_path(tenant_b, f"/{b_cred}/validate"), headers=with_key(key_a)),
    ):
        assert assert_envelope(response, 403)["detail"] == "Access denied"

    # B's credential id under A's own path: not found, and nothing happens to it.
    assert_envelope(client.delete(_path(tenant_a, f"/{b_cred}"), headers=with_key(key_a)), 404, "RESOURCE_NOT_FOUND")
    assert_envelope(
        client.post(_path(tenant_a, f"/{b_cred}/validate"), headers=with_key(key_a)), 404, "RESOURCE_NOT_FOUND"
    )
    assert client.get(_path(tenant_a), headers=with_key(key_a)).get_json()["credentials"] == []
    stored = fetch(app, Credential, b_cred)
    assert stored.deleted_at is None and stored.is_active is True
    assert count(app, Credential, tenant_id=tenant_b.tenant_id) == 1
    assert count(app, AuditEvent, target_id=b_cred, action="credential.deleted") == 0
    assert count(app, AuditEvent, target_id=b_cred, action="credential.validated") == 0


def test_secret_is_not_in_the_raw_database_column(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    ids = [_add(client, tenant, key, body)["credential_id"] for body in (seed_gcp(), seed_aws())]
    with app.app_context():
        rows = db.session.execute(
            text("SELECT ciphertext, identity, fingerprint, name FROM credentials WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        ).all()
        audit_details = [
            json.dumps(event.details) for event in db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id)
        ]
    assert len(rows) == len(ids) == 2
    for ciphertext, *plain in rows:
        raw = bytes(ciphertext)
        for secret in SECRETS + ["customer-project-123", "us-east-1"]:
            assert secret.encode() not in raw
        assert all(secret not in " ".join(plain) for secret in SECRETS)
    for details in audit_details:
        assert all(secret not in details for secret in SECRETS)


def test_every_change_is_audited(client, app, tenant_and_key):
    tenant, key = tenant_and_key
    created = _add(client, tenant, key, seed_gcp())["credential_id"]
    client.post(_path(tenant, f"/{created}/validate"), headers=with_key(key))
    client.delete(_path(tenant, f"/{created}"), headers=with_key(key))
    with app.app_context():
        events = db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, target_id=created).all()
        actions = [event.action for event in sorted(events, key=lambda event: event.id)]
        labels = {event.actor_label for event in events}
    assert actions == ["credential.added", "credential.validated", "credential.deleted"]
    assert all(label for label in labels)
