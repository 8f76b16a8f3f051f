"""Team over the API: invitations (seed 000), accepting them (public), members list/role/removal."""

from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Invitation, Membership, User, UserSession, utcnow
from tests.api_support import (
    HOSTILE_JSON,
    assert_envelope,
    bearer,
    count,
    fetch,
    issue_key,
    operator_token,
    send_json,
    with_key,
)
from tests.conftest import PASSWORD, unique

SEED_INVITE = {"invited_email": "developer@acmecorp.com", "role": "developer", "expires_in_days": 7}
SEED_ACCEPT = {"user_name": "John Doe", "password": "secure_password_here"}


@pytest.fixture
def tenant_and_key(app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    return tenant, plaintext


def _invite(client, tenant, plaintext, **overrides):
    body = {**SEED_INVITE, "invited_email": f"{unique('dev')}@acmecorp.com", **overrides}
    response = client.post(f"/api/v1/tenants/{tenant.tenant_id}/invitations", json=body, headers=with_key(plaintext))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _membership(app, tenant, user_id):
    with app.app_context():
        db.session.expire_all()
        return db.session.query(Membership).filter_by(tenant_id=tenant.tenant_id, user_id=user_id).one_or_none()


# --- invitations -------------------------------------------------------------------------


def test_invite_replays_seed_000(client, app, tenant_and_key, outbox):
    tenant, plaintext = tenant_and_key
    response = client.post(
        f"/api/v1/tenants/{tenant.tenant_id}/invitations", json=SEED_INVITE, headers=with_key(plaintext)
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["invited_email"] == "developer@acmecorp.com"
    assert data["role"] == "developer" and data["status"] == "pending"
    assert data["invitation_id"] and len(data["invitation_token"]) >= 22
    assert data["invitation_url"].endswith(data["invitation_token"])
    assert data["expires_at"].startswith((utcnow() + timedelta(days=7)).date().isoformat())
    emails = outbox("developer@acmecorp.com")
    assert emails and data["invitation_url"] in emails[0].text_body
    stored = fetch(app, Invitation, data["invitation_id"])
    assert data["invitation_token"] not in stored.token_hash


def test_invite_by_operator_token_defaults_to_seven_days(client, app, make_tenant):
    tenant = make_tenant()
    body = {"invited_email": "viewer@acmecorp.com", "role": "viewer"}
    data = client.post(
        f"/api/v1/tenants/{tenant.tenant_id}/invitations", json=body, headers=bearer(operator_token(app))
    ).get_json()
    assert data["expires_at"].startswith((utcnow() + timedelta(days=7)).date().isoformat())


@pytest.mark.parametrize(
    "body, field",
    [
        ({"invited_email": "x@example.com", "role": "owner"}, "role"),
        ({"invited_email": "x@example.com", "role": "superuser"}, "role"),
        ({"invited_email": "not-an-email", "role": "viewer"}, "invited_email"),
        ({"role": "viewer"}, "invited_email"),
        ({"invited_email": "x@example.com", "role": "viewer", "expires_in_days": 31}, "expires_in_days"),
        ({"invited_email": "x@example.com", "role": "viewer", "expires_in_days": 0}, "expires_in_days"),
    ],
)
def test_invite_refuses_bad_fields_naming_them(client, app, tenant_and_key, body, field):
    tenant, plaintext = tenant_and_key
    error = assert_envelope(
        client.post(f"/api/v1/tenants/{tenant.tenant_id}/invitations", json=body, headers=with_key(plaintext)),
        400,
        "VALIDATION_ERROR",
    )
    assert error["errors"][0]["field"] == field
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 0


def test_inviting_a_member_or_a_pending_email_is_409(client, app, tenant_and_key, make_user):
    tenant, plaintext = tenant_and_key
    member = make_user(tenant, role="viewer")
    path = f"/api/v1/tenants/{tenant.tenant_id}/invitations"
    error = assert_envelope(
        client.post(path, json={"invited_email": member.email, "role": "admin"}, headers=with_key(plaintext)), 409
    )
    assert "already a member" in error["detail"]
    pending = _invite(client, tenant, plaintext)
    error = assert_envelope(
        client.post(
            path, json={"invited_email": pending["invited_email"], "role": "admin"}, headers=with_key(plaintext)
        ),
        409,
    )
    assert "pending invitation" in error["detail"]
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 1


def test_list_invitations_is_paginated_and_never_shows_tokens(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    made = [_invite(client, tenant, plaintext) for _ in range(3)]
    _, reader = issue_key(app, tenant, scopes=["pipelines:read"])
    response = client.get(
        f"/api/v1/tenants/{tenant.tenant_id}/invitations?page=1&page_size=2", headers=with_key(reader)
    )
    assert response.status_code == 200
    data = response.get_json()
    assert len(data["invitations"]) == 2
    assert data["pagination"]["total_items"] == 3 and data["pagination"]["total_pages"] == 2
    item = data["invitations"][0]
    assert set(item) == {"invitation_id", "invited_email", "role", "status", "expires_at", "created_at"}
    text = response.get_data(as_text=True) + client.get(
        f"/api/v1/tenants/{tenant.tenant_id}/invitations?page=2&page_size=2", headers=with_key(reader)
    ).get_data(as_text=True)
    for invitation in made:
        assert invitation["invitation_id"] in text and invitation["invitation_token"] not in text


def test_accept_replays_seed_000_and_the_person_can_sign_in(client, app, tenant_and_key, login):
    tenant, plaintext = tenant_and_key
    invitation = _invite(client, tenant, plaintext)
    anonymous = app.test_client()
    response = anonymous.post(f"/api/v1/invitations/{invitation['invitation_token']}/accept", json=SEED_ACCEPT)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data == {
        "invitation_id": invitation["invitation_id"],
        "tenant_id": tenant.tenant_id,
        "user_email": invitation["invited_email"],
        "role": "developer",
        "message": "Invitation accepted successfully. You can now log in.",
    }
    with app.app_context():
        user = db.session.query(User).filter_by(email=invitation["invited_email"]).one()
        assert user.name == "John Doe"
    assert _membership(app, tenant, user.id).role == "developer"
    login(app.test_client(), invitation["invited_email"], SEED_ACCEPT["password"])
    assert fetch(app, Invitation, invitation["invitation_id"]).status == "accepted"


def test_a_used_token_cannot_be_accepted_again(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    invitation = _invite(client, tenant, plaintext)
    path = f"/api/v1/invitations/{invitation['invitation_token']}/accept"
    assert client.post(path, json=SEED_ACCEPT).status_code == 200
    error = assert_envelope(client.post(path, json=dict(SEED_ACCEPT, user_name="Mallory")), 409, "CONFLICT")
    assert "already been used" in error["detail"]


def test_expired_revoked_and_unknown_tokens_are_refused_clearly(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    expired = _invite(client, tenant, plaintext)
    revoked = _invite(client, tenant, plaintext)
    with app.app_context():
        db.session.get(Invitation, expired["invitation_id"]).expires_at = utcnow() - timedelta(minutes=1)
        db.session.get(Invitation, revoked["invitation_id"]).status = "revoked"
        db.session.commit()
    # An unknown token is not found; a known one that can no longer be used conflicts with its state.
    for token, words, status, code in [
        (expired["invitation_token"], "expired", 409, "CONFLICT"),
        (revoked["invitation_token"], "revoked", 409, "CONFLICT"),
        ("no-such-token", "not valid", 404, "RESOURCE_NOT_FOUND"),
        ("x" * 500, "not valid", 404, "RESOURCE_NOT_FOUND"),
    ]:
        response = client.post(f"/api/v1/invitations/{token}/accept", json=SEED_ACCEPT)
        error = assert_envelope(response, status, code)
        assert words in error["detail"]
    with app.app_context():
        assert (
            db.session.query(User).filter(User.email.in_([expired["invited_email"], revoked["invited_email"]])).count()
            == 0
        )


def test_accepting_with_an_existing_account_is_409_sign_in_to_the_portal(
    client, app, tenant_and_key, make_tenant, make_user
):
    tenant, plaintext = tenant_and_key
    elsewhere = make_user(make_tenant(), role="viewer")
    invitation = _invite(client, tenant, plaintext, invited_email=elsewhere.email)
    error = assert_envelope(
        client.post(f"/api/v1/invitations/{invitation['invitation_token']}/accept", json=SEED_ACCEPT), 409
    )
    assert "Sign in to the portal" in error["detail"]
    assert _membership(app, tenant, elsewhere.user.id) is None
    assert fetch(app, Invitation, invitation["invitation_id"]).status == "pending"


def test_accept_refuses_a_weak_password_and_keeps_the_invitation(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    invitation = _invite(client, tenant, plaintext)
    response = client.post(
        f"/api/v1/invitations/{invitation['invitation_token']}/accept", json={"user_name": "Jo", "password": "short"}
    )
    assert_envelope(response, 400)
    assert fetch(app, Invitation, invitation["invitation_id"]).status == "pending"


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_accept_bodies_give_4xx_and_change_nothing(client, app, tenant_and_key, payload):
    tenant, plaintext = tenant_and_key
    invitation = _invite(client, tenant, plaintext)
    response = send_json(client, "post", f"/api/v1/invitations/{invitation['invitation_token']}/accept", payload, {})
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert fetch(app, Invitation, invitation["invitation_id"]).status == "pending"


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_invite_bodies_give_4xx_and_invite_nobody(client, app, tenant_and_key, payload):
    tenant, plaintext = tenant_and_key
    response = send_json(
        client, "post", f"/api/v1/tenants/{tenant.tenant_id}/invitations", payload, with_key(plaintext)
    )
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 0


def test_invitation_non_json_and_oversize_bodies(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    path = f"/api/v1/tenants/{tenant.tenant_id}/invitations"
    assert_envelope(
        client.post(
            path,
            data="invited_email=a@b.co&role=admin",
            content_type="application/x-www-form-urlencoded",
            headers=with_key(plaintext),
        ),
        415,
    )
    assert_envelope(client.post(path, data="{", content_type="application/json", headers=with_key(plaintext)), 400)
    huge = '{"invited_email": "' + "a" * (app.config["MAX_CONTENT_LENGTH"] + 1) + '@x.co", "role": "admin"}'
    assert_envelope(client.post(path, data=huge, content_type="application/json", headers=with_key(plaintext)), 413)
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 0


# --- members -----------------------------------------------------------------------------


def test_list_members_shows_roles_and_paginates(client, app, make_tenant, make_user):
    tenant = make_tenant()
    owner = make_user(tenant, role="owner")
    admin = make_user(tenant, role="admin", name="Ada Admin")
    _, reader = issue_key(app, tenant, scopes=["usage:read"])
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}/members", headers=with_key(reader))
    assert response.status_code == 200
    data = response.get_json()
    by_id = {m["user_id"]: m for m in data["members"]}
    assert by_id[owner.user.id]["role"] == "owner"
    assert by_id[admin.user.id] == {
        "user_id": admin.user.id,
        "email": admin.email,
        "name": "Ada Admin",
        "role": "admin",
        "joined_at": by_id[admin.user.id]["joined_at"],
    }
    assert data["pagination"]["total_items"] == 2
    page = client.get(f"/api/v1/tenants/{tenant.tenant_id}/members?page=2&page_size=1", headers=with_key(reader))
    assert len(page.get_json()["members"]) == 1 and page.get_json()["pagination"]["has_previous"] is True
    assert "password" not in response.get_data(as_text=True)


def test_change_a_members_role(client, app, tenant_and_key, make_user):
    tenant, plaintext = tenant_and_key
    member = make_user(tenant, role="viewer")
    response = client.patch(
        f"/api/v1/tenants/{tenant.tenant_id}/members/{member.user.id}",
        json={"role": "admin"},
        headers=with_key(plaintext),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["role"] == "admin"
    assert _membership(app, tenant, member.user.id).role == "admin"
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="member.role_changed").one()
        assert event.actor_label.startswith("API key") and event.target_id == member.user.id


def test_the_owners_role_cannot_be_changed_and_nobody_becomes_owner(client, app, tenant_and_key, make_user):
    tenant, plaintext = tenant_and_key
    owner = make_user(tenant, role="owner")
    member = make_user(tenant, role="viewer")
    error = assert_envelope(
        client.patch(
            f"/api/v1/tenants/{tenant.tenant_id}/members/{owner.user.id}",
            json={"role": "viewer"},
            headers=with_key(plaintext),
        ),
        409,
    )
    assert "Transfer ownership" in error["detail"]
    assert_envelope(
        client.patch(
            f"/api/v1/tenants/{tenant.tenant_id}/members/{member.user.id}",
            json={"role": "owner"},
            headers=with_key(plaintext),
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert _membership(app, tenant, owner.user.id).role == "owner"
    assert _membership(app, tenant, member.user.id).role == "viewer"


def test_remove_a_member_ends_their_sessions(client, app, tenant_and_key, make_user, login):
    tenant, plaintext = tenant_and_key
    member = make_user(tenant, role="developer")
    browser = app.test_client()
    login(browser, member)
    assert browser.get("/overview").status_code == 200
    response = client.delete(
        f"/api/v1/tenants/{tenant.tenant_id}/members/{member.user.id}", headers=with_key(plaintext)
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user_id"] == member.user.id
    assert _membership(app, tenant, member.user.id) is None
    with app.app_context():
        assert db.session.query(UserSession).filter_by(user_id=member.user.id, revoked_at=None).count() == 0
    signed_out = browser.get("/overview")
    assert signed_out.status_code == 302 and signed_out.headers["Location"].startswith("/signin")
    with app.app_context():
        assert db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="member.removed").count() == 1


def test_the_owner_cannot_be_removed(client, app, tenant_and_key, make_user):
    tenant, plaintext = tenant_and_key
    owner = make_user(tenant, role="owner")
    error = assert_envelope(
        client.delete(f"/api/v1/tenants/{tenant.tenant_id}/members/{owner.user.id}", headers=with_key(plaintext)), 409
    )
    assert "owner cannot be removed" in error["detail"]
    assert _membership(app, tenant, owner.user.id) is not None


def test_unknown_member_is_404(client, tenant_and_key):
    tenant, plaintext = tenant_and_key
    for method in ("patch", "delete"):
        response = getattr(client, method)(
            f"/api/v1/tenants/{tenant.tenant_id}/members/usr_nobody",
            json={"role": "admin"} if method == "patch" else None,
            headers=with_key(plaintext),
        )
        assert_envelope(response, 404, "RESOURCE_NOT_FOUND")


@pytest.mark.parametrize("payload", HOSTILE_JSON + [{"role": None}, {"role": "ADMIN"}, {}])
def test_hostile_role_bodies_give_4xx_and_change_nothing(client, app, tenant_and_key, make_user, payload):
    tenant, plaintext = tenant_and_key
    member = make_user(tenant, role="viewer")
    response = send_json(
        client, "patch", f"/api/v1/tenants/{tenant.tenant_id}/members/{member.user.id}", payload, with_key(plaintext)
    )
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert _membership(app, tenant, member.user.id).role == "viewer"


# --- scopes, cross-tenant, suspension ----------------------------------------------------


def _team_writes(tenant, user_id):
    base = f"/api/v1/tenants/{tenant.tenant_id}"
    return [
        ("post", f"{base}/invitations", {"invited_email": f"{unique('x')}@example.com", "role": "viewer"}),
        ("patch", f"{base}/members/{user_id}", {"role": "admin"}),
        ("delete", f"{base}/members/{user_id}", None),
    ]


def _team_reads(tenant):
    base = f"/api/v1/tenants/{tenant.tenant_id}"
    return [("get", f"{base}/invitations", None), ("get", f"{base}/members", None)]


def test_team_writes_need_admin_scope_and_reads_do_not(client, app, make_tenant, make_user):
    tenant = make_tenant()
    member = make_user(tenant, role="viewer")
    _, narrow = issue_key(app, tenant, scopes=["pipelines:read", "usage:read", "credentials:write"])
    for method, path, body in _team_writes(tenant, member.user.id):
        error = assert_envelope(
            getattr(client, method)(path, json=body, headers=with_key(narrow)), 403, "INSUFFICIENT_SCOPE"
        )
        assert "admin:*" in error["detail"]
    for method, path, _body in _team_reads(tenant):
        assert getattr(client, method)(path, headers=with_key(narrow)).status_code == 200
    assert _membership(app, tenant, member.user.id).role == "viewer"
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 0


def test_a_key_of_tenant_a_naming_tenant_b_is_access_denied_for_team_endpoints(client, app, make_tenant, make_user):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    member_b = make_user(b, role="viewer")
    for method, path, body in _team_writes(b, member_b.user.id) + _team_reads(b):
        error = assert_envelope(getattr(client, method)(path, json=body, headers=with_key(key_a)), 403)
        assert error["detail"] == "Access denied"
    assert _membership(app, b, member_b.user.id).role == "viewer"
    assert count(app, Invitation, tenant_id=b.tenant_id) == 0


def test_another_tenants_user_id_under_your_own_path_is_404(client, app, make_tenant, make_user):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    member_b = make_user(b, role="viewer")
    for method, path, body in _team_writes(a, member_b.user.id)[1:]:
        assert_envelope(getattr(client, method)(path, json=body, headers=with_key(key_a)), 404, "RESOURCE_NOT_FOUND")
    assert _membership(app, b, member_b.user.id).role == "viewer"


def test_an_invitation_of_another_tenant_is_not_listed(client, app, make_tenant):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    _, key_b = issue_key(app, b)
    theirs = _invite(client, b, key_b)
    listed = client.get(f"/api/v1/tenants/{a.tenant_id}/invitations", headers=with_key(key_a)).get_json()
    assert theirs["invitation_id"] not in str(listed)


def test_a_suspended_tenants_key_cannot_manage_the_team(client, app, make_tenant, make_user):
    tenant = make_tenant(status="suspended")
    member = make_user(tenant, role="viewer")
    _, plaintext = issue_key(app, tenant)
    for method, path, body in _team_writes(tenant, member.user.id) + _team_reads(tenant):
        assert_envelope(
            getattr(client, method)(path, json=body, headers=with_key(plaintext)), 403, "CUSTOMER_SUSPENDED"
        )
    assert _membership(app, tenant, member.user.id).role == "viewer"


def test_operator_token_manages_any_tenants_team(client, app, make_tenant, make_user):
    tenant = make_tenant()
    member = make_user(tenant, role="viewer")
    op = bearer(operator_token(app))
    for method, path, body in _team_reads(tenant) + _team_writes(tenant, member.user.id):
        response = getattr(client, method)(path, json=body, headers=op)
        assert response.status_code == 200, (path, response.get_json())
    assert _membership(app, tenant, member.user.id) is None


def test_the_password_is_never_echoed(client, tenant_and_key):
    tenant, plaintext = tenant_and_key
    invitation = _invite(client, tenant, plaintext)
    response = client.post(
        f"/api/v1/invitations/{invitation['invitation_token']}/accept", json={"user_name": "P", "password": PASSWORD}
    )
    assert PASSWORD not in response.get_data(as_text=True)
