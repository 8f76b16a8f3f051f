"""Every page of the portal and the console, as the owner, the viewer, the operator and a visitor,
at 1,280 × 900 and 390 × 844: it fits the window (no sideways scroll), prints no console error,
breaks no CSP rule, and axe-core finds no WCAG 2.1 A/AA violation. One browser and one server for
all of it; the tenant has demo-like data and a 200-character company name without a space.

Screenshots of every page at both widths go to test-artifacts/screenshots/ (see README)."""

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, TIMEOUT_MS
from tests.conftest import PASSWORD
from tests.credential_samples import AWS_ACCESS_KEY_ID, AWS_SECRET, PRIVATE_KEY

pytestmark = pytest.mark.browser

SCREENSHOTS = ARTIFACTS / "screenshots"
VIEWPORTS = {"wide": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
# The pages a reviewer looks at (screenshots at both widths); every page is still checked.
SCREENSHOT_PAGES = {
    "owner": {
        "/overview",
        "/usage",
        "/team",
        "/api-keys",
        "/credentials",
        "/billing",
        "/billing/invoices",
        "/billing/change/starter",
        "/billing/change/starter_yearly",
        "/billing/emails",
        "/settings",
        "/activity",
        "/account",
        "/integrations/webhooks",
    },
    "operator": {"/admin/tenants", "/admin/plans", "/admin/billing", "/admin/outbox"},
    "visitor": {"/signin", "/signup"},
}
# No spaces for a browser to wrap at: the worst a customer can type into "Company name".
LONG_NAME = ("Müller&SöhneInternationalHoldings" * 7)[:200]


def _seed(app) -> dict:
    """A demo-like tenant (members, an invitation, a key, credentials, invoices, credit, usage,
    a billing run) and the operator; returns the emails and ids the pages need."""
    from portal.access import SYSTEM, Actor
    from portal.api_keys.services import create_key
    from portal.auth.services import create_user
    from portal.billing import credits, discounts, invoices, subscriptions
    from portal.billing.profile import ProfileData
    from portal.billing.profile import update as update_profile
    from portal.billing.runs import create_run, execute
    from portal.credentials.services import add_credential
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.invitations.services import create_invitation
    from portal.models import Membership, utcnow
    from portal.tenants.services import create_tenant
    from portal.usage import ingest
    from portal.webhooks.services import create_endpoint

    suffix = uuid.uuid4().hex[:8]
    people = {role: f"{role}-{suffix}@fits.example" for role in ("owner", "admin", "viewer", "operator")}
    with app.test_request_context():
        now = utcnow()
        tenant = create_tenant(
            SYSTEM, f"fits_{suffix}", LONG_NAME, people["owner"], "professional", subscribed_at=now - timedelta(days=40)
        )
        for invoice in subscriptions.renew(subscriptions.subscription_of(tenant), now):
            invoices.mark_paid(SYSTEM, invoice, "Demo bank transfer", invoice.issued_at + timedelta(days=2))
        owner = None
        for role in ("owner", "admin", "viewer"):
            user = create_user(people[role], PASSWORD, f"{role.title()} {LONG_NAME[:30]}")
            db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=user.id, role=role))
            owner = owner or user
        operator = create_user(people["operator"], PASSWORD, "Portal Operator", is_operator=True)
        db.session.flush()
        actor = Actor(user=owner, label=None)
        # An endpoint nobody answers at (port 9, discard): every event below leaves a failed
        # attempt in its delivery log, with an error message to lay out.
        endpoint, _ = create_endpoint(
            actor, tenant, "http://127.0.0.1:9/hooks/" + "a-long-path-segment-" * 8, ["*"], "Finance sync " + "z" * 60
        )
        create_invitation(actor, tenant, f"developer-{suffix}@fits.example", "developer")
        create_key(actor, tenant, "Nightly export " + "x" * 60, scopes=None, expires_in_days=None)
        gcp = {
            "type": "service_account",
            "project_id": "customer-project-123",
            "private_key": PRIVATE_KEY,
            "client_email": "service-account@customer-project.iam.gserviceaccount.com",
            "client_id": "123456789",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        add_credential(actor, tenant, "gcp", "service_account", "GCP billing export", gcp)
        aws = {"aws_access_key_id": AWS_ACCESS_KEY_ID, "aws_secret_access_key": AWS_SECRET, "region": "us-east-1"}
        add_credential(actor, tenant, "aws", "access_key", "AWS cost explorer " + "y" * 80, aws)
        credits.grant(Actor(user=operator, label=None), tenant, 2500, reason="Goodwill for the outage")
        # A discount with a long name and code: the billing page, invoice and console lay them out.
        coupon = discounts.create_coupon(
            SYSTEM, "Launch partner " + "w" * 60, percent_off=15, duration="repeating", duration_periods=6
        )
        code = discounts.create_promotion_code(SYSTEM, coupon, f"PARTNER-{suffix}-" + "Q" * 20)
        discounts.apply(actor, subscriptions.subscription_of(tenant), coupon, code)
        # A billing profile with a long legal name in three scripts and a VAT number: the invoice
        # below carries the buyer's address, tax IDs and VAT per rate.
        update_profile(
            actor,
            tenant,
            ProfileData(
                legal_name="Müller & Söhne 東京 Łódź " + "Holding" * 25,
                address_line1="Hauptstraße 1",
                postal_code="10115",
                city="Berlin",
                country="DE",
                billing_email=people["owner"],
                extra_recipients=["ap-" + "x" * 60 + "@fits.example"],
                tax_ids=[{"type": "eu_vat", "value": "DE123456788"}],
                po_number="PO-" + "7" * 40,
            ),
        )
        # An upgrade's invoice left unpaid past its due date: every page carries the past-due banner.
        _, upgrade = subscriptions.change_plan(actor, subscriptions.subscription_of(tenant), "enterprise")
        upgrade.due_at = now - timedelta(days=3)
        commit()
        ingest.ingest(
            [
                {"tenant_id": tenant.tenant_id, "eventIdempotencyKey": f"run-{n}", "eventName": "pipeline_run"}
                for n in range(40)
            ]
        )
        commit()
        run = create_run("console")
        commit()
        execute(run)
        commit()
        invoice_id = upgrade.id
        return {
            "coupon_id": coupon.id,
            "endpoint_id": endpoint.id,
            "tenant_id": tenant.tenant_id,
            "invoice_id": invoice_id,
            "run_id": run.id,
            "operator_id": operator.id,
            "people": people,
        }


@pytest.fixture(scope="module")
def site(live_server):
    return _seed(live_server.app)


def _pages(role: str, site: dict, live_server) -> list[str]:
    tenant_id, invoice_id = site["tenant_id"], site["invoice_id"]
    member = [
        "/overview",
        "/usage",
        "/team",
        "/api-keys",
        "/credentials",
        "/billing",
        "/billing/invoices",
        f"/billing/invoices/{invoice_id}",
        "/billing/credits",
        "/billing/details",
        "/settings",
        "/activity",
        "/account",
        "/account/two-factor",
    ]
    if role == "owner":
        return [
            *member,
            "/billing/change/starter",
            "/billing/change/starter_yearly",
            "/billing?interval=year",
            "/billing/emails",
            "/billing/promotion-code",
            "/billing/payment-method",
            "/integrations/webhooks",
            f"/integrations/webhooks/{site['endpoint_id']}",
        ]
    if role == "viewer":
        return member
    if role == "operator":
        from portal.extensions import db
        from portal.models import EmailMessage

        with live_server.app.app_context():
            message_id = db.session.query(EmailMessage.id).order_by(EmailMessage.created_at.desc()).first()[0]
        return [
            "/admin/tenants",
            f"/admin/tenants?q={tenant_id}",
            f"/admin/tenants/{tenant_id}",
            "/admin/plans",
            "/admin/billing",
            f"/admin/billing/runs/{site['run_id']}",
            f"/admin/invoices/{invoice_id}",
            "/admin/jobs/failed",
            "/admin/stripe-events",
            "/admin/webhooks",
            "/admin/meters",
            "/admin/meters/new",
            "/admin/coupons",
            f"/admin/coupons/{site['coupon_id']}",
            "/admin/outbox",
            f"/admin/outbox/{message_id}",
            "/admin/tokens",
            f"/admin/users/{site['operator_id']}/two-factor",
            "/account",
        ]
    return ["/signin", "/signup", "/forgot-password", "/reset-password/not-a-real-token", "/invite/not-a-real-token"]


def _axe(page) -> list[dict]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is laid out now."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    if not page.evaluate("typeof window.axe !== 'undefined'"):  # parse its 500 kB once per page
        page.evaluate(axe.axe_script)
    return page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)["violations"]


