"""Signing secrets and Standard Webhooks signatures.

A secret (``whsec_`` + 24 random bytes in base64, the Standard Webhooks form) has to be used
in clear to sign, so it cannot be hashed: it is sealed with AES-GCM under the credentials
keyring, bound to its endpoint. The signature is the ``standardwebhooks`` package's own, so
a receiver verifies with that package (or any Standard Webhooks library) in a few lines."""

import base64
import secrets
from datetime import datetime
from functools import lru_cache

from standardwebhooks import Webhook

from portal.credentials import crypto
from portal.models import WebhookEndpoint
from portal.models.base import utcnow

SEAL_CONTEXT = "webhook-endpoint"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def seal(endpoint_id: str, secret: str) -> tuple[bytes, str]:
    return crypto.encrypt(crypto.current_keyring(), secret.encode(), SEAL_CONTEXT, endpoint_id)


@lru_cache(maxsize=1024)
def _unseal(endpoint_id: str, blob: bytes, kid: str) -> str:
    # Kept per process: a worker signs hundreds of deliveries a second with a few secrets, and
    # reading the keyring and decrypting each time would be most of a delivery's CPU.
    return crypto.decrypt(crypto.current_keyring(), blob, kid, SEAL_CONTEXT, endpoint_id).decode()


def signing_secrets(endpoint: WebhookEndpoint, at: datetime | None = None) -> list[str]:
    """The current secret, then the previous one while its overlap lasts."""
    at = at or utcnow()
    found = [_unseal(endpoint.id, bytes(endpoint.sealed_secret), endpoint.sealed_key_id)]
    if (
        endpoint.sealed_previous_secret is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > at
    ):
        found.append(_unseal(endpoint.id, bytes(endpoint.sealed_previous_secret), endpoint.previous_key_id))
    return found


def headers(message_id: str, body: bytes, secrets_in_use: list[str], at: datetime | None = None) -> dict:
    """The three Standard Webhooks headers; one ``v1,`` signature per secret, space-separated."""
    at = at or utcnow()
    signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets_in_use)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": "Portal-Webhooks/1.0",
    }
