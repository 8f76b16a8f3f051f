"""The portal's usage page and the overview's usage block: quota bars, warnings, month picker,
CSV export, empty state; every role reads its own tenant's usage only."""

import csv
import html
import io
import json
import re
from datetime import timedelta

from portal.models import utcnow
from portal.usage.periods import this_month
from tests.usage_support import record


def test_a_tenant_without_usage_sees_the_empty_state(client, make_tenant, login):
    tenant = make_tenant()
    login(client, tenant.contact_email)
    page = client.get("/usage").get_data(as_text=True)
    assert 'data-testid="usage-empty"' in page and "No usage recorded yet" in page
    assert 'data-testid="usage-empty"' in client.get("/overview").get_data(as_text=True)


def test_the_page_shows_usage_against_quotas_with_warnings(app, client, make_tenant, make_user, login):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=920)  # starter: 1,000
        record(tenant.tenant_id, "pipelines_running", 5)  # 5 of 5
        record(tenant.tenant_id, "compute_usage", "12.5")
    viewer = make_user(tenant, "viewer")
    login(client, viewer)
    response = client.get("/usage")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-feature="pipeline_runs" data-level="warning"' in page
    assert "920 runs" in page and "92.0%" in page
    assert 'data-feature="concurrent_pipelines" data-level="exceeded"' in page
    assert "Pipeline runs: 92.0% of the quota is used." in page
    assert "Concurrent pipelines: the quota is used up; further use is refused" in page
    assert 'data-testid="usage-chart"' in page and "uPlot.iife.min.js" in page
    assert "Current billing period" in page
    overview = client.get("/overview").get_data(as_text=True)
    assert 'data-feature="pipeline_runs" data-level="warning"' in overview


def test_the_month_picker_and_csv_export(app, client, make_tenant, login):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "compute_usage", 2, many=3)
        record(tenant.tenant_id, "compute_usage", 4, at=utcnow() + timedelta(seconds=1))
    login(client, tenant.contact_email)
    month = f"{this_month():%Y-%m}"
    page = client.get(f"/usage?month={month}").get_data(as_text=True)
    assert f"Calendar month {month}" in page and "10 hours" in page
    response = client.get(f"/usage/export.csv?month={month}")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert f"usage-{tenant.tenant_id}-{month}.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    compute = [row for row in rows if row["feature"] == "compute_hours"]
    assert sum(float(row["value"]) for row in compute) == 10
    assert {row["date"] for row in compute if float(row["value"])} == {utcnow().date().isoformat()}
    assert client.get("/usage?month=2025-13").status_code == 400


def test_usage_is_the_signed_in_tenants_own(app, client, make_tenant, login):
    tenant, other = make_tenant(), make_tenant()
    with app.test_request_context():
        record(other.tenant_id, "pipeline_run", many=7)
    login(client, tenant.contact_email)
    page = client.get("/usage").get_data(as_text=True)
    assert "No usage recorded yet" in page and "7 runs" not in page
    rows = list(csv.DictReader(io.StringIO(client.get("/usage/export.csv").get_data(as_text=True))))
    assert rows and {row["value"] for row in rows} == {"0"}


def test_signed_out_people_are_sent_to_sign_in(client):
    assert client.get("/usage").status_code == 302


def test_a_level_holds_between_reports_while_a_counter_is_a_daily_total(app, client, make_tenant, login):
    """Storage reported once is still held the next day (not 420 GB one day and 0 the next)."""
    from portal.access import SYSTEM
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import Membership, User
    from portal.tenants.services import create_tenant

    started = utcnow() - timedelta(days=3)
    with app.test_request_context():
        owner = db.session.query(User).filter_by(email=make_tenant().contact_email).one()
        tenant = create_tenant(SYSTEM, f"lvl{owner.id[-8:]}", "Levels", owner.email, subscribed_at=started)
        db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=owner.id, role="owner"))
        commit()
        record(tenant.tenant_id, "storage_snapshot", 420, at=started + timedelta(minutes=5))
        record(tenant.tenant_id, "pipeline_run", at=started + timedelta(minutes=5), many=3)
    login(client, owner.email)
    client.post("/switch-tenant", data={"tenant_id": tenant.tenant_id})
    response = client.get("/usage/export.csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    storage = [float(row["value"]) for row in rows if row["feature"] == "storage_gb"]
    runs = [float(row["value"]) for row in rows if row["feature"] == "pipeline_runs"]
    assert len(storage) >= 3 and set(storage) == {420.0}  # every day since holds the level
    assert runs[0] == 3 and set(runs[1:]) == {0.0}
    page = client.get("/usage").get_data(as_text=True)
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', page).group(1)))
    kinds = {series["key"]: (series["kind"], series["unit"]) for series in chart["series"]}
    assert kinds["storage_gb"][0] == "level" and kinds["pipeline_runs"] == ("counter", "runs")


def test_the_month_picker_shows_the_current_month_and_quotas_carry_units(app, client, make_tenant, login):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=2)
    login(client, tenant.contact_email)
    page = client.get("/usage").get_data(as_text=True)
    assert f'name="month" value="{this_month():%Y-%m}"' in page
    row = re.search(r'<tr data-feature="pipeline_runs".*?</tr>', page, re.S).group(0)
    assert "1,000 runs" in row  # the quota with its unit, like the usage beside it


def test_quota_warnings_are_amber_then_red_and_offer_an_upgrade_to_who_can(app, client, make_tenant, make_user, login):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=920)  # starter: 1,000 → 92 %
        record(tenant.tenant_id, "pipelines_running", 6)  # 6 of 5 → 120 %
    login(client, tenant.contact_email)  # the owner
    page = client.get("/usage").get_data(as_text=True)
    assert 'class="quota-bar quota-warning"' in page and 'class="quota-bar quota-exceeded"' in page
    assert page.count('data-testid="upgrade-link"') == 2 and 'href="/billing#plans"' in page
    viewer = make_user(tenant, "viewer")
    login(client, viewer)
    page = client.get("/usage").get_data(as_text=True)
    assert 'data-testid="upgrade-link"' not in page and "An owner or admin can upgrade the plan." in page
