"""`make run`'s local Stripe: start localstripe in the background and register the portal's
webhook URL with it, so saving a card and paying an invoice work end to end offline.

    python -m portal.billing.payments.emulator  (reads STRIPE_API_BASE, STRIPE_WEBHOOK_SECRET, PUBLIC_BASE_URL)
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from portal.config import INSTANCE_DIR

PID_FILE = INSTANCE_DIR / "localstripe.pid"
LOG_FILE = INSTANCE_DIR / "localstripe.log"


def _stop_previous() -> None:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, signal.SIGTERM)  # the one we started last time, by its recorded id
        time.sleep(0.5)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pass


def main() -> int:
    base = os.environ.get("STRIPE_API_BASE", "").rstrip("/")
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    portal = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    if not base or not secret:
        print("STRIPE_API_BASE and STRIPE_WEBHOOK_SECRET are needed to start localstripe.", file=sys.stderr)
        return 1
    INSTANCE_DIR.mkdir(exist_ok=True)
    _stop_previous()
    port = urlsplit(base).port or 8420
    executable = Path(sys.executable).with_name("localstripe")
    with LOG_FILE.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [str(executable), "--port", str(port)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    PID_FILE.write_text(str(process.pid))
    body = json.dumps({"url": f"{portal}/webhooks/stripe", "secret": secret}).encode()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(  # noqa: S310 - our own http URLs
                urllib.request.Request(f"{base}/_config/webhooks/portal", data=body, method="POST"),  # noqa: S310 - our own http URLs
                timeout=2,
            ).read()
            print(f"localstripe on {base} (test mode); webhooks go to {portal}/webhooks/stripe")
            return 0
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None:
                break
            time.sleep(0.2)
    print(f"localstripe did not start; see {LOG_FILE}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
