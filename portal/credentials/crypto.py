"""AES-GCM encryption of credential secrets under the CREDENTIALS_KEYS key list.

The first key encrypts; every listed key decrypts, so keys can be rotated: add the new key
in front, run ``flask credentials rotate-keys``, then drop the old one. Each ciphertext is
bound (associated data) to its tenant and credential id, so a row copied elsewhere fails.
"""

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

NONCE_BYTES = 12  # 96 bits, the size AES-GCM is designed for
KEY_BYTES = 32
AAD_VERSION = b"portal-credential-v1"


class CredentialKeyError(RuntimeError):
    """CREDENTIALS_KEYS (or the local key file) is missing or malformed."""


class CredentialDecryptError(Exception):
    """A stored credential could not be decrypted: unknown key, tampering, or a moved row."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]  # key id -> key, primary first (dicts keep insertion order)

    @property
    def primary_id(self) -> str:
        return next(iter(self.keys))


def key_id(key: bytes) -> str:
    """A short, non-secret name for a key: first 8 hex of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def _decode_key(text: str, position: int) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        # Name the position, never the value: this message reaches logs.
        raise CredentialKeyError(
            f"CREDENTIALS_KEYS entry {position} is not a url-safe base64 encoded {KEY_BYTES}-byte key"
        )
    return key


def parse_keys(value: str) -> Keyring:
    """A Keyring from a comma-separated CREDENTIALS_KEYS value."""
    entries = [part for part in (value or "").split(",") if part.strip()]
    if not entries:
        raise CredentialKeyError("CREDENTIALS_KEYS is empty")
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries, start=1):
        key = _decode_key(entry, position)
        keys.setdefault(key_id(key), key)
    return Keyring(keys)


def load_or_create_key_file(path: Path) -> str:
    """The embedded mode's key: read from ``path``, created there (0600) the first time."""
    path = Path(path)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key() + "\n")
    log.warning(
        "Created a local credentials encryption key at %s (embedded mode). Back it up: credentials "
        "stored under it cannot be read without it. Production sets CREDENTIALS_KEYS instead.",
        path,
    )
    return path.read_text().strip()


def keyring_from_config(config) -> Keyring:
    if config.get("CREDENTIALS_KEYS"):
        return parse_keys(config["CREDENTIALS_KEYS"])
    return parse_keys(load_or_create_key_file(config["CREDENTIALS_KEY_FILE"]))


def current_keyring() -> Keyring:
    from flask import current_app

    return keyring_from_config(current_app.config)


def associated_data(tenant_id: str, credential_id: str) -> bytes:
    return b"|".join([AAD_VERSION, tenant_id.encode(), credential_id.encode()])


def encrypt(keyring: Keyring, plaintext: bytes, tenant_id: str, credential_id: str) -> tuple[bytes, str]:
    """(nonce + ciphertext, key id) under the primary key."""
    kid = keyring.primary_id
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(keyring.keys[kid]).encrypt(nonce, plaintext, associated_data(tenant_id, credential_id))
    return nonce + sealed, kid


def decrypt(keyring: Keyring, blob: bytes, kid: str, tenant_id: str, credential_id: str) -> bytes:
    key = keyring.keys.get(kid)
    if key is None:
        raise CredentialDecryptError(
            f"Credential {credential_id} was encrypted with key {kid}, which is not in CREDENTIALS_KEYS."
        )
    if len(blob) <= NONCE_BYTES:
        raise CredentialDecryptError(f"Credential {credential_id} has a truncated ciphertext.")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated_data(tenant_id, credential_id))
    except InvalidTag:
        raise CredentialDecryptError(
            f"Credential {credential_id} failed authentication: the ciphertext was altered, "
            f"or it does not belong to tenant {tenant_id}."
        ) from None
