"""Usage events partitioned by month (PostgreSQL): partitions made ahead, an event of any month
stored (DEFAULT catches a month without a partition, and creating it later moves the rows),
idempotency keys unique per tenant whatever the timestamp, and retention that retires a month
once it is invoiced while the roll-ups keep its totals. SQLite is not partitioned; the
idempotency tests run on both."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from portal.billing.catalog import MeterSpec
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Subscription, UsageEvent, UsageEventKey, utcnow
from portal.usage import ingest, partitions
from portal.usage.meters import meter_value
from tests.api_support import bearer, operator_token, send_json

_keys = itertools.count()
JOBS = MeterSpec(key="jobs", name="Jobs", event_name="job", aggregation="sum")


def store(tenant_id: str, at: datetime, quantity=1, key: str | None = None) -> ingest.Outcome:
    """Stored as the API stores it, at any instant (the API would refuse one before the period)."""
    draft = ingest.EventDraft(
        tenant_ref=tenant_id,
        key=key or f"part-{next(_keys)}",
        name="job",
        occurred_at=at,
        quantity=Decimal(str(quantity)),
        properties={},
        tenant_id=tenant_id,
    )
    (outcome,) = ingest.store([ingest.Outcome(0, "valid", tenant_id=tenant_id, key=draft.key, draft=draft)])
    commit()
    return outcome


def partition_of(event_id: str) -> str:
    return db.session.execute(
        text("SELECT tableoid::regclass::text FROM usage_events WHERE id = :id"), {"id": event_id}
    ).scalar_one()


@pytest.fixture
def postgresql(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("usage events are partitioned on PostgreSQL only")


# --- idempotency without a unique index on the events (both databases) -------------------


def test_a_repeated_key_is_stored_once_even_with_another_timestamp(app, make_tenant):
    tenant = make_tenant()
    client = app.test_client()
    headers = bearer(operator_token(app))
    now = utcnow()
    first = {"tenant_id": tenant.tenant_id, "eventName": "job", "eventIdempotencyKey": "retry-1"}
    answer = send_json(client, "post", "/api/v1/events", {**first, "occurredAt": now.isoformat()}, headers)
    assert answer.status_code == 201, answer.get_json()
    stored_id = answer.get_json()["event_id"]
    again = send_json(
        client, "post", "/api/v1/events", {**first, "occurredAt": (now + timedelta(seconds=30)).isoformat()}, headers
    )
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["duplicate"] is True and again.get_json()["event_id"] == stored_id
    with app.app_context():
        count = db.session.execute(
            select(db.func.count()).select_from(UsageEvent).where(UsageEvent.tenant_id == tenant.tenant_id)
        ).scalar()
    assert count == 1


def test_a_deleted_event_frees_its_key(ctx, make_tenant):
    tenant = make_tenant()
    first = store(tenant.tenant_id, utcnow(), key="again")
    result = ingest.delete_by_refs(["again"], tenant.tenant_id)
    commit()
    assert [event.id for event in result.deleted] == [first.event_id]
    assert db.session.get(UsageEventKey, (tenant.tenant_id, "again")) is None
    second = store(tenant.tenant_id, utcnow(), key="again")
    assert second.status == "accepted" and second.event_id != first.event_id
    assert ingest.find("again", tenant.tenant_id).id == second.event_id


# --- partitions (PostgreSQL) --------------------------------------------------------------


def test_the_migration_made_this_month_and_the_next_and_a_default(ctx, postgresql):
    this_month = partitions.month_start(utcnow())
    names = [p.name for p in partitions.attached()]
    assert partitions.partition_name(this_month) in names
    assert partitions.partition_name(partitions.add_months(this_month, 1)) in names
    assert db.session.execute(text("SELECT to_regclass('usage_events_default')")).scalar() is not None


def test_an_event_of_a_month_without_partition_lands_in_default_and_moves_when_it_is_made(ctx, postgresql, make_tenant):
    tenant = make_tenant()
    old = datetime(2019, 3, 15, 12, 0, tzinfo=UTC)
    event = store(tenant.tenant_id, old, quantity=4)
    assert event.status == "accepted"
    assert partition_of(event.event_id) == "usage_events_default"

    created = partitions.ensure(old, ahead=0)
    commit()
    assert created == ["usage_events_y2019m03"]
    assert partition_of(event.event_id) == "usage_events_y2019m03"
    assert partitions.ensure(old, ahead=0) == []  # idempotent
    # Read back through the parent, with its roll-up: nothing lost in the move.
    assert meter_value(JOBS, tenant.tenant_id, old - timedelta(days=1), old + timedelta(days=1)) == 4
    assert ingest.find(event.event_id).tenant_id == tenant.tenant_id


def test_the_worker_tick_makes_the_months_ahead(app, postgresql):
    from jobs.usage import partition_upkeep

    app.config["USAGE_PARTITIONS_AHEAD"] = 3
    try:
        with app.test_request_context():
            partition_upkeep()
            names = {p.name for p in partitions.attached()}
    finally:
        app.config["USAGE_PARTITIONS_AHEAD"] = 1
    this_month = partitions.month_start(utcnow())
    assert {partitions.partition_name(partitions.add_months(this_month, n)) for n in range(4)} <= names


def _old_month_with_usage(make_tenant, month: datetime, quantity: int):
    tenant = make_tenant()
    partitions.ensure(month, ahead=0)
    commit()
    for day in (2, 20):
        store(tenant.tenant_id, month.replace(day=day, tzinfo=UTC), quantity=quantity)
    return tenant


def test_retention_retires_an_invoiced_month_and_the_rollups_keep_its_totals(ctx, postgresql, make_tenant):
    month = datetime(2020, 5, 1)
    tenant = _old_month_with_usage(make_tenant, month, quantity=3)
    window = (month.replace(tzinfo=UTC), partitions.add_months(month, 1).replace(tzinfo=UTC))
    assert meter_value(JOBS, tenant.tenant_id, *window) == 6

    retired, held = partitions.retire(utcnow(), months=3, drop=False)
    commit()
    assert "usage_events_y2020m05" in [r.name for r in retired]
    assert "usage_events_y2020m05" not in held
    assert "usage_events_y2020m05" not in [p.name for p in partitions.attached()]
    # Kept detached, its rows there to archive; gone from the table and from the keys.
    assert db.session.execute(text("SELECT count(*) FROM usage_events_retired_y2020m05")).scalar() >= 2
    assert (
        db.session.execute(
            select(db.func.count()).select_from(UsageEvent).where(UsageEvent.tenant_id == tenant.tenant_id)
        ).scalar()
        == 0
    )
    assert db.session.execute(select(UsageEventKey).where(UsageEventKey.tenant_id == tenant.tenant_id)).first() is None
    # The month's usage still reads 6 (from the hourly roll-ups).
    assert meter_value(JOBS, tenant.tenant_id, *window) == 6


def test_retention_keeps_a_month_a_subscription_may_still_invoice_and_drops_when_told(ctx, postgresql, make_tenant):
    month = datetime(2021, 7, 1)
    tenant = _old_month_with_usage(make_tenant, month, quantity=1)
    subscription = db.session.execute(
        select(Subscription).where(Subscription.tenant_id == tenant.tenant_id)
    ).scalar_one()
    subscription.current_period_start = month.replace(day=10, tzinfo=UTC)  # a period not invoiced yet
    commit()

    retired, held = partitions.retire(utcnow(), months=3, drop=True)
    commit()
    assert "usage_events_y2021m07" in held
    assert "usage_events_y2021m07" in [p.name for p in partitions.attached()]

    subscription.current_period_start = utcnow()  # invoiced since
    commit()
    retired, held = partitions.retire(utcnow(), months=3, drop=True)
    commit()
    assert [r.kept_as for r in retired if r.name == "usage_events_y2021m07"] == [None]
    assert db.session.execute(text("SELECT to_regclass('usage_events_y2021m07')")).scalar() is None


def test_retention_never_touches_recent_months(ctx, postgresql):
    this_month = partitions.month_start(utcnow())
    retired, _ = partitions.retire(utcnow(), months=1, drop=True)
    commit()
    names = [p.name for p in partitions.attached()]
    assert partitions.partition_name(partitions.add_months(this_month, -1)) not in [r.name for r in retired]
    assert partitions.partition_name(this_month) in names


def test_the_cli_command_reports_the_partitions(app, postgresql):
    result = app.test_cli_runner().invoke(args=["usage", "partitions"])
    assert result.exit_code == 0, result.output
    assert partitions.partition_name(partitions.month_start(utcnow())) in result.output
    assert "usage_events_default" in result.output
