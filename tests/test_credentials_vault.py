"""The credentials vault: validated on entry, encrypted at rest, rotated, decrypted only with an audit entry."""

import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, text

from portal import create_app
from portal.access import Actor
from portal.config import check_production
from portal.credentials import crypto, services
from portal.credentials.crypto import CredentialDecryptError
from portal.credentials.validation import CredentialInvalid, validate
from portal.extensions import db
from portal.models import AuditEvent, Credential, User
from tests.credential_samples import AWS_SECRET, PRIVATE_KEY

KEY_A = crypto.generate_key()
KEY_B = crypto.generate_key()
ID_A = crypto.parse_keys(KEY_A).primary_id
ID_B = crypto.parse_keys(KEY_B).primary_id

AZURE_SECRET = "azure~client~secret~value~0123456789"  # noqa: S105 - test value


def seed_gcp(private_key: str = PRIVATE_KEY) -> dict:
    """Seed 000's GCP request body's "credentials" object."""
    return {
        "type": "service_account",
        "project_id": "customer-project-123",
        "private_key": private_key,
        "client_email": "service-account@customer-project.iam.gserviceaccount.com",
        "client_id": "123456789",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def seed_aws() -> dict:
    return {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": AWS_SECRET, "region": "us-east-1"}


def azure() -> dict:
    return {
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
        "subscription_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": AZURE_SECRET,
    }


@pytest.fixture
def keys(app, monkeypatch):
    """keys("A,B") configures CREDENTIALS_KEYS for the app under test."""

    def use(*names: str):
        value = ",".join({"A": KEY_A, "B": KEY_B}[name] for name in names)
        monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", value)

    use("A")
    return use


@pytest.fixture
def owner(make_tenant, make_user):
    tenant = make_tenant()
    member = make_user(tenant, role="owner")
    return tenant, member


def actor_for(member) -> Actor:
    return Actor(user=db.session.get(User, member.user.id), ip="203.0.113.9")


def raw_ciphertext(credential_id: str) -> bytes:
    value = db.session.execute(
        text("SELECT ciphertext FROM credentials WHERE id = :id"), {"id": credential_id}
    ).scalar_one()
    return bytes(value)


def audit_actions(credential_id: str) -> list[str]:
    return list(
        db.session.execute(
            select(AuditEvent.action).where(AuditEvent.target_id == credential_id).order_by(AuditEvent.id)
        ).scalars()
    )


def field_errors(error: CredentialInvalid) -> dict[str, str]:
    return {item["field"]: item["message"] for item in error.errors}


# --- storage: the secret never appears in the database or the logs ----------------------


def test_secret_is_not_in_the_raw_database_column_nor_the_logs(keys, owner, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    tenant, member = owner
    gcp = services.add_credential(actor_for(member), tenant, "gcp", "service_account", "GCP Billing Export", seed_gcp())
    aws = services.add_credential(actor_for(member), tenant, "aws", "access_key", "AWS Cost Explorer", seed_aws())
    az = services.add_credential(actor_for(member), tenant, "azure", None, "Azure", azure())
    db.session.commit()

    pem_body = PRIVATE_KEY.splitlines()[5]
    for credential, secret in ((gcp, pem_body), (aws, AWS_SECRET), (az, AZURE_SECRET)):
        stored = raw_ciphertext(credential.id)
        assert secret.encode() not in stored
        assert b"private_key" not in stored and b"client_secret" not in stored
        row = (
            db.session.execute(text("SELECT * FROM credentials WHERE id = :id"), {"id": credential.id}).mappings().one()
        )
        assert all(secret not in str(value) for value in row.values())
        for event in db.session.execute(select(AuditEvent).where(AuditEvent.target_id == credential.id)).scalars():
            assert secret not in str(event.details)
    assert pem_body not in caplog.text and AWS_SECRET not in caplog.text and AZURE_SECRET not in caplog.text
    assert KEY_A not in caplog.text

    assert aws.identity == "****************MPLE"
    assert gcp.identity == "service-account@customer-project.iam.gserviceaccount.com"
    assert az.identity == "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
    assert len(gcp.fingerprint) == 16 and gcp.fingerprint != aws.fingerprint
    assert gcp.id.startswith("cred_") and gcp.key_id == ID_A
    assert audit_actions(gcp.id) == ["credential.added"]


def test_platform_use_decrypts_and_audits_every_time(keys, owner, ctx):
    tenant, member = owner
    credential = services.add_credential(actor_for(member), tenant, "aws", "access_key", "AWS", seed_aws())
    for _ in range(2):
        assert (
            services.reveal_secret_for_platform_use(
                Actor(user=None, label="billing-export"), credential, "nightly cost export"
            )
            == seed_aws()
        )
    assert audit_actions(credential.id) == ["credential.added", "credential.secret_used", "credential.secret_used"]
    with pytest.raises(ValueError, match="purpose"):
        services.reveal_secret_for_platform_use(actor_for(member), credential, "  ")


def test_failed_validation_stores_nothing(keys, owner, ctx):
    tenant, member = owner
    bad = {**seed_aws(), "region": "mars-1"}
    with pytest.raises(CredentialInvalid) as error:
        services.add_credential(actor_for(member), tenant, "aws", "access_key", "", bad)
    assert set(field_errors(error.value)) == {"credential_name", "region"}
    assert error.value.error_code == "INVALID_CREDENTIALS" and error.value.status_code == 400
    assert services.list_credentials(tenant) == []
    assert db.session.execute(select(Credential).where(Credential.tenant_id == tenant.tenant_id)).first() is None


def test_list_rename_revalidate_delete(keys, owner, make_tenant, ctx):
    tenant, member = owner
    actor = actor_for(member)
    gcp = services.add_credential(actor, tenant, "gcp", None, "GCP", seed_gcp())
    aws = services.add_credential(actor, tenant, "aws", None, "AWS", seed_aws())
    assert {c.id for c in services.list_credentials(tenant)} == {gcp.id, aws.id}
    assert [c.id for c in services.list_credentials(tenant, "aws")] == [aws.id]
    assert [c.id for c in services.list_credentials(tenant, "all")] != []
    assert services.list_credentials(make_tenant()) == []

    services.rename_credential(actor, tenant, aws, "  AWS prod  ")
    assert aws.name == "AWS prod"
    before = gcp.last_validated_at
    assert services.revalidate_credential(actor, tenant, gcp) == []
    assert gcp.last_validated_at >= before and gcp.is_active

    services.delete_credential(actor, tenant, aws)
    assert aws.deleted_at is not None and not aws.is_active
    assert [c.id for c in services.list_credentials(tenant)] == [gcp.id]
    assert audit_actions(aws.id) == ["credential.added", "credential.renamed", "credential.deleted"]
    assert audit_actions(gcp.id) == ["credential.added", "credential.validated"]


def test_another_tenant_cannot_reach_a_credential(keys, owner, make_tenant, ctx):
    from portal.errors import NotFound

    tenant, member = owner
    other = make_tenant()
    credential = services.add_credential(actor_for(member), tenant, "aws", None, "AWS", seed_aws())
    with pytest.raises(NotFound):
        services.get_credential(other, credential.id)
    with pytest.raises(NotFound):
        services.delete_credential(actor_for(member), other, credential)
    with pytest.raises(NotFound):
        services.rename_credential(actor_for(member), other, credential, "mine now")


# --- encryption: rotation, tampering, moved rows ----------------------------------------


def test_rotation_moves_every_credential_to_the_new_key_and_the_old_key_can_go(keys, owner, app, ctx):
    tenant, member = owner
    actor = actor_for(member)
    created = [services.add_credential(actor, tenant, "aws", None, f"AWS {n}", seed_aws()) for n in range(5)]
    deleted = services.add_credential(actor, tenant, "gcp", None, "gone", seed_gcp())
    services.delete_credential(actor, tenant, deleted)
    db.session.commit()
    assert {c.key_id for c in created} == {ID_A}
    before = {c.id: raw_ciphertext(c.id) for c in created}

    keys("B", "A")
    result = app.test_cli_runner().invoke(args=["credentials", "rotate-keys", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "Rotated 6 credential(s); 0 could not be decrypted." in result.output
    assert KEY_A not in result.output and KEY_B not in result.output

    keys("B")
    for credential in created:
        db.session.refresh(credential)
        assert credential.key_id == ID_B
        assert raw_ciphertext(credential.id) != before[credential.id]
        assert services.reveal_secret_for_platform_use(actor, credential, "test") == seed_aws()

    again = app.test_cli_runner().invoke(args=["credentials", "rotate-keys"])
    assert again.exit_code == 0 and "Rotated 0 credential(s)" in again.output


def test_rotation_reports_credentials_whose_key_is_missing(keys, owner, app, ctx):
    tenant, member = owner
    credential = services.add_credential(actor_for(member), tenant, "aws", None, "AWS", seed_aws())
    db.session.commit()
    keys("B")  # A forgotten before rotating
    result = app.test_cli_runner().invoke(args=["credentials", "rotate-keys"])
    assert result.exit_code == 1
    assert credential.id in result.output and "could not be decrypted" in result.output


def test_without_its_key_a_credential_fails_with_a_clear_error(keys, owner, ctx):
    tenant, member = owner
    credential = services.add_credential(actor_for(member), tenant, "aws", None, "AWS", seed_aws())
    keys("B")
    with pytest.raises(CredentialDecryptError, match=f"encrypted with key {ID_A}, which is not in CREDENTIALS_KEYS"):
        services.reveal_secret_for_platform_use(actor_for(member), credential, "test")


def test_a_tampered_ciphertext_fails_with_a_clear_error(keys, owner, ctx):
    tenant, member = owner
    credential = services.add_credential(actor_for(member), tenant, "aws", None, "AWS", seed_aws())
    db.session.commit()
    blob = bytearray(raw_ciphertext(credential.id))
    blob[20] ^= 0x01
    db.session.execute(
        text("UPDATE credentials SET ciphertext = :c WHERE id = :id"), {"c": bytes(blob), "id": credential.id}
    )
    db.session.expire_all()
    credential = db.session.get(Credential, credential.id)
    with pytest.raises(CredentialDecryptError, match="failed authentication: the ciphertext was altered"):
        services.reveal_secret_for_platform_use(actor_for(member), credential, "test")
    with pytest.raises(CredentialDecryptError):
        services.revalidate_credential(actor_for(member), tenant, credential)


def test_a_row_copied_to_another_tenant_does_not_decrypt(keys, owner, make_tenant, ctx):
    tenant, member = owner
    other = make_tenant()
    original = services.add_credential(actor_for(member), tenant, "aws", None, "AWS", seed_aws())
    copy = Credential(
        id="cred_copied00000000",
        tenant_id=other.tenant_id,
        provider="aws",
        credential_type="access_key",
        name="stolen",
        identity=original.identity,
        fingerprint=original.fingerprint,
        ciphertext=original.ciphertext,
        key_id=original.key_id,
    )
    db.session.add(copy)
    db.session.flush()
    with pytest.raises(CredentialDecryptError, match=f"does not belong to tenant {other.tenant_id}"):
        services.reveal_secret_for_platform_use(actor_for(member), copy, "test")
    # The same ciphertext under another id of the same tenant fails too.
    with pytest.raises(CredentialDecryptError):
        crypto.decrypt(crypto.parse_keys(KEY_A), original.ciphertext, original.key_id, tenant.tenant_id, "cred_other")


def test_each_encryption_uses_a_fresh_nonce():
    keyring = crypto.parse_keys(KEY_A)
    first, _ = crypto.encrypt(keyring, b"same", "t", "cred_x")
    second, _ = crypto.encrypt(keyring, b"same", "t", "cred_x")
    assert first[:12] != second[:12] and first != second
    assert crypto.decrypt(keyring, first, ID_A, "t", "cred_x") == b"same"


def test_malformed_keys_are_refused_without_echoing_them():
    with pytest.raises(crypto.CredentialKeyError, match="entry 2 is not a url-safe base64") as error:
        crypto.parse_keys(f"{KEY_A},not-a-key-at-all")
    assert KEY_A not in str(error.value)


# --- configuration ----------------------------------------------------------------------


def test_production_refuses_to_start_without_credentials_keys(monkeypatch):
    config = {
        "PORTAL_ENV": "production",
        "SECRET_KEY": "k" * 40,
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://portal@db.internal/portal",
        "MAIL_SERVER": "smtp.internal",
    }
    with pytest.raises(RuntimeError, match="CREDENTIALS_KEYS must be set"):
        check_production(config)
    with pytest.raises(RuntimeError, match="CREDENTIALS_KEYS entry 1"):
        check_production({**config, "CREDENTIALS_KEYS": "short"})
    check_production({**config, "CREDENTIALS_KEYS": f"{KEY_B},{KEY_A}"})

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("DATABASE_URL", "postgresql://portal@db.internal/portal")
    monkeypatch.delenv("CREDENTIALS_KEYS", raising=False)
    with pytest.raises(RuntimeError, match="CREDENTIALS_KEYS"):
        create_app()


def test_embedded_default_creates_a_private_key_file_once_and_reuses_it(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "instance" / "credentials.key"
    config = {"CREDENTIALS_KEYS": "", "CREDENTIALS_KEY_FILE": str(path)}
    first = crypto.keyring_from_config(config)
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "Created a local credentials encryption key" in caplog.text and str(path) in caplog.text
    assert path.read_text().strip() not in caplog.text

    caplog.clear()
    second = crypto.keyring_from_config(config)
    assert second == first
    assert "Created" not in caplog.text

    sealed, kid = crypto.encrypt(first, b"secret", "t", "cred_1")
    assert crypto.decrypt(second, sealed, kid, "t", "cred_1") == b"secret"


# --- validation: seed 000's bodies, per-field messages ----------------------------------


def test_seed_gcp_and_aws_bodies_are_accepted():
    gcp = validate("gcp", "service_account", seed_gcp())
    assert gcp.identity == "service-account@customer-project.iam.gserviceaccount.com"
    assert gcp.secret["private_key"] == PRIVATE_KEY
    import json

    assert validate("gcp", None, json.dumps(seed_gcp())).secret == seed_gcp()  # an uploaded key file
    aws = validate("aws", "access_key", seed_aws())
    assert aws.secret == seed_aws() and aws.identity == "****************MPLE"
    assert validate(
        "aws",
        None,
        {
            **seed_aws(),
            "aws_access_key_id": "ASIAIOSFODNN7EXAMPLE",
            "role_arn": "arn:aws:iam::123456789012:role/billing/CostReader",
        },
    ).secret["role_arn"]
    assert validate("azure", "service_principal", azure()).identity == azure()["client_id"]


def test_the_seeds_truncated_private_key_is_rejected_on_private_key():
    truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQ...\n-----END PRIVATE KEY-----"
    with pytest.raises(CredentialInvalid) as error:
        validate("gcp", "service_account", seed_gcp(truncated))
    assert set(field_errors(error.value)) == {"private_key"}
    assert "not a readable PEM private key" in field_errors(error.value)["private_key"]


def test_a_non_rsa_private_key_is_rejected():
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(CredentialInvalid) as error:
        validate("gcp", None, seed_gcp(ec_pem))
    assert field_errors(error.value) == {"private_key": "private_key must be an RSA private key."}


def test_each_gcp_field_error_is_reported():
    body = {
        **seed_gcp(),
        "type": "authorized_user",
        "client_email": "someone@gmail.com",
        "token_uri": "http://oauth2.googleapis.com/token",
    }
    del body["project_id"]
    with pytest.raises(CredentialInvalid) as error:
        validate("gcp", None, body)
    assert set(field_errors(error.value)) == {"type", "project_id", "client_email", "token_uri"}
    for bad in ("not json", "[1, 2]"):
        with pytest.raises(CredentialInvalid) as error:
            validate("gcp", None, bad)
        assert set(field_errors(error.value)) == {"credentials"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aws_access_key_id", "AKIAshort", "AKIA or ASIA followed by 16"),
        ("aws_access_key_id", "AKIDIOSFODNN7EXAMPLE", "AKIA or ASIA"),
        ("aws_access_key_id", "akiaiosfodnn7example", "uppercase"),
        ("aws_secret_access_key", AWS_SECRET[:39], "exactly 40 characters"),
        ("aws_secret_access_key", AWS_SECRET + "x", "exactly 40 characters"),
        ("region", "us-east-9", "not an AWS region"),
        ("region", "", "region is required"),
        ("role_arn", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:role/RoleName"),
        ("role_arn", "arn:aws:iam::123456789012:user/bob", "arn:aws:iam::123456789012:role/RoleName"),
    ],
)
def test_each_aws_field_error_is_reported_on_its_field(field, value, message):
    with pytest.raises(CredentialInvalid) as error:
        validate("aws", "access_key", {**seed_aws(), field: value})
    errors = field_errors(error.value)
    assert set(errors) == {field} and message in errors[field]
    assert value not in str(error.value.errors) or not value  # messages never quote the input


def test_every_failing_aws_field_is_reported_at_once():
    with pytest.raises(CredentialInvalid) as error:
        validate(
            "aws", None, {"aws_access_key_id": "x", "aws_secret_access_key": "y", "region": "z", "aws_region": "q"}
        )
    assert set(field_errors(error.value)) == {"aws_access_key_id", "aws_secret_access_key", "region", "aws_region"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tenant_id", "not-a-guid", "tenant_id must be a GUID"),
        ("client_id", "0f1e2d3c4b5a69788695a4b3c2d1e0f9", "client_id must be a GUID"),
        ("subscription_id", "", "subscription_id is required"),
        ("client_secret", "", "client_secret is required"),
        ("client_secret", "s" * 256, "at most 255 characters"),
    ],
)
def test_each_azure_field_error_is_reported_on_its_field(field, value, message):
    with pytest.raises(CredentialInvalid) as error:
        validate("azure", None, {**azure(), field: value})
    errors = field_errors(error.value)
    assert set(errors) == {field} and message in errors[field]


def test_provider_and_type_are_checked():
    with pytest.raises(CredentialInvalid) as error:
        validate("oracle", None, {})
    assert set(field_errors(error.value)) == {"provider"}
    with pytest.raises(CredentialInvalid) as error:
        validate("aws", "service_account", seed_aws())
    assert set(field_errors(error.value)) == {"credential_type"}
