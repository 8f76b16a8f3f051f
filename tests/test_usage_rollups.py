"""Hourly usage roll-ups: meters without filter or property read them, and they stay exact
when events are stored, repeated, deleted, loaded behind the portal's back, or sent at once."""

import itertools
import os
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from portal.billing.catalog import MeterSpec
from portal.extensions import PortalSession, db
from portal.infra.transactions import commit
from portal.models import UsageEvent, UsageRollup
from portal.usage import ingest, rollups
from portal.usage.meters import daily_values, meter_value
from tests.api_support import bearer, operator_token, send_json
from tests.conftest import database, make_app

# Fixed instants, so windows never straddle "now" (stored directly, as the API request flush
# does: ingestion would refuse times before the tenant's current billing period).
BASE = datetime(2026, 10, 14, 0, 0, tzinfo=UTC)
_keys = itertools.count()


def record(tenant_id: str, name: str, quantity, at: datetime) -> list[str]:
    draft = ingest.EventDraft(
        tenant_ref=tenant_id,
        key=f"rollup-{next(_keys)}",
        name=name,
        occurred_at=at,
        quantity=Decimal(str(quantity)),
        properties={},
        tenant_id=tenant_id,
    )
    outcomes = ingest.store([ingest.Outcome(0, "valid", tenant_id=tenant_id, key=draft.key, draft=draft)])
    commit()
    assert outcomes[0].status == "accepted"
    return [outcomes[0].event_id]


def at(hours: float) -> datetime:
    return BASE + timedelta(hours=hours)


def spec(aggregation: str, event_name: str = "job") -> MeterSpec:
    return MeterSpec(key="jobs", name="Jobs", event_name=event_name, aggregation=aggregation)


@pytest.fixture
def spread(ctx, make_tenant):
    """Events at 00:10 (2), 00:50 (7), 01:30 (5), 05:05 (1.5), 26:59 (4) of one tenant, and noise:
    another tenant's and another name's events in the same hours."""
    tenant, other = make_tenant(), make_tenant()
    for hours, quantity in ((10 / 60, 2), (50 / 60, 7), (1.5, 5), (5 + 5 / 60, "1.5"), (26 + 59 / 60, 4)):
        record(tenant.tenant_id, "job", quantity, at=at(hours))
    record(other.tenant_id, "job", 100, at=at(1.5))
    record(tenant.tenant_id, "other", 100, at=at(1.5))
    return tenant.tenant_id


@pytest.mark.parametrize(
    "start, end, expected",
    [
        # aligned on whole hours: roll-ups only
        (at(0), at(48), {"count": 5, "sum": "19.5", "max": 7, "min": "1.5", "avg": "3.9"}),
        # both edges mid-hour: 00:30-01:00 and 26:00-26:45 come from the events
        (at(0.5), at(26.75), {"count": 3, "sum": "13.5", "max": 7, "min": "1.5", "avg": "4.5"}),
        # inside one hour: events only
        (at(0.1), at(0.9), {"count": 2, "sum": 9, "max": 7, "min": 2, "avg": "4.5"}),
        # from the beginning (an "accumulate" feature) to mid-hour
        (None, at(5.05), {"count": 3, "sum": 14, "max": 7, "min": 2, "avg": "4.666667"}),
        # nothing there
        (at(100), at(200), {"count": 0, "sum": 0, "max": 0, "min": 0, "avg": 0}),
    ],
)
def test_meters_read_from_roll_ups_match_the_events(spread, start, end, expected):
    for aggregation, value in expected.items():
        assert meter_value(spec(aggregation), spread, start, end) == Decimal(str(value)), aggregation


def test_the_roll_ups_hold_one_row_per_tenant_name_and_hour(spread):
    rows = db.session.execute(
        select(UsageRollup.hour, UsageRollup.count, UsageRollup.total, UsageRollup.max, UsageRollup.min)
        .where(UsageRollup.tenant_id == spread, UsageRollup.name == "job")
        .order_by(UsageRollup.hour)
    ).all()
    assert [(r.hour, r.count, r.total, r.max, r.min) for r in rows] == [
        (at(0), 2, 9, 7, 2),
        (at(1), 1, 5, 5, 5),
        (at(5), 1, Decimal("1.5"), Decimal("1.5"), Decimal("1.5")),
        (at(26), 1, 4, 4, 4),
    ]


def test_daily_values_add_the_roll_ups_hours_and_the_edges_events(spread):
    days = daily_values(spec("sum"), spread, at(0.5), at(48))
    assert days == {BASE.date(): Decimal("13.5"), (BASE + timedelta(days=1)).date(): 4}
    assert daily_values(spec("max"), spread, at(0), at(48)) == {BASE.date(): 7, (BASE + timedelta(days=1)).date(): 4}


def test_a_repeated_key_counts_once_in_a_batch_and_later(ctx, make_tenant):
    tenant = make_tenant()
    now = datetime.now(UTC)
    raw = [
        {
            "tenant_id": tenant.tenant_id,
            "eventIdempotencyKey": key,
            "eventName": "job",
            "quantity": 3,
            "occurredAt": now.isoformat(),
        }
        for key in ("a", "b", "a")
    ]
    outcomes = ingest.ingest(raw)
    commit()
    assert [o.status for o in outcomes] == ["accepted", "accepted", "duplicate"]
    assert ingest.ingest(raw[:1])[0].status == "duplicate"
    commit()
    window = (now - timedelta(hours=2), now + timedelta(hours=2))
    assert meter_value(spec("count"), tenant.tenant_id, *window) == 2
    assert meter_value(spec("sum"), tenant.tenant_id, *window) == 6


