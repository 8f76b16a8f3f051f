"""Seed 000's API key endpoints: create (shown once), list, revoke; scopes and cross-tenant."""

from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import ApiKey, AuditEvent, utcnow
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

SEED_CREATE = {
    "key_name": "Production Key",
    "scopes": ["pipelines:read", "pipelines:write", "usage:read"],
    "expires_in_days": 90,
}
SEED_REVOKE = {"revocation_reason": "Key compromised"}
LIST_FIELDS = {
    "api_key_id",
    "key_name",
    "prefix",
    "scopes",
    "is_active",
    "expires_at",
    "last_used_at",
    "created_at",
    "revoked_at",
}


@pytest.fixture
def tenant_and_key(app, make_tenant):
    tenant = make_tenant()
    key, plaintext = issue_key(app, tenant)
    return tenant, key, plaintext


def _path(tenant, suffix=""):
    return f"/api/v1/tenants/{tenant.tenant_id}/api-keys{suffix}"


def test_create_key_replays_seed_000(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    response = client.post(_path(tenant), json=SEED_CREATE, headers=with_key(admin))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["key_name"] == "Production Key"
    assert data["scopes"] == SEED_CREATE["scopes"]
    assert data["api_key"].startswith(f"{tenant.tenant_id}_api_")
    assert len(data["api_key"].removeprefix(f"{tenant.tenant_id}_api_")) >= 32
    assert data["api_key"].startswith(data["prefix"])
    assert "only be shown once" in data["message"]
    expires = data["expires_at"]
    assert expires.startswith((utcnow() + timedelta(days=90)).date().isoformat())
    assert data["created_at"] and data["api_key_id"]
    # The new key works, with exactly its scopes.
    new = with_key(data["api_key"])
    assert client.get(_path(tenant), headers=new).status_code == 200
    assert_envelope(client.post(_path(tenant), json={}, headers=new), 403, "INSUFFICIENT_SCOPE")
    stored = fetch(app, ApiKey, data["api_key_id"])
    assert data["api_key"] not in (stored.key_hash, stored.prefix)


def test_create_key_defaults_to_all_scopes_and_90_days(client, tenant_and_key):
    tenant, _, admin = tenant_and_key
    data = client.post(_path(tenant), json={}, headers=with_key(admin)).get_json()
    assert set(data["scopes"]) == {
        "pipelines:read",
        "pipelines:write",
        "usage:read",
        "credentials:read",
        "credentials:write",
        "admin:*",
    }
    assert data["key_name"] and data["expires_at"].startswith((utcnow() + timedelta(days=90)).date().isoformat())


def test_create_key_with_null_expiry_never_expires(client, tenant_and_key):
    tenant, _, admin = tenant_and_key
    data = client.post(
        _path(tenant), json={"key_name": "Forever", "expires_in_days": None}, headers=with_key(admin)
    ).get_json()
    assert data["expires_at"] is None


def test_operator_token_creates_lists_and_revokes_keys(client, app, make_tenant):
    tenant = make_tenant()
    op = bearer(operator_token(app))
    created = client.post(_path(tenant), json=SEED_CREATE, headers=op)
    assert created.status_code == 200
    key_id = created.get_json()["api_key_id"]
    listed = client.get(_path(tenant), headers=op).get_json()
    assert [k["api_key_id"] for k in listed["api_keys"]] == [key_id]
    revoked = client.post(_path(tenant, f"/{key_id}/revoke"), json=SEED_REVOKE, headers=op)
    assert revoked.status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"scopes": ["root:*"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 3651}, "expires_in_days"),
        ({"expires_in_days": "90"}, "expires_in_days"),
        ({"key_name": "k" * 101}, "key_name"),
        ({"key_name": "x", "extra": 1}, "extra"),
    ],
)
def test_create_key_refuses_bad_fields_naming_them(client, app, tenant_and_key, body, field):
    tenant, _, admin = tenant_and_key
    before = count(app, ApiKey, tenant_id=tenant.tenant_id)
    error = assert_envelope(client.post(_path(tenant), json=body, headers=with_key(admin)), 400, "VALIDATION_ERROR")
    assert error["errors"][0]["field"].startswith(field)
    assert count(app, ApiKey, tenant_id=tenant.tenant_id) == before


def test_list_keys_shows_seed_fields_but_never_the_key_or_its_hash(client, app, tenant_and_key):
    tenant, key, admin = tenant_and_key
    reader_key, reader = issue_key(app, tenant, scopes=["usage:read"], name="Reader")
    response = client.get(_path(tenant), headers=with_key(reader))
    assert response.status_code == 200
    data = response.get_json()
    assert {k["api_key_id"] for k in data["api_keys"]} == {key.id, reader_key.id}
    for item in data["api_keys"]:
        assert LIST_FIELDS <= set(item)
        assert "api_key" not in item and "key_hash" not in item
    text = response.get_data(as_text=True)
    assert admin not in text and reader not in text
    assert fetch(app, ApiKey, key.id).key_hash not in text
    assert data["pagination"]["total_items"] == 2


