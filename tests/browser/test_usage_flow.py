"""The usage page in a real browser: the quota table with its warning, the daily chart drawn by
the vendored uPlot under the strict CSP, and the month picker."""

import re
import uuid
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_the_owner_sees_usage_against_the_quota_in_the_table_and_the_daily_chart(live_server, open_browser):
    from portal.access import SYSTEM
    from portal.auth.services import create_user
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import Membership, Tenant
    from portal.tenants.services import create_tenant
    from portal.usage import ingest
    from portal.usage import report as usage_report

    suffix = uuid.uuid4().hex[:8]
    owner_email = f"owner-{suffix}@usage.example"
    with live_server.app.test_request_context():
        owner = create_user(owner_email, PASSWORD, "Uma Owner")
        tenant_id = create_tenant(SYSTEM, f"usage_{suffix}", f"Usage {suffix}", owner_email).tenant_id  # Starter
        db.session.add(Membership(tenant_id=tenant_id, user_id=owner.id, role="owner"))
        commit()
        outcomes = ingest.ingest(
            [
                {"tenant_id": tenant_id, "eventIdempotencyKey": f"run-{n}", "eventName": "pipeline_run"}
                for n in range(950)
            ]
        )
        commit()
        assert {o.status for o in outcomes} == {"accepted"}

    page, console = open_browser()
    page.goto("/signin")
    page.get_by_label("Email").fill(owner_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(owner_email)
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page).to_have_url(re.compile(r"/usage$"))

    row = page.locator('[data-testid="usage-features"] tr[data-feature="pipeline_runs"]')
    expect(row).to_contain_text("950")
    expect(row).to_contain_text("1,000")
    expect(row).to_contain_text("95.0% · almost used")
    expect(page.get_by_test_id("usage-warning")).to_have_text("Pipeline runs: 95.0% of the quota is used.")
    expect(page.get_by_test_id("upgrade-link")).to_have_attribute("href", "/billing#plans")
    # The month picker shows the month on screen, not "--------- ----".
    expect(page.get_by_label("Month")).to_have_value(f"{datetime.now(UTC):%Y-%m}")

    # uPlot drew one chart per feature with usage: here only pipeline runs, as daily bars.
    chart = page.get_by_test_id("usage-chart")
    expect(chart.locator("figure")).to_have_count(1)
    figure = chart.locator('figure[data-feature="pipeline_runs"]')
    expect(figure.locator("figcaption")).to_have_text("Pipeline runs (per day, runs)")
    expect(figure.locator("canvas")).to_be_visible()
    expect(figure.locator(".u-legend")).to_contain_text("Pipeline runs")
    box = figure.locator("canvas").bounding_box()
    assert box is not None and box["width"] >= 280 and box["height"] > 100
    assert chart.get_attribute("data-drawn") == "1"
    # The x axis spans the billing period shown above it, not years around its first day.
    x_min, x_max = chart.evaluate("el => [el.uplot.scales.x.min, el.uplot.scales.x.max]")
    with live_server.app.app_context():
        shown = usage_report.build(db.session.get(Tenant, tenant_id), None)
        first_midnight = shown.start.replace(hour=0, minute=0, second=0, microsecond=0)
        assert (x_min, x_max) == (first_midnight.timestamp(), shown.end.timestamp())
        period_seconds = (shown.end - shown.start).total_seconds()
    # A monthly period is 28 to 31 days; the axis adds at most the part of its first day before
    # the period started (a period that starts at 18:25 is drawn from that day's 00:00).
    assert 28 * 86400 <= period_seconds <= 31 * 86400
    assert period_seconds <= x_max - x_min < period_seconds + 86400
    save_screenshot(page, "usage-chart.png")

    # A month before the tenant existed: nothing recorded, so a sentence instead of a flat chart.
    now = datetime.now(UTC)
    earlier = f"{now.year - 1}-{now.month:02d}"
    page.get_by_label("Month").fill(earlier)
    page.get_by_role("button", name="Show month").click()
    expect(page).to_have_url(re.compile(rf"/usage\?month={earlier}$"))
    expect(page.get_by_test_id("usage-window")).to_contain_text(f"Calendar month {earlier}")
    expect(row).to_contain_text("0 runs")
    expect(page.get_by_test_id("chart-empty")).to_have_text("No usage was recorded in this month.")
    expect(page.get_by_test_id("usage-chart")).to_have_count(0)
    expect(page.get_by_test_id("usage-warning")).to_have_count(0)
    assert console.csp_violations == []
    assert not [m for m in console.messages if m.startswith("error")], console.messages