def _problems_on(page, console: list[str], path: str, role: str) -> list[str]:
    """What is wrong with the page now open, at both widths (empty when all is well)."""
    problems = []
    for width_name, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)
        page.wait_for_timeout(50)  # one layout pass after the resize
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll_width > inner_width:
            wide = page.evaluate(
                """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(-3).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                  + ' ' + Math.round(e.getBoundingClientRect().right) + 'px')"""
            )
            problems.append(f"{path} [{width_name}] is {scroll_width}px wide in a {inner_width}px window: {wide}")
        # A box that scrolls or clips sideways hides part of a table or a text just as well.
        clipped = page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter(e => {
                const style = getComputedStyle(e);
                return e.clientWidth > 1 && e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll', 'hidden'].includes(style.overflowX)
                  && style.textOverflow !== 'ellipsis' && !e.matches('input, select, textarea, pre, svg, canvas, .u-wrap *')
                  && e.getClientRects().length > 0;
            }).slice(0, 3).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
              + ' ' + e.scrollWidth + '>' + e.clientWidth + 'px')"""
        )
        if clipped:
            problems.append(f"{path} [{width_name}] cuts off content sideways: {clipped}")
        for violation in _axe(page):
            targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:3]]
            problems.append(f"{path} [{width_name}] axe {violation['id']}: {violation['help']} at {targets}")
        if path in SCREENSHOT_PAGES.get(role, ()) or path.startswith(("/billing/invoices/", "/admin/tenants/")):
            name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"
            shot = SCREENSHOTS / f"{role}-{name}-{width_name}.png"
            page.screenshot(path=str(shot), full_page=True, caret="initial")
    problems.extend(f"{path}: {message}" for message in console)
    console.clear()
    return problems


def _visit_all(browser, live_server, role: str, email: str | None, paths: list[str]) -> list[str]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORTS["wide"])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []

    def record(message):
        # The link pages answer an unusable token with a 400 page on purpose; Chromium logs that.
        expected = "not-a-real-token" in page.url and message.text.startswith("Failed to load resource")
        if message.type == "error" and not expected:
            console.append(f"console {message.type}: {message.text}")

    page.on("console", record)
    page.on("pageerror", lambda error: console.append(f"script error: {error}"))
    try:
        if email:
            page.goto("/signin")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/(overview|admin.*)$"))
        problems = []
        for path in paths:
            response = page.goto(path)
            if email and role != "operator":
                assert page.get_by_test_id("past-due-banner").is_visible(), path
            assert response is not None
            if response.status >= 400 and "not-a-real-token" not in path:
                problems.append(f"{path}: HTTP {response.status}")
            page.wait_for_load_state("load")
            problems.extend(_problems_on(page, console, path, role))
        return problems
    finally:
        context.close()


@pytest.mark.parametrize("role", ["owner", "viewer", "operator", "visitor"])
def test_every_page_fits_both_widths_without_errors_and_passes_axe(role, browser, live_server, site):
    email = site["people"].get(role)
    problems = _visit_all(browser, live_server, role, email, _pages(role, site, live_server))
    assert not problems, f"{len(problems)} problem(s) for the {role}:\n" + "\n".join(problems)


def test_screenshots_folder_is_the_one_the_readme_names():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "test-artifacts/screenshots" in readme
