"""Meters: every aggregation and seed 003's filters (conditions OR'ed, criteria AND'ed), the
catalog's meters and their validation, and tenant isolation of what is measured."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from portal.billing.catalog import MeterSpec, load_catalog
from portal.models import utcnow
from portal.usage.meters import meter_value, meters_by_key
from tests.usage_support import record

SPAN = timedelta(hours=1)


@pytest.fixture
def measured(ctx, make_tenant):
    """A tenant with four 'job' events a second apart, and another tenant with one of its own."""
    tenant, other = make_tenant(), make_tenant()
    now = utcnow()
    jobs = [
        (3, {"region": "eu", "status": "ok", "user": "ann", "gb": 10}),
        (5, {"region": "us", "status": "ok", "user": "bob", "gb": 2}),
        (2, {"region": "eu", "status": "failed", "user": "ann", "gb": 7}),
        (4, {"region": "ap", "status": "ok", "user": "cid"}),
    ]
    for offset, (quantity, properties) in enumerate(jobs):
        record(tenant.tenant_id, "job", quantity, at=now + timedelta(seconds=offset), properties=properties)
    record(other.tenant_id, "job", 100, at=now, properties={"region": "eu", "status": "ok", "user": "zed", "gb": 99})
    return tenant.tenant_id, now - SPAN, now + SPAN


def value(measured, aggregation="count", prop=None, conditions=None):
    tenant_id, start, end = measured
    spec = MeterSpec(
        key="jobs",
        name="Jobs",
        event_name="job",
        aggregation=aggregation,
        property=prop,
        filter={"conditions": conditions or []},
    )
    return meter_value(spec, tenant_id, start, end)


@pytest.mark.parametrize(
    "aggregation, prop, expected",
    [
        ("count", None, 4),
        ("sum", None, 14),
        ("max", None, 5),
        ("min", None, 2),
        ("avg", None, "3.5"),
        ("first", None, 3),
        ("last", None, 4),
        ("sum", "gb", 19),
        ("max", "gb", 10),
        ("min", "gb", 2),
        ("avg", "gb", "6.333333"),
        ("first", "gb", 10),
        ("last", "gb", 7),
        ("unique_count", "user", 3),
        ("unique_count", "region", 3),
    ],
)
def test_every_aggregation(measured, aggregation, prop, expected):
    assert value(measured, aggregation, prop) == Decimal(str(expected))


def criterion(field, operator, value=None):
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    "conditions, expected",
    [
        ([{"criteria": [criterion("region", "equals", "eu")]}], 2),
        ([{"criteria": [criterion("region", "equals", "eu"), criterion("status", "equals", "ok")]}], 1),
        (
            [
                {"criteria": [criterion("region", "equals", "us")]},
                {"criteria": [criterion("status", "equals", "failed")]},
            ],
            2,
        ),
        ([{"criteria": [criterion("region", "not_equals", "eu")]}], 2),
        ([{"criteria": [criterion("region", "in", ["us", "ap"])]}], 2),
        ([{"criteria": [criterion("region", "not_in", ["us", "ap"])]}], 2),
        ([{"criteria": [criterion("user", "contains", "n")]}], 2),
        ([{"criteria": [criterion("user", "not_contains", "n")]}], 2),
        ([{"criteria": [criterion("gb", "gt", 7)]}], 1),
        ([{"criteria": [criterion("gb", "gte", 7)]}], 2),
        ([{"criteria": [criterion("quantity", "lt", 3)]}], 1),
        ([{"criteria": [criterion("quantity", "lte", 3)]}], 2),
        ([{"criteria": [criterion("gb", "exists")]}], 3),
        ([{"criteria": [criterion("gb", "not_exists")]}], 1),
    ],
)
def test_filters_or_their_conditions_and_and_their_criteria(measured, conditions, expected):
    assert value(measured, conditions=conditions) == expected


def test_a_filtered_sum_over_a_property(measured):
    conditions = [{"criteria": [criterion("status", "equals", "ok")]}]
    assert value(measured, "sum", "gb", conditions) == 12


def test_a_window_is_read_in_chunks_in_occurrence_order_ties_included(ctx, make_tenant, monkeypatch):
    """Events sharing one instant (a batch) are split across chunks by their id; none is read
    twice or skipped, and the first and last are those of the occurrence order."""
    from sqlalchemy import event

    from portal.extensions import db
    from portal.usage import meters
    from portal.usage.meters import daily_values

    tenant = make_tenant()
    now = utcnow()
    record(tenant.tenant_id, "job", 1, at=now, properties={"gb": 1}, many=5)
    record(tenant.tenant_id, "job", 1, at=now + timedelta(seconds=1), properties={"gb": 10})
    record(tenant.tenant_id, "job", 1, at=now + timedelta(seconds=2), properties={"gb": 20})
    monkeypatch.setattr(meters, "READ_CHUNK", 2)
    reads = []

    def count_reads(conn, cursor, statement, *args):
        if "keyset_0" in statement:
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count_reads)
    try:
        measured = (tenant.tenant_id, now - SPAN, now + SPAN)
        assert value(measured, "sum", "gb") == 35
        assert len(reads) == 4  # 7 events, 2 a chunk
        assert [value(measured, aggregation, "gb") for aggregation in ("first", "last", "unique_count")] == [1, 20, 3]
        assert value(measured, conditions=[{"criteria": [criterion("gb", "exists")]}]) == 7
        spec = MeterSpec(key="jobs", name="Jobs", event_name="job", aggregation="sum", property="gb")
        by_day = daily_values(spec, tenant.tenant_id, now - SPAN, now + SPAN)
        # Two seconds of events: one day, or two if they straddle midnight.
        assert sum(by_day.values()) == 35 and set(by_day) <= {now.date(), (now + timedelta(seconds=2)).date()}
    finally:
        event.remove(db.engine, "before_cursor_execute", count_reads)


def test_events_outside_the_window_or_of_another_name_do_not_count(ctx, make_tenant):
    tenant = make_tenant()
    now = utcnow()
    record(tenant.tenant_id, "job", 1, at=now)
    record(tenant.tenant_id, "other", 1, at=now)
    spec = MeterSpec(key="jobs", name="Jobs", event_name="job", aggregation="sum")
    assert meter_value(spec, tenant.tenant_id, now, now + SPAN) == 1
    assert meter_value(spec, tenant.tenant_id, now + timedelta(seconds=1), now + SPAN) == 0


def test_the_catalog_meters_the_seed_000_features(ctx):
    meters = meters_by_key()
    assert {key: (m.event_name, m.aggregation) for key, m in meters.items()}.items() >= {
        "pipeline_runs": ("pipeline_run", "count"),
        "concurrent_pipelines": ("pipelines_running", "last"),
        "storage_gb": ("storage_snapshot", "last"),
        "compute_hours": ("compute_usage", "sum"),
        "api_requests": ("api_request", "sum"),
    }.items()
    plan_features = {f.key for plan in load_catalog().plans for f in plan.features if f.pricing != "included"}
    assert plan_features <= set(meters)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"aggregation": "unique_count"}, "needs a property"),
        ({"aggregation": "count", "property": "gb"}, "leave property out"),
        ({"aggregation": "median"}, "Input should be"),
        ({"filter": {"conditions": [{"criteria": [{"field": "gb", "operator": "gt", "value": "big"}]}]}}, "number"),
        ({"filter": {"conditions": [{"criteria": [{"field": "r", "operator": "in", "value": "eu"}]}]}}, "list"),
        ({"filter": {"conditions": [{"criteria": []}]}}, "at least 1"),
    ],
)
def test_a_bad_meter_definition_is_refused_with_the_reason(fields, words):
    with pytest.raises(ValidationError) as error:
        MeterSpec(**{"key": "jobs", "name": "Jobs", "event_name": "job", **fields})
    assert words in str(error.value)


# --- the operator console ------------------------------------------------------------------


def test_operators_list_edit_and_create_meters(app, client, make_operator, login):
    from portal.extensions import db
    from portal.models import Meter

    login(client, make_operator())
    page = client.get("/admin/meters").get_data(as_text=True)
    assert 'data-meter="pipeline_runs"' in page and "count(quantity)" in page
    ok = {"criteria": [{"field": "status", "operator": "equals", "value": "ok"}]}
    response = client.post(
        "/admin/meters/pipeline_runs",
        data={
            "name": "Successful runs",
            "event_name": "pipeline_run",
            "aggregation": "count",
            "property": "",
            "filter": json.dumps({"conditions": [ok]}),
        },
    )
    assert response.status_code == 303
    with app.app_context():
        meter = db.session.query(Meter).filter_by(key="pipeline_runs").one()
        assert (meter.name, meter.filter["conditions"][0]["criteria"][0]["value"]) == ("Successful runs", "ok")

    bad = client.post(
        "/admin/meters/new",
        data={
            "key": "gpu_hours",
            "name": "GPU",
            "event_name": "gpu",
            "aggregation": "unique_count",
            "property": "",
            "filter": "",
        },
    )
    assert bad.status_code == 422
    assert "needs a property" in bad.get_data(as_text=True)
    bad_json = client.post(
        "/admin/meters/new",
        data={
            "key": "gpu_hours",
            "name": "GPU",
            "event_name": "gpu",
            "aggregation": "sum",
            "property": "",
            "filter": "{nope",
        },
    )
    assert "Not valid JSON" in bad_json.get_data(as_text=True)
    created = client.post(
        "/admin/meters/new",
        data={
            "key": "gpu_hours",
            "name": "GPU hours",
            "event_name": "gpu",
            "aggregation": "sum",
            "property": "hours",
            "filter": "",
        },
    )
    assert created.status_code == 303
    assert 'data-meter="gpu_hours"' in client.get("/admin/meters").get_data(as_text=True)


def test_tenant_staff_cannot_reach_the_meter_console(client, make_tenant, login):
    tenant = make_tenant()
    login(client, tenant.contact_email)
    assert client.get("/admin/meters").status_code == 404
    assert client.post("/admin/meters/new", data={"key": "x"}).status_code == 404


def test_with_the_meter_cache_on_an_edit_counts_from_the_next_request(
    app, client, make_operator, make_tenant, login, monkeypatch
):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from portal.usage import meters
    from tests.api_support import bearer, operator_token

    monkeypatch.setitem(app.config, "METER_CACHE_SECONDS", 30)
    monkeypatch.setattr(meters, "_process_meters", None)
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=3)
        record(tenant.tenant_id, "nightly_run", many=2)
    token = bearer(operator_token(app))
    url = f"/api/v1/tenants/{tenant.tenant_id}/usage"
    assert client.get(url, headers=token).get_json()["pipelines_run_count"] == 3
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        assert client.get(url, headers=token).get_json()["pipelines_run_count"] == 3
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if "FROM meters" in s]  # reused, not read

    login(client, make_operator())
    response = client.post(
        "/admin/meters/pipeline_runs",
        data={
            "name": "Nightly runs",
            "event_name": "nightly_run",
            "aggregation": "count",
            "property": "",
            "filter": "",
        },
    )
    assert response.status_code == 303
    assert client.get(url, headers=token).get_json()["pipelines_run_count"] == 2
