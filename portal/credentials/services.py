"""Cloud credentials: add (validate, encrypt, store), list, rename, re-validate, delete, rotate keys.

Decryption happens in three places only, all here: re-validation, key rotation, and
``reveal_secret_for_platform_use``, which audits every call.
"""

import hashlib
import json
import logging

from sqlalchemy import Select, func, select

from portal import audit
from portal.access import Actor
from portal.credentials import crypto
from portal.credentials.crypto import CredentialDecryptError
from portal.credentials.validation import CredentialInvalid, validate
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.models import CREDENTIAL_TYPES, PROVIDERS, Credential, Tenant, utcnow
from portal.models.base import new_id
from portal.tenants.scoped import get_for_tenant

log = logging.getLogger(__name__)

MAX_NAME = 100


def _canonical(secret: dict) -> bytes:
    return json.dumps(secret, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(secret: dict) -> str:
    return hashlib.sha256(_canonical(secret)).hexdigest()[:16]


def _name_errors(name) -> tuple[str, list[dict[str, str]]]:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        return name, [{"field": "credential_name", "message": "Give the credential a name."}]
    if len(name) > MAX_NAME:
        return name, [
            {"field": "credential_name", "message": f"credential_name must be at most {MAX_NAME} characters."}
        ]
    return name, []


def _seal(credential: Credential, secret: dict, keyring: crypto.Keyring) -> None:
    credential.ciphertext, credential.key_id = crypto.encrypt(
        keyring, _canonical(secret), credential.tenant_id, credential.id
    )


def _open(credential: Credential, keyring: crypto.Keyring | None = None) -> dict:
    plaintext = crypto.decrypt(
        keyring or crypto.current_keyring(),
        credential.ciphertext,
        credential.key_id,
        credential.tenant_id,
        credential.id,
    )
    return json.loads(plaintext)


def add_credential(
    actor: Actor,
    tenant: Tenant,
    provider: str,
    credential_type: str | None,
    name: str,
    payload,
) -> Credential:
    """Validate the secret, encrypt it, store it; nothing is stored when anything fails."""
    name, errors = _name_errors(name)
    try:
        validated = validate(provider, credential_type, payload)
    except CredentialInvalid as error:
        raise CredentialInvalid(errors + error.errors) from None
    if errors:
        raise CredentialInvalid(errors)
    credential = Credential(
        id=new_id("cred"),  # the id is part of the associated data, so it is needed before encrypting
        tenant_id=tenant.tenant_id,
        provider=provider,
        credential_type=CREDENTIAL_TYPES[provider],
        name=name,
        identity=validated.identity,
        fingerprint=fingerprint(validated.secret),
        created_by_id=actor.user.id if actor.user else None,
        created_by_label=actor.name,
        last_validated_at=utcnow(),
        is_active=True,
    )
    _seal(credential, validated.secret, crypto.current_keyring())
    db.session.add(credential)
    db.session.flush()
    log.info("Credential %s (%s) added for tenant %s", credential.id, provider, tenant.tenant_id)
    audit.record(
        actor,
        "credential.added",
        tenant,
        "credential",
        credential.id,
        name=name,
        provider=provider,
        identity=credential.identity,
        fingerprint=credential.fingerprint,
    )
    return credential


def credentials_query(tenant: Tenant, provider: str | None = None) -> Select:
    """The tenant's credentials that are not deleted, newest first; provider None or "all" for every one."""
    query = select(Credential).where(Credential.tenant_id == tenant.tenant_id, Credential.deleted_at.is_(None))
    if provider not in (None, "", "all"):
        if provider not in PROVIDERS:
            raise ValidationFailed(f"provider must be one of: all, {', '.join(PROVIDERS)}.", field="provider")
        query = query.where(Credential.provider == provider)
    return query.order_by(Credential.created_at.desc(), Credential.id)


def list_credentials(tenant: Tenant, provider: str | None = None) -> list[Credential]:
    return list(db.session.execute(credentials_query(tenant, provider)).scalars())


def same_secret_as(tenant: Tenant, credential: Credential) -> list[Credential]:
    """The tenant's other credentials holding the very same secret (the same fingerprint)."""
    query = credentials_query(tenant).where(
        Credential.fingerprint == credential.fingerprint, Credential.id != credential.id
    )
    return list(db.session.execute(query).scalars())


def get_credential(tenant: Tenant, credential_id: str) -> Credential:
    """One of this tenant's credentials that is not deleted; another tenant's is simply not found."""
    return get_for_tenant(Credential, credential_id, tenant, "Credential", where=(Credential.deleted_at.is_(None),))


def _check_owner(tenant: Tenant, credential: Credential) -> None:
    if credential.tenant_id != tenant.tenant_id or credential.deleted_at is not None:
        raise NotFound("No such credential.")


def rename_credential(actor: Actor, tenant: Tenant, credential: Credential, name: str) -> Credential:
    _check_owner(tenant, credential)
    name, errors = _name_errors(name)
    if errors:
        raise ValidationFailed(errors[0]["message"], field="credential_name")
    if name != credential.name:
        old, credential.name = credential.name, name
        db.session.flush()
        audit.record(actor, "credential.renamed", tenant, "credential", credential.id, old_name=old, name=name)
    return credential


def revalidate_credential(actor: Actor, tenant: Tenant, credential: Credential) -> list[dict[str, str]]:
    """Decrypt and check the stored secret again; returns the failing fields ([] when valid).

    A failure marks the credential inactive rather than raising, so the outcome is kept
    (and audited) when the caller commits.
    """
    _check_owner(tenant, credential)
    try:
        validate(credential.provider, credential.credential_type, _open(credential))
        errors: list[dict[str, str]] = []
    except CredentialInvalid as error:
        errors = error.errors
    credential.is_active = not errors
    if not errors:
        credential.last_validated_at = utcnow()
    db.session.flush()
    audit.record(
        actor,
        "credential.validated",
        tenant,
        "credential",
        credential.id,
        name=credential.name,
        valid=not errors,
        failed_fields=[error["field"] for error in errors],
    )
    return errors


def delete_credential(actor: Actor, tenant: Tenant, credential: Credential) -> Credential:
    """Soft delete: the row stays for the audit trail but is never listed or used again."""
    if credential.tenant_id != tenant.tenant_id:
        raise NotFound("No such credential.")
    if credential.deleted_at is not None:
        raise Conflict("This credential is already deleted.")
    credential.deleted_at = utcnow()
    credential.is_active = False
    db.session.flush()
    audit.record(
        actor,
        "credential.deleted",
        tenant,
        "credential",
        credential.id,
        name=credential.name,
        provider=credential.provider,
        identity=credential.identity,
    )
    return credential


def reveal_secret_for_platform_use(actor: Actor, credential: Credential, purpose: str) -> dict:
    """The decrypted secret for the platform's own calls to the provider; audited every time."""
    purpose = (purpose or "").strip()
    if not purpose:
        raise ValueError("Say why the secret is needed (purpose); it goes in the audit log.")
    if credential.deleted_at is not None or not credential.is_active:
        raise Conflict("This credential is not active.")
    audit.record(
        actor,
        "credential.secret_used",
        credential.tenant,
        "credential",
        credential.id,
        purpose=purpose[:200],
        provider=credential.provider,
    )
    db.session.flush()
    return _open(credential)


def rotate_batch(
    keyring: crypto.Keyring, after_id: str = "", batch_size: int = 100
) -> tuple[int, list[str], str | None]:
    """Re-encrypt up to ``batch_size`` credentials (id order, after ``after_id``) not under the primary key.

    Returns (rotated, ids that failed to decrypt, last id seen or None when nothing was left).
    Deleted credentials are rotated too, so the old key can really be removed.
    """
    rows = (
        db.session.execute(
            select(Credential)
            .where(Credential.key_id != keyring.primary_id, Credential.id > after_id)
            .order_by(Credential.id)
            .limit(batch_size)
        )
        .scalars()
        .all()
    )
    if not rows:
        return 0, [], None
    rotated, failed = 0, []
    for credential in rows:
        try:
            secret = _open(credential, keyring)
        except CredentialDecryptError as error:
            log.error("Key rotation skipped %s: %s", credential.id, error)
            failed.append(credential.id)
            continue
        _seal(credential, secret, keyring)
        rotated += 1
    db.session.flush()
    return rotated, failed, rows[-1].id


def count_by_key(keyring: crypto.Keyring) -> tuple[int, int]:
    """(credentials under the primary key, credentials under any other key)."""
    total = db.session.execute(select(func.count()).select_from(Credential)).scalar_one()
    current = db.session.execute(
        select(func.count()).select_from(Credential).where(Credential.key_id == keyring.primary_id)
    ).scalar_one()
    return current, total - current
