"""POST /tenants/{id}/subscription (seeds 001/002): subscribing again after a cancellation, or
for the first time, through the API, with the same rules as the portal's plan cards."""

from datetime import timedelta

import pytest

from portal.models import utcnow
from tests.api_support import assert_envelope, bearer, count, issue_key, operator_token, send_json, with_key
from tests.test_api_billing import admin_key, invoices_of, path, subscription_row, tenant_on


def cancel_now(client, tenant, headers):
    response = send_json(client, "post", path(tenant, "/subscription/cancel"), {"cancel_at_period_end": False}, headers)
    assert response.status_code == 200, response.get_json()


def subscribe(client, tenant, headers, **body):
    return send_json(client, "post", path(tenant, "/subscription"), body, headers)


def test_after_a_cancellation_a_tenant_subscribes_again_and_the_first_period_is_invoiced(client, app):
    tenant = tenant_on(app, "starter", days_ago=1)
    key = admin_key(app, tenant)
    cancel_now(client, tenant, key)
    # Before: every plan change is refused once the subscription has ended.
    assert_envelope(
        send_json(client, "post", path(tenant, "/subscription/upgrade"), {"new_plan": "enterprise"}, key), 409
    )
    invoices_before = len(invoices_of(app, tenant))

    response = subscribe(client, tenant, key, plan="enterprise")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["plan_name"] == "enterprise" and body["status"] == "active" and body["auto_renew"] is True
    assert body["invoice"]["total"] == 199900 and body["invoice"]["status"] == "open"
    assert body["invoice"]["invoice_id"] in {i.id for i in invoices_of(app, tenant)}
    assert "Enterprise" in body["message"] and body["invoice"]["number"] in body["message"]
    assert len(invoices_of(app, tenant)) == invoices_before + 1
    assert client.get(path(tenant, "/subscription"), headers=key).get_json()["plan_name"] == "enterprise"
    assert client.get(path(tenant), headers=key).get_json()["subscription_plan"] == "enterprise"
    # And it can be changed again like any live subscription.
    downgrade = send_json(client, "post", path(tenant, "/subscription/upgrade"), {"new_plan": "starter"}, key)
    assert downgrade.status_code == 200, downgrade.get_json()


def test_a_live_subscription_is_not_replaced(client, app):
    tenant = tenant_on(app, "starter", days_ago=1)
    key = admin_key(app, tenant)
    body = assert_envelope(subscribe(client, tenant, key, plan="enterprise"), 409, "CONFLICT")
    assert "already has a subscription" in body["detail"] and "upgrade" in body["detail"]
    send_json(client, "post", path(tenant, "/subscription/cancel"), {}, key)  # at period end: still live
    body = assert_envelope(subscribe(client, tenant, key, plan="enterprise"), 409)
    assert "resume" in body["detail"]
    assert subscription_row(app, tenant).plan_version.key == "starter"


def test_the_plans_trial_applies_and_can_be_shortened_but_only_the_operator_lengthens_it(client, app):
    tenant = tenant_on(app, "starter", days_ago=1)
    key = admin_key(app, tenant)
    cancel_now(client, tenant, key)
    invoices_before = len(invoices_of(app, tenant))

    body = assert_envelope(subscribe(client, tenant, key, plan="professional", trial_days=60), 403)
    assert "14 trial days" in body["detail"]

    trial = subscribe(client, tenant, key, plan="professional")
    assert trial.status_code == 201, trial.get_json()
    body = trial.get_json()
    assert body["status"] == "trialing" and body["invoice"] is None and "trial" in body["message"]
    assert subscription_row(app, tenant).trial_end - utcnow() > timedelta(days=13)
    assert len(invoices_of(app, tenant)) == invoices_before

    operator = bearer(operator_token(app))
    cancel_now(client, tenant, operator)
    longer = subscribe(client, tenant, operator, plan="professional", trial_days=60)
    assert longer.status_code == 201, longer.get_json()
    assert subscription_row(app, tenant).trial_end - utcnow() > timedelta(days=59)

    cancel_now(client, tenant, operator)
    none = subscribe(client, tenant, key, plan="professional", trial_days=0)
    assert none.get_json()["status"] == "active" and none.get_json()["invoice"]["total"] == 49900


