"""Entitlement checks (seed 002): allowed or not, why, and how much is left; simulations record
nothing; operator tokens check any tenant, a tenant key only its own."""

import pytest

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Subscription, Tenant, UsageEvent, utcnow
from tests.api_support import assert_envelope, bearer, count, issue_key, operator_token, send_json, with_key
from tests.billing_engine_support import subscribe
from tests.usage_support import record


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


def check(client, headers, tenant_id, feature):
    response = client.get(f"/api/v1/entitlements/{tenant_id}/{feature}", headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    return body["data"]


def evaluate(client, headers, tenant_id, feature, units=None, **extra):
    payload = {"customerReferenceId": tenant_id, "featureKey": feature, **extra}
    if units is not None:
        payload["track"] = {"eventName": feature, "usageUnits": units}
    response = send_json(client, "post", "/api/v1/entitlements", payload, headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def reason(data):
    return (data.get("meta") or {}).get("reason", {}).get("code")


def test_a_starter_tenant_may_run_pipelines_until_its_quota_is_used(app, client, operator, make_tenant):
    tenant = make_tenant()
    data = check(client, operator, tenant.tenant_id, "pipeline_runs")
    assert data["isAllowed"] is True and reason(data) is None
    assert data["usage"] == {"used": 0, "limit": 1000, "remaining": 1000}
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=1000)
    data = check(client, operator, tenant.tenant_id, "pipeline_runs")
    assert data["isAllowed"] is False
    assert data["meta"]["reason"] == {
        "code": "QUOTA_EXCEEDED",
        "description": "Usage limit exceeded for this billing period.",
    }
    assert data["usage"] == {"used": 1000, "limit": 1000, "remaining": 0}


def test_a_simulation_says_whether_more_would_fit_and_records_nothing(app, client, operator, make_tenant):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipeline_run", many=995)
    fits = evaluate(client, operator, tenant.tenant_id, "pipeline_runs", 5, context={"flowId": "flow_42"})
    assert fits["isAllowed"] is True and fits["flowId"] == "flow_42"
    assert fits["simulation"] == {
        "requestedUsage": 5,
        "projectedUsage": 1000,
        "projectedRemaining": 0,
        "wouldExceedLimit": False,
    }
    too_many = evaluate(client, operator, tenant.tenant_id, "pipeline_runs", 6)
    assert too_many["isAllowed"] is False and reason(too_many) == "QUOTA_EXCEEDED"
    assert too_many["simulation"]["wouldExceedLimit"] is True
    assert count(app, UsageEvent, tenant_id=tenant.tenant_id) == 995
    plain = evaluate(client, operator, tenant.tenant_id, "pipeline_runs")
    assert plain["isAllowed"] is True and "simulation" not in {k for k, v in plain.items() if v is not None}


def test_the_concurrent_limit_has_its_own_reason(app, client, operator, make_tenant):
    tenant = make_tenant()
    with app.test_request_context():
        record(tenant.tenant_id, "pipelines_running", 5)
    data = check(client, operator, tenant.tenant_id, "concurrent_pipelines")
    assert data["isAllowed"] is False and reason(data) == "CONCURRENT_LIMIT_REACHED"


def test_a_feature_outside_the_plan_is_denied(client, operator, make_tenant):
    tenant = make_tenant()
    for feature in ("priority_support", "teleportation"):
        data = check(client, operator, tenant.tenant_id, feature)
        assert data["isAllowed"] is False and reason(data) == "FEATURE_NOT_IN_PLAN"


def test_unlimited_usage_on_professional_has_no_limit(app, client, operator):
    with app.test_request_context():
        tenant_id = subscribe("professional", utcnow()).tenant_id
        record(tenant_id, "pipeline_run", many=3)
    data = check(client, operator, tenant_id, "pipeline_runs")
    assert data["isAllowed"] is True
    assert data["usage"] == {"used": 3, "limit": None, "remaining": None}
    assert check(client, operator, tenant_id, "priority_support")["isAllowed"] is True


def test_a_suspended_tenant_is_denied(client, operator, make_tenant):
    tenant = make_tenant(status="suspended")
    data = check(client, operator, tenant.tenant_id, "pipeline_runs")
    assert data["isAllowed"] is False and reason(data) == "TENANT_SUSPENDED"


@pytest.mark.parametrize("status, code", [("canceled", "SUBSCRIPTION_CANCELED"), ("unpaid", "SUBSCRIPTION_UNPAID")])
def test_an_ended_or_unpaid_subscription_is_denied(app, client, operator, make_tenant, status, code):
    tenant = make_tenant()
    with app.test_request_context():
        subscription = db.session.query(Subscription).filter_by(tenant_id=tenant.tenant_id).one()
        if status == "canceled":
            subscriptions.cancel(SYSTEM, subscription, at_period_end=False)
        else:
            subscription.status = "unpaid"
        commit()
    data = check(client, operator, tenant.tenant_id, "pipeline_runs")
    assert data["isAllowed"] is False and reason(data) == code


def test_a_tenant_key_checks_its_own_tenant_only(app, client, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    _, plaintext = issue_key(app, tenant, scopes=["pipelines:read"])
    assert check(client, with_key(plaintext), tenant.tenant_id, "pipeline_runs")["isAllowed"] is True
    assert_envelope(
        client.get(f"/api/v1/entitlements/{other.tenant_id}/pipeline_runs", headers=with_key(plaintext)),
        404,
        "RESOURCE_NOT_FOUND",
    )
    response = send_json(
        client,
        "post",
        "/api/v1/entitlements",
        {"customerReferenceId": other.tenant_id, "featureKey": "pipeline_runs"},
        with_key(plaintext),
    )
    assert_envelope(response, 404)


def test_an_external_id_names_the_customer(app, client, operator, make_tenant):
    tenant = make_tenant()
    with app.app_context():
        db.session.get(Tenant, tenant.tenant_id).external_id = f"cust_{tenant.tenant_id}"
        db.session.commit()
    data = check(client, operator, f"cust_{tenant.tenant_id}", "pipeline_runs")
    assert data["referenceCustomerId"] == f"cust_{tenant.tenant_id}" and data["isAllowed"] is True


def test_unknown_customers_and_bad_bodies_are_refused(client, operator):
    assert_envelope(client.get("/api/v1/entitlements/nobody/pipeline_runs", headers=operator), 404)
    assert_envelope(client.get("/api/v1/entitlements/nobody/pipeline_runs"), 401)
    for body in (
        {"featureKey": "x"},
        {"customerReferenceId": "a", "featureKey": "x", "track": {"usageUnits": -1}},
        {"customerReferenceId": "a", "featureKey": "x", "track": {"usageUnits": "lots"}},
    ):
        assert_envelope(send_json(client, "post", "/api/v1/entitlements", body, operator), 400, "VALIDATION_ERROR")
