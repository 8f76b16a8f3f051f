"""Rows gathered for one multi-row INSERT per table: a billing run's batch writes the audit
rows of its invoices in one statement instead of one per invoice.

Inside ``gathered()``, ``add(table, row)`` keeps the row and returns True; the rows are written
when the block ends, table by table in the order first seen (a row's references first).
Outside it, ``add`` returns False and the caller writes the row at once."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Table, insert

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
    connection = db.session.connection()
    for table, table_rows in rows.items():
        connection.execute(insert(table), table_rows)


def add(table: Table, row: dict) -> bool:
    rows = db.session.info.get(_KEY)
    if rows is None:
        return False
    rows.setdefault(table, []).append(row)
    return True