def test_a_start_date_dates_the_billing_period_back(client, app):
    tenant = tenant_on(app, "starter", days_ago=40)
    key = admin_key(app, tenant)
    cancel_now(client, tenant, key)
    today = utcnow().date()
    # Before the previous subscription ended: its usage up to then is billed already.
    body = assert_envelope(
        subscribe(client, tenant, key, plan="starter", start_date=(today - timedelta(days=20)).isoformat()), 400
    )
    assert body["errors"][0]["field"] == "start_date"
    body = assert_envelope(
        subscribe(client, tenant, key, plan="starter", start_date=(today + timedelta(days=1)).isoformat()), 400
    )
    assert "future" in body["detail"]
    assert_envelope(subscribe(client, tenant, key, plan="starter", start_date="next week"), 400, "VALIDATION_ERROR")
    for extreme in ("9999-12-31", "0001-01-01"):
        for trial in (0, 365):
            body = {"plan": "starter", "start_date": extreme, "trial_days": trial}
            assert_envelope(subscribe(client, tenant, bearer(operator_token(app)), **body), 400, "VALIDATION_ERROR")

    # A subscription that ended long ago leaves room to date a new one back.
    with app.app_context():
        from portal.extensions import db
        from portal.models import Subscription

        row = db.session.query(Subscription).filter_by(tenant_id=tenant.tenant_id).one()
        row.ended_at = utcnow() - timedelta(days=100)
        db.session.commit()
    body = assert_envelope(
        subscribe(client, tenant, key, plan="starter", start_date=(today - timedelta(days=40)).isoformat()), 400
    )
    assert "already ended" in body["detail"]
    started = subscribe(client, tenant, key, plan="starter", start_date=(today - timedelta(days=3)).isoformat())
    assert started.status_code == 201, started.get_json()
    body = started.get_json()
    assert body["billing_cycle_start"] == (today - timedelta(days=3)).isoformat()
    assert body["invoice"]["period_start"].startswith((today - timedelta(days=3)).isoformat())
    # Invoiced now, so due from now, not from the day it is dated back to.
    assert body["invoice"]["due_at"] > utcnow().isoformat()


@pytest.mark.parametrize(
    "body, field, status",
    [
        ({}, "plan", 400),
        # A plan that does not exist is not found, like any id that names nothing.
        ({"plan": "platinum"}, "plan", 404),
        ({"plan": "starter", "trial_days": -1}, "trial_days", 400),
        ({"plan": "starter", "trial_days": "7"}, "trial_days", 400),
        ({"plan": "starter", "trial_days": 366}, "trial_days", 400),
        ({"plan": "starter", "coupon": "FREE"}, "coupon", 400),
    ],
)
def test_bad_bodies_name_the_field_and_subscribe_nothing(client, app, body, field, status):
    tenant = tenant_on(app, "starter", days_ago=1)
    key = admin_key(app, tenant)
    cancel_now(client, tenant, key)
    response = assert_envelope(subscribe(client, tenant, key, **body), status)
    assert response["errors"][0]["field"] == field
    assert subscription_row(app, tenant).status == "canceled"


def test_only_an_admin_key_of_the_tenant_or_an_operator_subscribes(client, app, make_tenant):
    tenant, other = tenant_on(app, "starter", days_ago=1), tenant_on(app, "starter", days_ago=1)
    cancel_now(client, tenant, admin_key(app, tenant))
    reader = with_key(issue_key(app, tenant, scopes=["usage:read"])[1])
    assert_envelope(subscribe(client, tenant, reader, plan="starter"), 403, "INSUFFICIENT_SCOPE")
    assert_envelope(subscribe(client, tenant, admin_key(app, other), plan="starter"), 403)
    assert subscription_row(app, tenant).status == "canceled"
    operator = bearer(operator_token(app))
    assert subscribe(client, tenant, operator, plan="starter").status_code == 201


def test_a_deleted_tenant_cannot_subscribe(client, app):
    tenant = tenant_on(app, "starter", days_ago=1)
    with app.test_request_context():
        from portal.access import SYSTEM
        from portal.extensions import db
        from portal.infra.transactions import commit
        from portal.models import Tenant
        from portal.tenants.services import cancel

        cancel(SYSTEM, db.session.get(Tenant, tenant.tenant_id))
        commit()
    operator = bearer(operator_token(app))
    body = assert_envelope(subscribe(client, tenant, operator, plan="starter"), 409)
    assert "deleted" in body["detail"]
    assert count(app, type(subscription_row(app, tenant)), tenant_id=tenant.tenant_id, status="active") == 0
