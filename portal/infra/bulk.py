"""Rows gathered for one multi-row INSERT per table: a billing run's batch writes the audit
rows of its invoices in one statement instead of one per invoice.

Inside ``gathered()``, ``add(table, row)`` keeps the row and returns True; the rows are written
when the block ends, table by table in the order first seen (a row's references first).
Outside it, ``add`` returns False and the caller writes the row at once."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Table, insert, text
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db

_KEY = "portal_bulk_inserts"


@contextmanager
def gathered() -> Iterator[None]:
    rows: dict[Table, list[dict]] = {}
    db.session.info[_KEY] = rows
    try:
        yield
    finally:
        del db.session.info[_KEY]
    # Reached only when the block ended without an error: a failed one writes nothing.
    for table, table_rows in rows.items():
        insert_rows(table, table_rows)


_STATEMENTS: dict[tuple, tuple] = {}


def dialect_insert(table: Table):
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike): a
    row written once whoever tries first (usage keys, quota and billing notices)."""
    if db.session.connection().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_rows(table: Table, rows: list[dict]) -> None:
    """Insert the rows (all with the same keys) in one statement.

    On PostgreSQL each column goes as one array and ``unnest`` turns them back into rows: the
    statement's text never changes, so it is parsed once, where a plain executemany is a
    statement per row and a multi-row VALUES list a new text of thousands of placeholders to
    parse every time (each was most of a billing run's cost of writing). Elsewhere: executemany.
    """
    connection = db.session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < 2:
        connection.execute(insert(table), rows)
        return
    keys = tuple(rows[0])
    cached = _STATEMENTS.get((table, keys))
    if cached is None:
        columns = [table.c[key] for key in keys]
        arrays = ", ".join(
            f"CAST(:c{n} AS {column.type.compile(dialect=connection.dialect)}[])" for n, column in enumerate(columns)
        )
        statement = text(
            f"INSERT INTO {table.name} ({', '.join(column.name for column in columns)}) "  # noqa: S608 - our own names
            f"SELECT * FROM unnest({arrays})"
        )
        # The dialect's own type, as SQLAlchemy's compiler uses it: the generic Numeric's
        # processor turns a Decimal into a float (9876543210.123456 was stored as ...123460).
        processors = [
            column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect) for column in columns
        ]
        cached = _STATEMENTS[(table, keys)] = (statement, processors)
    statement, processors = cached
    params = {}
    for n, (key, process) in enumerate(zip(keys, processors, strict=True)):
        values = [row[key] for row in rows]
        params[f"c{n}"] = [process(value) for value in values] if process is not None else values
    connection.execute(statement, params)


def add(table: Table, row: dict) -> bool:
    rows = db.session.info.get(_KEY)
    if rows is None:
        return False
    rows.setdefault(table, []).append(row)
    return True