def test_deleting_events_recomputes_their_hours(app, client, make_tenant):
    with app.app_context():
        tenant = make_tenant()
        ids = [record(tenant.tenant_id, "job", quantity, at=at(3.25))[0] for quantity in (4, 9, 1)]
    token = bearer(operator_token(app))
    response = send_json(client, "post", "/api/v1/events/delete-by-refs", {"refs": [ids[1]]}, token)
    assert [e["event_id"] for e in response.get_json()["deleted"]] == [ids[1]]
    with app.app_context():
        assert meter_value(spec("max"), tenant.tenant_id, at(0), at(24)) == 4
        assert meter_value(spec("sum"), tenant.tenant_id, at(0), at(24)) == 5
    send_json(client, "post", "/api/v1/events/delete-by-refs", {"refs": [ids[0], ids[2]]}, token)
    with app.app_context():
        assert meter_value(spec("count"), tenant.tenant_id, at(0), at(24)) == 0
        assert db.session.query(UsageRollup).filter_by(tenant_id=tenant.tenant_id).count() == 0


def test_events_changed_through_the_orm_move_between_hours(ctx, make_tenant):
    tenant = make_tenant()
    event_id = record(tenant.tenant_id, "job", 2, at=at(1.5))[0]
    event = db.session.get(UsageEvent, event_id)
    event.occurred_at, event.quantity = at(7.5), Decimal(6)
    db.session.add(
        UsageEvent(
            tenant_id=tenant.tenant_id,
            idempotency_key="orm",
            name="job",
            occurred_at=at(7.75),
            quantity=Decimal(1),
            properties={},
        )
    )
    commit()
    assert meter_value(spec("sum"), tenant.tenant_id, at(1), at(2)) == 0
    assert meter_value(spec("sum"), tenant.tenant_id, at(7), at(8)) == 7


def test_rebuild_counts_events_loaded_behind_the_portals_back(ctx, make_tenant):
    tenant = make_tenant()
    record(tenant.tenant_id, "job", 2, at=at(1.5))
    db.session.execute(
        text(
            "INSERT INTO usage_events (id, tenant_id, idempotency_key, name, occurred_at, quantity, properties, "
            "received_at) VALUES ('evt_copied', :tenant, 'copied', 'job', :when, 5, '{}', :when)"
        ),
        {"tenant": tenant.tenant_id, "when": at(1.75).replace(tzinfo=None)},
    )
    assert meter_value(spec("sum"), tenant.tenant_id, at(0), at(24)) == 2  # not rolled up yet
    rollups.rebuild()
    commit()
    assert meter_value(spec("sum"), tenant.tenant_id, at(0), at(24)) == 7
    assert meter_value(spec("count"), tenant.tenant_id, at(0), at(24)) == 2


def test_meters_with_a_filter_or_a_property_still_read_the_events(spread):
    filtered = MeterSpec(
        key="jobs",
        name="Jobs",
        event_name="job",
        aggregation="count",
        filter={"conditions": [{"criteria": [{"field": "quantity", "operator": "gt", "value": 4}]}]},
    )
    assert meter_value(filtered, spread, at(0), at(48)) == 2
    assert meter_value(spec("last"), spread, at(0), at(48)) == 4


# --- concurrency (PostgreSQL) --------------------------------------------------------------


@pytest.fixture
def committed_app(tmp_path_factory):
    """Real commits on a scratch database, so parallel batches race for the same roll-up row."""
    if not os.environ.get("DATABASE_URL"):
        pytest.skip("concurrent roll-ups are tested on PostgreSQL (set DATABASE_URL)")
    test_session = db.session
    db.session = db._make_scoped_session({"class_": PortalSession})
    try:
        with database("usage_rollup_race", tmp_path_factory) as url:
            yield make_app(url)
    finally:
        db.session = test_session


def test_parallel_batches_into_one_hour_count_every_stored_event_once(committed_app):
    from portal.access import SYSTEM
    from portal.tenants.services import create_tenant

    with committed_app.test_request_context():
        create_tenant(SYSTEM, "rollup_race", "Race Co", "race@example.com")
        commit()
    token = operator_token(committed_app)
    when = datetime.now(UTC).isoformat()
    barrier, statuses = threading.Barrier(6), []

    def send(n: int):
        client = committed_app.test_client()
        # Half of each batch is shared with every other batch: stored once, whoever wins.
        events = [
            {
                "tenant_id": "rollup_race",
                "eventIdempotencyKey": key,
                "eventName": "job",
                "quantity": 2,
                "occurredAt": when,
            }
            for key in [f"own-{n}-{i}" for i in range(50)] + [f"shared-{i}" for i in range(50)]
        ]
        barrier.wait()
        response = send_json(client, "post", "/api/v1/events/batch", {"events": events}, bearer(token))
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 6
    with committed_app.app_context():
        stored = db.session.query(UsageEvent).filter_by(tenant_id="rollup_race").count()
        assert stored == 6 * 50 + 50
        start = rollups.hour_of(datetime.fromisoformat(when))
        assert meter_value(spec("count"), "rollup_race", start, start + timedelta(hours=1)) == stored
        assert meter_value(spec("sum"), "rollup_race", start, start + timedelta(hours=1)) == 2 * stored
        assert db.session.query(UsageRollup).filter_by(tenant_id="rollup_race").one().count == stored
        # Read without a transaction (the app's own session, not a test connection): the same answers.
        client = committed_app.test_client()
        for _ in range(2):
            check = client.get("/api/v1/entitlements/rollup_race/pipeline_runs", headers=bearer(token))
            assert check.status_code == 200 and check.get_json()["data"]["isAllowed"] is True
            usage = client.get("/api/v1/tenants/rollup_race/usage", headers=bearer(token))
            assert usage.status_code == 200 and usage.get_json()["pipelines_run_count"] == 0
