"""Loading one of a tenant's own rows: the single rule for ids and ownership.

Another tenant's row is not found, exactly like a row that does not exist, so an id never
tells an outsider anything. The error is the domain's ``NotFound``: the HTML error handler
shows the 404 page, the JSON one seed 000's ``RESOURCE_NOT_FOUND`` envelope.
"""

from sqlalchemy import select

from portal.errors import NotFound
from portal.extensions import db
from portal.models import Tenant

# Longer than any id we issue; refusing it early also keeps NUL (which PostgreSQL rejects) out.
MAX_ID_LENGTH = 64


def could_be_an_id(value) -> bool:
    """Whether ``value`` is worth looking up at all (anything else is simply not found)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value


def get_for_tenant(model, object_id, tenant: Tenant, what: str, *, by=None, where=()):
    """The ``model`` row of ``tenant`` whose ``by`` column (the id by default) is ``object_id``.

    ``where`` adds conditions a row must meet to exist for the tenant (e.g. not deleted).
    """
    if not could_be_an_id(object_id):
        raise NotFound(f"{what} not found")
    column = model.id if by is None else by
    row = db.session.execute(
        select(model).where(column == object_id, model.tenant_id == tenant.tenant_id, *where)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} not found")
    return row
