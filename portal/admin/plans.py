"""Console: the plan catalog and its subscriber counts."""

from portal.access import operator_required
from portal.admin.blueprint import bp
from portal.billing import plans as billing_plans
from portal.web import render


@bp.get("/plans")
@operator_required
def plans():
    """The plan catalog with every version and how many live subscriptions each one has."""
    return render("admin/plans.html", plans=billing_plans.list_plans(), counts=billing_plans.subscriber_counts())
