"""Browser fixtures: the portal served for real on a free port, driven by headless Chromium.

The per-test rollback in tests/conftest.py cannot reach requests served by another
thread, so the live server gets a database of its own (a fresh SQLite file, or a
``portal_live_<worker>`` PostgreSQL database when DATABASE_URL is set). Tests share it,
so each one signs up its own company with unique emails. CSRF is real: tokens travel in
forms and in htmx's ``X-CSRFToken`` header exactly as in production.
"""

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from portal.extensions import db
from tests.conftest import database, link_in, make_app, need_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Long enough for a slow CI box, short enough that a hung page fails the test soon.
TIMEOUT_MS = 10_000


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # one line per request would drown test output
        pass


class _ErrorCollector(logging.Handler):
    """Remembers the portal's "Unhandled error" log lines: a 500 must fail the test."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(self.format(record))


@dataclass
class LiveServer:
    url: str
    app: object
    errors: list[str] = field(default_factory=list)

    def emails_to(self, address: str):
        """Emails the live portal recorded for ``address``, newest first, as its outbox shows them."""
        from portal.mail import opened
        from portal.models import EmailMessage

        with self.app.app_context():
            return [
                opened(message)
                for message in db.session.query(EmailMessage)
                .filter(EmailMessage.to == address.lower())
                .order_by(EmailMessage.created_at.desc())
                .all()
            ]

    def link_in_latest_email(self, address: str, path_prefix: str) -> str:
        """The absolute link (on this server) that the newest email to ``address`` carries."""
        messages = self.emails_to(address)
        assert messages, f"no email was sent to {address}"
        path = link_in(messages[0].text_body, path_prefix)
        assert f"{self.url}{path}" in messages[0].text_body, "the emailed link must point at the live portal"
        return f"{self.url}{path}"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The portal on 127.0.0.1:<free port>, in a daemon thread, on its own database."""
    with database("live", tmp_path_factory) as database_url:
        yield from _serve(database_url)


def _serve(database_url: str, **overrides):
    app = make_app(database_url, **{"WTF_CSRF_ENABLED": True, "RATELIMIT_ENABLED": False, **overrides})
    # Threaded: Chromium opens speculative connections that would stall a one-at-a-time server.
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = url  # read per request, so setting it before serving is enough
    collector = _ErrorCollector()
    logging.getLogger("portal.errors").addHandler(collector)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=url, app=app, errors=collector.records)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        logging.getLogger("portal.errors").removeHandler(collector)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture(autouse=True)
def _no_server_errors(request):
    """A browser test fails if the live portal hit an unhandled error (a 500) meanwhile."""
    if "live_server" not in request.fixturenames:
        yield
        return
    live = request.getfixturevalue("live_server")
    live.errors.clear()
    yield
    assert not live.errors, "the live portal logged unhandled errors:\n" + "\n".join(live.errors)


@pytest.fixture(scope="session")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        need_service("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            need_service("Chromium", str(error).splitlines()[0])
        yield chromium
        chromium.close()


class ConsoleLog:
    """What a page printed to the console, kept so a test can assert on CSP violations."""

    def __init__(self):
        self.messages: list[str] = []

    def record(self, message) -> None:
        where = message.location.get("url", "") if message.location else ""
        self.messages.append(f"{message.type}: {message.text} ({where})")

    @property
    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]


@pytest.fixture
def open_browser(browser, live_server):
    """open_browser() -> (page, console): a fresh browser context (its own cookies) and page."""
    contexts = []

    def factory():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console = ConsoleLog()
        page.on("console", console.record)
        return page, console

    yield factory
    for context in contexts:
        context.close()


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    # caret="hide" would leave style="" on every input; htmx later copies that onto swapped-in
    # inputs, which the strict CSP reports as a violation the product did not cause.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path
