"""Rows written in one statement (portal/infra/bulk.py, a billing run's invoices and lines)
read back exactly as a row written alone does, and changes written behind the unit of work
(a billing run's subscriptions and discounts) leave the database and the session as a flush does."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from portal.billing.plans import current_version
from portal.extensions import db
from portal.infra import bulk
from portal.infra.transactions import commit
from portal.models import Subscription, Tenant
from tests.billing_engine_support import bare_tenant, subscribe, utc

pytestmark = pytest.mark.usefixtures("ctx")

# A temporary table: it lives in the test's own connection and goes with it.
LINES = Table(
    "bulk_lines",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("description", String(300)),
    Column("quantity", Numeric(20, 6)),
    Column("starts", DateTime(timezone=True)),
    Column("tax_name", String(50), nullable=True),
    Column("inclusive", Boolean),
    prefixes=["TEMPORARY"],
)


def rows_of(first_id: int) -> list[dict]:
    return [
        {
            "id": first_id,
            # More digits than a float holds: 9876543210.123456 as a float is ...123455.
            "quantity": Decimal("9876543210.123456"),
            "description": "Compute — O'Brien's \\ \"west\" {1,2}",
            "starts": datetime(2027, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "tax_name": None,
            "inclusive": False,
        },
        {
            "id": first_id + 1,
            "quantity": Decimal("0.000001"),
            "description": "",
            "starts": datetime(2027, 2, 28, tzinfo=UTC),
            "tax_name": "VAT",
            "inclusive": True,
        },
    ]


def read(ids: list[int]) -> list[tuple]:
    return [tuple(row) for row in db.session.execute(select(LINES).where(LINES.c.id.in_(ids)).order_by(LINES.c.id))]


def test_rows_inserted_together_keep_every_digit_and_character_a_row_inserted_alone_keeps():
    LINES.create(db.session.connection())
    together, alone = rows_of(1), rows_of(3)
    bulk.insert_rows(LINES, together)
    for row in alone:
        db.session.execute(insert(LINES), row)

    assert [row[1:] for row in read([1, 2])] == [row[1:] for row in read([3, 4])]
    # SQLite, the embedded default for trying the portal, keeps any NUMERIC as a float itself.
    if db.session.connection().dialect.name == "postgresql":
        assert [row[2] for row in read([1, 2])] == [Decimal("9876543210.123456"), Decimal("0.000001")]


def test_a_row_breaking_a_constraint_fails_the_whole_insert_with_the_error_an_insert_raises():
    LINES.create(db.session.connection())
    bulk.insert_rows(LINES, rows_of(1))
    with pytest.raises(IntegrityError):
        bulk.insert_rows(LINES, rows_of(2))  # id 2 is taken
    db.session.rollback()


# --- changes written behind the unit of work (a billing run's subscriptions and discounts) ---


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


def stored(subscription: Subscription) -> tuple:
    row = db.session.connection().execute(
        select(Subscription.period_index, Subscription.status, Subscription.updated_at).where(
            Subscription.id == subscription.id
        )
    )
    return tuple(row.one())


def test_column_changes_are_written_in_one_statement_and_leave_nothing_for_the_flush():
    book = [subscribe("starter", utc(2027, 1, 10, 8)) for _ in range(3)]
    before = [stored(subscription) for subscription in book]
    for subscription in book[:2]:
        subscription.period_index += 1
        subscription.status = "past_due"

    with statements() as seen:
        bulk.write_changes(db.session.dirty)
        assert seen == ["UPDATE"]  # both rows, one executemany
        assert not db.session.dirty
        db.session.flush()
        assert seen == ["UPDATE"]  # the flush found nothing left to write
    commit()

    for subscription, (index, _, updated_at) in zip(book[:2], before[:2], strict=True):
        # The updated_at stamp the flush would have set, in the row and on the object alike.
        assert stored(subscription) == (index + 1, "past_due", subscription.updated_at)
        assert subscription.updated_at > updated_at
    assert stored(book[2]) == before[2]  # untouched


def test_a_value_set_to_what_it_was_writes_nothing_as_the_flush_does():
    subscription = subscribe("starter", utc(2027, 1, 10, 8))
    before = stored(subscription)
    subscription.status = subscription.status

    with statements() as seen:
        bulk.write_changes([subscription])
    commit()
    assert seen == [] and stored(subscription) == before


def test_an_object_with_a_changed_relationship_is_left_for_the_flush():
    subscription = subscribe("starter", utc(2027, 1, 10, 8))
    professional = current_version("professional")
    subscription.scheduled_plan_version = professional
    subscription.period_index += 1

    with statements() as seen:
        bulk.write_changes([subscription])
    assert seen == [] and subscription in db.session.dirty
    commit()
    assert (
        db.session.connection()
        .execute(select(Subscription.scheduled_plan_version_id).where(Subscription.id == subscription.id))
        .scalar_one()
        == professional.id
    )


def test_a_row_deleted_meanwhile_fails_the_write_as_a_flush_fails():
    tenant = bare_tenant()
    commit()
    db.session.connection().execute(delete(Tenant.__table__).where(Tenant.tenant_id == tenant.tenant_id))
    tenant.company_name = "Renamed"
    with pytest.raises(StaleDataError):
        bulk.write_changes([tenant])
    db.session.rollback()


def test_every_kind_of_value_reads_back_exactly_whatever_order_the_columns_were_set_in():
    first, second = (subscribe("starter", utc(2027, 1, 10, 8)) for _ in range(2))
    instant = datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    # The same columns set in opposite orders: one UPDATE for both, each value in its place.
    first.ended_at, first.cancel_feedback = instant, "Compute — O'Brien's \\ \"west\" {1,2} 🚀\n"
    first.cancel_at_period_end, first.cancel_reason = True, None
    second.cancel_reason, second.cancel_at_period_end = "too_expensive", False
    second.cancel_feedback, second.ended_at = "", utc(2027, 3, 1)
    second.period_index = 7  # a shape of its own

    bulk.write_changes([first, second])
    commit()
    columns = (
        Subscription.ended_at,
        Subscription.cancel_feedback,
        Subscription.cancel_at_period_end,
        Subscription.cancel_reason,
        Subscription.period_index,
    )
    for subscription in (first, second):
        row = db.session.connection().execute(select(*columns).where(Subscription.id == subscription.id)).one()
        assert tuple(row) == tuple(getattr(subscription, column.key) for column in columns)
    assert (second.period_index, first.ended_at) == (7, instant)
