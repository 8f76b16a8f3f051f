"""Rows written in one statement (portal/infra/bulk.py, a billing run's invoices and lines)
read back exactly as a row written alone does."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Numeric, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.infra import bulk

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
