"""Many rows of one table in one statement: a billing run's batch inserts its invoices, lines
and audit rows, and updates its subscriptions and discounts, a statement per table.

Inside ``gathered()``, ``add(table, row)`` keeps the row and returns True; the rows are written
when the block ends, table by table in the order first seen (a row's references first).
Outside it, ``add`` returns False and the caller writes the row at once. ``insert_rows`` inserts
rows of one table; ``write_changes`` writes the column changes of loaded objects as a flush
would, one UPDATE per table and set of changed columns."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ColumnProperty
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import ClauseElement

from portal.extensions import db
from portal.infra import cache

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


_STATEMENTS: dict[tuple, tuple] = {}  # (table, keys) -> the COPY and each key's processor


def dialect_insert(table: Table):
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike): a
    row written once whoever tries first (usage keys, quota and billing notices)."""
    if db.session.connection().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_rows(table: Table, rows: list[dict]) -> None:
    """Insert the rows (all with the same keys) in one statement.

    On PostgreSQL with ``COPY … FROM STDIN``: psycopg formats the rows in C, where a multi-row
    VALUES list was a new text of thousands of placeholders to parse every time, a plain
    executemany a statement per row, and one array per column to ``unnest`` (the previous way)
    dumped and escaped every element in Python: 34 µs of client CPU per invoice line there,
    12 µs here, and a third of the wall time. Values go through the columns' own bind
    processors (JSON, the UTC datetime), as an INSERT's do. Elsewhere: executemany.
    """
    connection = db.session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < 2:
        connection.execute(insert(table), rows)
        return
    keys = tuple(rows[0])
    cached = _STATEMENTS.get((table, keys))
    if cached is None:
        columns = [table.c[key] for key in keys]
        statement = f"COPY {table.name} ({', '.join(column.name for column in columns)}) FROM STDIN"
        # The dialect's own type, as SQLAlchemy's compiler uses it: the generic Numeric's
        # processor turns a Decimal into a float (9876543210.123456 was stored as ...123460).
        processors = [
            column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect) for column in columns
        ]
        cached = _STATEMENTS[(table, keys)] = (statement, tuple(zip(keys, processors, strict=True)))
    statement, processors = cached
    with driver_cursor(connection, statement) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[key] if process is None else process(row[key]) for key, process in processors])


@contextmanager
def driver_cursor(connection, statement: str) -> Iterator:
    """A cursor of the driver's own connection under SQLAlchemy ``connection``, for a statement
    SQLAlchemy's execution path would cost too much around. Its errors are raised as SQLAlchemy
    raises a statement's (IntegrityError and so on), so callers catch the same errors whichever
    way it ran; one that broke the connection invalidates it, as SQLAlchemy would, so the pool
    does not hand it out again."""
    dbapi = connection.dialect.loaded_dbapi
    try:
        with connection.connection.cursor() as cursor:
            yield cursor
    except dbapi.Error as error:
        invalidated = connection.dialect.is_disconnect(error, connection.connection.dbapi_connection, None)
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(statement, None, error, dbapi.Error, connection_invalidated=invalidated) from error


def add(table: Table, row: dict) -> bool:
    rows = db.session.info.get(_KEY)
    if rows is None:
        return False
    rows.setdefault(table, []).append(row)
    return True


_UPDATES: dict[tuple, tuple] = {}  # (table, columns, dialect) -> the UPDATE, its form, the bind processors


_WRITABLE: dict = {}  # mapper -> _writable(mapper)


def _writable(mapper) -> bool:
    """A mapper whose UPDATEs ``write_changes`` writes as a flush would: one table, no version
    counter, no values the database makes on update. (An ``onupdate`` callable is called with
    no execution context: ``utcnow`` and the like, not one that reads the statement's values.)"""
    known = _WRITABLE.get(mapper)
    if known is not None:
        return known
    table = mapper.local_table
    known = _WRITABLE[mapper] = (
        mapper.inherits is None
        and mapper.version_id_col is None
        and len(table.primary_key.columns) == 1
        and all(
            column.server_onupdate is None and (column.onupdate is None or column.onupdate.is_callable)
            for column in table.columns
        )
    )
    return known


