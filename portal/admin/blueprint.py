"""The operator console's one blueprint (``admin``, ``/admin``) and what its subjects share:
the money helpers of its templates and the tenant loader. Each subject's routes are in a module
of its own (``tenants``, ``credits``, ``invoices``, ...), imported by ``portal/admin/__init__.py``."""

from decimal import Decimal

from flask import Blueprint, abort

from portal.billing.money import format_amount, format_money
from portal.billing.profile import address_lines, tax_id_lines
from portal.extensions import db
from portal.models import Tenant

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _quantity(value) -> str:
    """1.000000 -> "1", 2.500000 -> "2.5": invoice quantities without storage padding."""
    return format(Decimal(value).normalize(), "f")


@bp.context_processor
def money_helpers():
    return {
        "money": format_money,
        "amount": format_amount,
        "quantity": _quantity,
        "buyer_address": address_lines,
        "buyer_tax_ids": tax_id_lines,
    }


def load_tenant(tenant_id: str) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant
