"""localstripe for tests: started once per test process on a free port, plus helpers to sign
webhook payloads exactly as Stripe does (``t=<unix>,v1=<hex hmac-sha256 of "t.body">``).

Run as ``python -m tests.stripe_support --port N`` it is localstripe with its on-disk store
switched off: every localstripe on a machine would otherwise share /tmp/localstripe.pickle.
"""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_service

SECRET_KEY = "sk_test_portal_localstripe"
PUBLISHABLE_KEY = "pk_test_portal_localstripe"
WEBHOOK_SECRET = "whsec_portal_test_secret"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen

    def config(self) -> dict:
        return {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": self.url,
            "STRIPE_JS_URL": f"{self.url}/js.stripe.com/v3/",
        }

    def register_webhook(self, url: str, name: str = "portal") -> None:
        """What `make run` does: localstripe then signs and POSTs every event to ``url``."""
        body = json.dumps({"url": url, "secret": WEBHOOK_SECRET}).encode()
        urllib.request.urlopen(  # noqa: S310 - our own http URLs
            urllib.request.Request(  # noqa: S310 - our own http URLs
                f"{self.url}/_config/webhooks/{name}",
                data=body,
                method="POST",
            ),
            timeout=5,
        ).read()

    def confirm_setup_intent(self, client_secret: str, number: str) -> dict:
        """What Stripe.js Elements sends when the customer submits the card form."""
        setup_intent = client_secret.split("_secret_")[0]
        body = json.dumps(
            {
                "key": PUBLISHABLE_KEY,
                "use_stripe_sdk": True,
                "client_secret": client_secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                },
            }
        )
        request = urllib.request.Request(  # noqa: S310 - our own http URLs
            f"{self.url}/v1/setup_intents/{setup_intent}/confirm",
            data=body.encode(),
            method="POST",
        )
        return json.loads(urllib.request.urlopen(request, timeout=5).read())  # noqa: S310 - our own http URLs

    def authenticate_payment_intent(self, payment_intent: dict, success: bool = True) -> dict:
        """What Stripe.js sends when the customer completes (or fails) the bank's 3-D Secure step."""
        body = json.dumps(
            {"key": PUBLISHABLE_KEY, "client_secret": payment_intent["client_secret"], "success": success}
        )
        request = urllib.request.Request(  # noqa: S310 - our own http URLs
            f"{self.url}/v1/payment_intents/{payment_intent['id']}/_authenticate",
            data=body.encode(),
            method="POST",
        )
        return json.loads(urllib.request.urlopen(request, timeout=5).read())  # noqa: S310 - our own http URLs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_localstripe() -> LocalStripe:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "tests.stripe_support", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/js.stripe.com/v3/", timeout=1).read()  # noqa: S310 - our own http URLs
            return LocalStripe(url=url, process=process)
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("localstripe did not start")


@pytest.fixture(scope="session")
def localstripe():
    try:
        import localstripe as _  # noqa: F401
    except ImportError as error:
        need_service("localstripe", str(error))
    try:
        server = start_localstripe()
    except RuntimeError as error:
        need_service("localstripe", str(error))
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


def signature(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def event_payload(event_type: str, obj: dict, event_id: str | None = None, created: int | None = None) -> bytes:
    """An event body in Stripe's shape (what the API version 2024+ sends)."""
    import uuid

    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": created or int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": obj},
        },
        indent=2,
    ).encode()


def _serve() -> None:
    import argparse

    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # keep this instance's store to itself
    from aiohttp import web
    from localstripe.server import app

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _serve()