def write_changes(objects) -> None:
    """Write the column changes of loaded objects with one UPDATE per table and set of changed
    columns (``_update_rows``), and mark the objects clean, as a flush would leave them.

    A billing run's batch changes the same few columns of each of its subscriptions and
    discounts: the unit of work's bookkeeping for those UPDATEs (every attribute's history,
    every many-to-one relationship checked for a new parent) cost a tenth of the run. Only
    plain column changes are written here; an object with anything else pending (a changed
    relationship or primary key, a SQL expression as a value, a mapper with a version counter
    or inheritance, or a session with objects yet to be inserted, which a changed reference
    could name) is left to the next flush. The columns' ``onupdate`` values (``updated_at``)
    are set as the flush sets them, the caches hear of the change as from a flush, and a row
    that is no longer there raises ``StaleDataError`` as the flush does.
    """
    session = db.session()
    if session.new or session.deleted:
        return
    shapes: dict[tuple, list] = {}
    for obj in objects:
        state = inspect(obj)
        if not state.persistent or not state.modified or state.expired_attributes or not _writable(state.mapper):
            continue
        mapper, dict_ = state.mapper, state.dict
        changed = {}
        for key, old in state.committed_state.items():
            prop = mapper.attrs.get(key)
            if not isinstance(prop, ColumnProperty) or len(prop.columns) != 1:
                break
            column, value = prop.columns[0], dict_.get(key)
            # A column_property of a SQL expression has no table: never written, by a flush either.
            table = getattr(column, "table", None)
            if column.primary_key or table is not mapper.local_table or isinstance(value, ClauseElement):
                break
            if old is not NO_VALUE and old == value and type(old) is type(value):
                continue  # set to what it was: the flush writes nothing for it either
            changed[column] = value
        else:
            if changed:
                columns = tuple(sorted(changed, key=lambda column: column.key))
                shapes.setdefault((mapper.local_table, columns), []).append((state, changed))
    if not shapes:
        return
    cache.note_written(session, [state.obj() for entries in shapes.values() for state, _ in entries])
    connection = session.connection()
    for (table, columns), entries in shapes.items():
        stamped = tuple(column for column in table.columns if column.onupdate is not None and column not in columns)
        entries.sort(key=lambda entry: entry[0].identity)  # in key order, as a flush: no deadlocks
        rows, stamps = [], []
        for state, changed in entries:
            stamp = {column: column.onupdate.arg(None) for column in stamped}
            rows.append((state.identity[0], *(changed[column] for column in columns), *stamp.values()))
            stamps.append(stamp)
        matched = _update_rows(connection, table, (*columns, *stamped), rows)
        if matched != len(rows):
            raise StaleDataError(f"UPDATE of {table.name} expected {len(rows)} rows, matched {matched}")
        for (state, _), stamp in zip(entries, stamps, strict=True):
            for column, value in stamp.items():
                state.dict[state.mapper.get_property_by_column(column).key] = value
            # What a flush does once it has written an object: nothing of it is pending now.
            state._commit_all(state.dict, session.identity_map)


# Column types whose values, once through their bind processor, JSON carries as text that
# PostgreSQL reads back exactly (a timestamp as ISO 8601, a Decimal as its digits). Not Float
# (a Numeric): JSON has no NaN or infinity.
_JSON_SAFE = (String, Integer, Boolean, DateTime, Date, Numeric)


def _as_json(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _update_rows(connection, table: Table, columns: tuple, rows: list[tuple]) -> int:
    """UPDATE ``table`` by primary key with ``rows`` (the key, then one value per column);
    returns how many rows matched.

    On PostgreSQL, one statement for them all: the rows go as one JSON array, unpacked by
    ``json_array_elements`` and joined to the table by key. ``executemany`` sends a statement
    per row, and psycopg's and SQLAlchemy's work per row (31 µs of client CPU for five
    columns) was most of the cost; here it is 8 µs. Elsewhere, or for a column JSON cannot
    carry exactly, executemany.
    """
    dialect = connection.dialect
    (key_column,) = table.primary_key.columns
    every = (key_column, *columns)
    cached = _UPDATES.get((table, columns, dialect.name))
    if cached is None:
        types = [getattr(column.type, "impl_instance", column.type) for column in every]
        if dialect.name == "postgresql" and all(
            isinstance(type_, _JSON_SAFE) and not isinstance(type_, Float) for type_ in types
        ):
            elements = func.json_array_elements(cast(bindparam("rows", type_=String), postgresql.JSON)).table_valued(
                "value"
            )
            values = (
                select(
                    *(
                        cast(elements.c.value.op("->>")(position), column.type).label(f"v{position}")
                        for position, column in enumerate(every)
                    )
                )
                .select_from(elements)
                .subquery("v")
            )
            statement = (
                update(table)
                .where(key_column == values.c.v0)
                .values({column: values.c[f"v{position}"] for position, column in enumerate(every) if position})
            )
            json_rows = True
        else:
            statement = (
                update(table)
                .where(key_column == bindparam("b__identity"))
                .values({column: bindparam(f"b_{position}") for position, column in enumerate(columns)})
            )
            json_rows = False
        processors = tuple(column.type.dialect_impl(dialect).bind_processor(dialect) for column in every)
        cached = _UPDATES[(table, columns, dialect.name)] = (statement, json_rows, processors)
    statement, json_rows, processors = cached
    if json_rows:
        payload = json.dumps(
            [
                [
                    _as_json(value if process is None else process(value))
                    for value, process in zip(row, processors, strict=True)
                ]
                for row in rows
            ]
        )
        return connection.execute(statement, {"rows": payload}).rowcount
    return connection.execute(
        statement,
        [{"b__identity": row[0], **{f"b_{position}": value for position, value in enumerate(row[1:])}} for row in rows],
    ).rowcount
