"""Seed 000's contract where a client meets it first: the error codes it names, a credential
that is sent but wrong, the optional contact email, when Retry-After is sent, and query
parameters (the seeds' names accepted, unknown ones refused) on every endpoint."""

import re

import pytest

from portal.models import Tenant
from tests.api_support import assert_envelope, bearer, fetch, operator_token, send_json

ONBOARD = {"company_name": "ACME Corporation", "contact_email": "admin@acmecorp.com", "subscription_plan": "starter"}


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


def _concrete(rule: str, tenant_id: str) -> str:
    """A Flask rule with its placeholders filled: the tenant's id, else a made-up id."""
    path = rule.replace("<tenant_id>", tenant_id)
    return "/api/v1" + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"made_up_\1", path)


def _call(client, op, path: str, headers: dict):
    if op.method in ("GET", "DELETE"):
        return client.open(path, method=op.method, headers=headers)
    return send_json(client, op.method.lower(), path, {}, headers)


# --- 6: DUPLICATE_TENANT_ID --------------------------------------------------------------


def test_onboarding_a_taken_tenant_id_is_409_duplicate_tenant_id(client, app, op, make_tenant):
    tenant = make_tenant()
    for taken in (tenant.tenant_id, tenant.tenant_id.upper()):
        body = dict(ONBOARD, tenant_id=taken)
        error = assert_envelope(
            client.post("/api/v1/tenants/onboard", json=body, headers=op), 409, "DUPLICATE_TENANT_ID"
        )
        assert error["detail"] == f"Tenant {taken} already exists."


def test_two_onboardings_of_one_tenant_id_at_once_give_the_loser_409_not_500(client, app, op, make_tenant, monkeypatch):
    # The loser of the race passed the "is it taken?" check before the winner's row was there.
    tenant = make_tenant()
    monkeypatch.setattr("portal.tenants.services.tenant_id_taken", lambda tenant_id: False)
    body = dict(ONBOARD, tenant_id=tenant.tenant_id)
    assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=op), 409, "DUPLICATE_TENANT_ID")
    assert fetch(app, Tenant, tenant.tenant_id).company_name == tenant.company_name