def test_list_keys_paginates(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    for i in range(4):
        issue_key(app, tenant, name=f"k{i}")
    first = client.get(_path(tenant) + "?page=1&page_size=2", headers=with_key(admin)).get_json()
    last = client.get(_path(tenant) + "?page=3&page_size=2", headers=with_key(admin)).get_json()
    assert len(first["api_keys"]) == 2 and len(last["api_keys"]) == 1
    assert first["pagination"] == {
        "page": 1,
        "page_size": 2,
        "total_items": 5,
        "total_pages": 3,
        "has_next": True,
        "has_previous": False,
    }
    assert last["pagination"]["has_next"] is False
    assert_envelope(client.get(_path(tenant) + "?page_size=101", headers=with_key(admin)), 400)


def test_list_shows_expired_and_revoked_keys_as_inactive(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    expired, _ = issue_key(app, tenant, name="Old")
    with app.app_context():
        db.session.get(ApiKey, expired.id).expires_at = utcnow() - timedelta(days=1)
        db.session.commit()
    revoked, _ = issue_key(app, tenant, name="Gone")
    client.post(_path(tenant, f"/{revoked.id}/revoke"), json=SEED_REVOKE, headers=with_key(admin))
    items = {k["api_key_id"]: k for k in client.get(_path(tenant), headers=with_key(admin)).get_json()["api_keys"]}
    assert items[expired.id]["is_active"] is False and items[expired.id]["status"] == "expired"
    assert items[revoked.id]["is_active"] is False and items[revoked.id]["revoked_at"]


def test_revoke_replays_seed_000_and_the_key_stops_working(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    victim, victim_plain = issue_key(app, tenant, name="Victim")
    assert client.get(_path(tenant), headers=with_key(victim_plain)).status_code == 200
    response = client.post(_path(tenant, f"/{victim.id}/revoke"), json=SEED_REVOKE, headers=with_key(admin))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data == {
        "api_key_id": victim.id,
        "is_active": False,
        "revoked_at": data["revoked_at"],
        "message": "API key revoked successfully",
    }
    assert data["revoked_at"]
    assert fetch(app, ApiKey, victim.id).revoked_reason == "Key compromised"
    assert_envelope(client.get(_path(tenant), headers=with_key(victim_plain)), 401, "INVALID_API_KEY")
    assert_envelope(
        client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=bearer(victim_plain)), 401, "INVALID_API_KEY"
    )


def test_revoke_without_a_body_or_reason_works(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    victim, _ = issue_key(app, tenant)
    assert client.post(_path(tenant, f"/{victim.id}/revoke"), headers=with_key(admin)).status_code == 200
    assert fetch(app, ApiKey, victim.id).revoked_reason is None


def test_revoking_twice_is_409(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    victim, _ = issue_key(app, tenant)
    client.post(_path(tenant, f"/{victim.id}/revoke"), json=SEED_REVOKE, headers=with_key(admin))
    first = fetch(app, ApiKey, victim.id).revoked_at
    error = assert_envelope(
        client.post(_path(tenant, f"/{victim.id}/revoke"), json={}, headers=with_key(admin)), 409, "CONFLICT"
    )
    assert "already revoked" in error["detail"]
    assert fetch(app, ApiKey, victim.id).revoked_at == first


def test_revoking_an_unknown_key_is_404(client, tenant_and_key):
    tenant, _, admin = tenant_and_key
    assert_envelope(
        client.post(_path(tenant, "/key_nope/revoke"), json={}, headers=with_key(admin)), 404, "RESOURCE_NOT_FOUND"
    )


def test_an_expired_key_is_401_invalid_api_key(client, app, tenant_and_key):
    tenant, _, _ = tenant_and_key
    short, plaintext = issue_key(app, tenant, expires_in_days=1)
    with app.app_context():
        db.session.get(ApiKey, short.id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert_envelope(client.get(_path(tenant), headers=with_key(plaintext)), 401, "INVALID_API_KEY")


# --- scopes, cross-tenant, suspension ----------------------------------------------------


def test_writes_need_admin_scope_and_name_it(client, app, tenant_and_key):
    tenant, victim, _ = tenant_and_key
    _, narrow = issue_key(
        app, tenant, scopes=["pipelines:read", "pipelines:write", "usage:read", "credentials:read", "credentials:write"]
    )
    before = count(app, ApiKey, tenant_id=tenant.tenant_id)
    for path, body in [(_path(tenant), SEED_CREATE), (_path(tenant, f"/{victim.id}/revoke"), SEED_REVOKE)]:
        error = assert_envelope(client.post(path, json=body, headers=with_key(narrow)), 403, "INSUFFICIENT_SCOPE")
        assert "admin:*" in error["detail"]
    assert count(app, ApiKey, tenant_id=tenant.tenant_id) == before
    assert fetch(app, ApiKey, victim.id).revoked_at is None
    # Listing needs no particular scope.
    assert client.get(_path(tenant), headers=with_key(narrow)).status_code == 200


def test_a_key_of_tenant_a_cannot_touch_tenant_b_keys(client, app, make_tenant):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    key_b, _ = issue_key(app, b)
    before = count(app, ApiKey, tenant_id=b.tenant_id)
    for method, path, body in [
        ("post", _path(b), SEED_CREATE),
        ("get", _path(b), None),
        ("post", _path(b, f"/{key_b.id}/revoke"), SEED_REVOKE),
    ]:
        error = assert_envelope(getattr(client, method)(path, json=body, headers=with_key(key_a)), 403)
        assert error["detail"] == "Access denied"
    assert count(app, ApiKey, tenant_id=b.tenant_id) == before
    assert fetch(app, ApiKey, key_b.id).revoked_at is None


def test_another_tenants_key_id_under_your_own_path_is_404(client, app, make_tenant):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    key_b, plain_b = issue_key(app, b)
    error = assert_envelope(
        client.post(_path(a, f"/{key_b.id}/revoke"), json=SEED_REVOKE, headers=with_key(key_a)),
        404,
        "RESOURCE_NOT_FOUND",
    )
    assert error["detail"] == "API key not found"
    assert fetch(app, ApiKey, key_b.id).revoked_at is None
    assert client.get(_path(b), headers=with_key(plain_b)).status_code == 200


def test_a_suspended_tenants_key_is_refused_for_keys(client, app, make_tenant):
    tenant = make_tenant(status="suspended")
    victim, plaintext = issue_key(app, tenant)
    for method, path, body in [
        ("get", _path(tenant), None),
        ("post", _path(tenant), SEED_CREATE),
        ("post", _path(tenant, f"/{victim.id}/revoke"), SEED_REVOKE),
    ]:
        assert_envelope(
            getattr(client, method)(path, json=body, headers=with_key(plaintext)), 403, "CUSTOMER_SUSPENDED"
        )
    assert count(app, ApiKey, tenant_id=tenant.tenant_id) == 1
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).status_code == 200


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_create_bodies_give_4xx_and_create_nothing(client, app, tenant_and_key, payload):
    tenant, _, admin = tenant_and_key
    before = count(app, ApiKey, tenant_id=tenant.tenant_id)
    response = send_json(client, "post", _path(tenant), payload, with_key(admin))
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert count(app, ApiKey, tenant_id=tenant.tenant_id) == before


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_revoke_bodies_give_4xx_and_revoke_nothing(client, app, tenant_and_key, payload):
    tenant, _, admin = tenant_and_key
    victim, _ = issue_key(app, tenant)
    response = send_json(client, "post", _path(tenant, f"/{victim.id}/revoke"), payload, with_key(admin))
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert fetch(app, ApiKey, victim.id).revoked_at is None


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        ("{nope", "application/json", 400),
        ('{"key_name": "x"}', "text/plain", 415),
        ("key_name=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_non_json_create_bodies_give_envelopes(client, app, tenant_and_key, raw, content_type, status):
    tenant, _, admin = tenant_and_key
    before = count(app, ApiKey, tenant_id=tenant.tenant_id)
    assert_envelope(client.post(_path(tenant), data=raw, content_type=content_type, headers=with_key(admin)), status)
    assert count(app, ApiKey, tenant_id=tenant.tenant_id) == before


def test_oversize_create_body_is_413(client, app, tenant_and_key):
    tenant, _, admin = tenant_and_key
    huge = '{"key_name": "' + "x" * (app.config["MAX_CONTENT_LENGTH"] + 1) + '"}'
    assert_envelope(
        client.post(_path(tenant), data=huge, content_type="application/json", headers=with_key(admin)), 413
    )


def test_key_changes_are_audited_with_the_key_as_actor(client, app, tenant_and_key):
    tenant, key, admin = tenant_and_key
    created = client.post(_path(tenant), json=SEED_CREATE, headers=with_key(admin)).get_json()
    client.post(_path(tenant, f"/{created['api_key_id']}/revoke"), json=SEED_REVOKE, headers=with_key(admin))
    with app.app_context():
        events = {e.action: e for e in db.session.query(AuditEvent).filter_by(target_id=created["api_key_id"])}
    assert set(events) == {"api_key.created", "api_key.revoked"}
    for event in events.values():
        assert key.prefix in event.actor_label and event.tenant_id == tenant.tenant_id
    assert created["api_key"] not in str(events["api_key.created"].details)
