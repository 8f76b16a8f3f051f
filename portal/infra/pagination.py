"""One page of a query, counted and cut in SQL: the one way pages are made, for pages and the API."""

from dataclasses import dataclass

from sqlalchemy import Select, func, select

from portal.extensions import db

# Beyond this a page number is a typo or a probe; OFFSET that large would only cost the database.
MAX_PAGE = 100_000


@dataclass(frozen=True)
class Page:
    """The same attributes as Flask-SQLAlchemy's pagination, so templates read either."""

    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return (self.total + self.per_page - 1) // self.per_page

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.has_prev else None

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.has_next else None

    def __iter__(self):
        return iter(self.items)


def paginate(
    statement: Select, page: int | None, per_page: int, *, rows: bool = False, total: int | None = None
) -> Page:
    """Page ``page`` (1-based; out-of-range numbers are clamped) of ``statement``'s results.

    ``rows=True`` keeps every selected column (e.g. a tenant and its member count); otherwise
    the items are the first column's objects. ``total``: the count, when the caller already
    has it (one statement fewer).
    """
    page = min(max(page or 1, 1), MAX_PAGE)
    if total is None:
        total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    result = db.session.execute(statement.limit(per_page).offset((page - 1) * per_page))
    items = list(result.all() if rows else result.scalars())
    return Page(items=items, page=page, per_page=per_page, total=total)
