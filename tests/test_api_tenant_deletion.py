"""DELETE /api/v1/tenants/{id}: the settings page's soft delete over the API, for the owner's
admin key or an operator token (seed 004: only the owner deletes the account)."""

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Membership, Subscription, Tenant, User
from tests.api_support import assert_envelope, bearer, fetch, issue_key, operator_token, with_key


def key_created_by(app, tenant, role: str, scopes=("admin:*",)) -> dict:
    """A key made in the portal by the tenant's member of ``role``."""
    from portal.access import Actor
    from portal.api_keys.services import create_key
    from portal.infra.transactions import commit

    with app.test_request_context():
        user = (
            db.session.query(User)
            .join(Membership, Membership.user_id == User.id)
            .filter(Membership.tenant_id == tenant.tenant_id, Membership.role == role)
            .first()
        )
        _, plaintext = create_key(Actor(user=user), db.session.get(Tenant, tenant.tenant_id), "k", scopes=list(scopes))
        commit()
    return with_key(plaintext)


def subscription_status(app, tenant) -> str:
    with app.app_context():
        return db.session.query(Subscription.status).filter_by(tenant_id=tenant.tenant_id).scalar()


def test_the_owners_admin_key_deletes_the_account_and_stops_working(app, client, make_tenant):
    tenant = make_tenant()
    key = key_created_by(app, tenant, "owner")
    response = client.delete(f"/api/v1/tenants/{tenant.tenant_id}", headers=key)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["tenant_id"] == tenant.tenant_id and body["status"] == "cancelled" and body["cancelled_at"]
    assert fetch(app, Tenant, tenant.tenant_id).status == "cancelled"  # kept, not erased
    assert subscription_status(app, tenant) == "canceled"
    with app.app_context():
        assert (
            db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="tenant.cancelled").count() == 1
        )
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=key), 404, "RESOURCE_NOT_FOUND")


def test_an_operator_deletes_any_tenant_once(app, client, make_tenant):
    tenant = make_tenant(status="suspended")
    op = bearer(operator_token(app))
    assert client.delete(f"/api/v1/tenants/{tenant.tenant_id}", headers=op).status_code == 200
    assert fetch(app, Tenant, tenant.tenant_id).status == "cancelled"
    body = assert_envelope(client.delete(f"/api/v1/tenants/{tenant.tenant_id}", headers=op), 409, "CONFLICT")
    assert "already deleted" in body["detail"]
    assert_envelope(client.delete("/api/v1/tenants/no_such_tenant", headers=op), 404)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda app, tenant, make_user: key_created_by(app, tenant, "owner", scopes=("usage:read",)),
        lambda app, tenant, make_user: (make_user(tenant=tenant, role="admin"), key_created_by(app, tenant, "admin"))[
            1
        ],
        lambda app, tenant, make_user: with_key(issue_key(app, tenant, scopes=["admin:*"])[1]),  # the onboarding kind
    ],
    ids=["owner-key-without-admin-scope", "an-admins-key", "a-key-no-owner-made"],
)
def test_only_the_owners_admin_key_may_delete(app, client, make_tenant, make_user, make_key):
    tenant = make_tenant()
    headers = make_key(app, tenant, make_user)
    assert_envelope(client.delete(f"/api/v1/tenants/{tenant.tenant_id}", headers=headers), 403)
    assert fetch(app, Tenant, tenant.tenant_id).status == "active"
    assert subscription_status(app, tenant) == "active"


def test_another_tenants_key_cannot_delete_it(app, client, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    body = assert_envelope(
        client.delete(f"/api/v1/tenants/{tenant.tenant_id}", headers=key_created_by(app, other, "owner")), 403
    )
    assert body["detail"] == "Access denied"
    assert fetch(app, Tenant, tenant.tenant_id).status == "active"
