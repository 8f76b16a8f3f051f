"""Real key material for credential tests: generated once per test process, never a fixture file."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# Seed 000's own AWS example values (AWS's documented example key).
AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# Seed 000's GCP example has a truncated private key; it must be refused.
TRUNCATED_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQ...\n-----END PRIVATE KEY-----"


def rsa_pem() -> str:
    """A fresh 2048-bit RSA private key, PEM PKCS8, as a service-account JSON carries it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


PRIVATE_KEY = rsa_pem()
