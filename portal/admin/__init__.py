"""The operator console (``/admin``, operators only): one blueprint, ``admin``, defined in
``blueprint.py``, and one module per subject, each adding its routes to it. Importing the
package imports every subject, so the app factory registers the whole console at once."""

from portal.admin import (  # noqa: F401  (they register their routes on bp)
    billing_runs,
    coupons,
    credits,
    failed_jobs,
    invoices,
    meters,
    outbox,
    plans,
    stripe_events,
    tenants,
    tokens,
    two_factor,
    webhooks,
)
from portal.admin.blueprint import bp

__all__ = ["bp"]
