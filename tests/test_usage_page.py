"""The portal's usage page and the overview's usage block: quota bars, warnings, month picker,
CSV export, empty state; every role reads its own tenant's usage only."""

import csv
import io
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
