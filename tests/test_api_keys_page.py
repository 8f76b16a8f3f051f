"""The API keys page: who may create and revoke, the key shown exactly once, the list,
invalid input, htmx fragments, other tenants' keys and suspended tenants, through HTTP."""

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import API_SCOPES, ApiKey, AuditEvent, utcnow
from portal.security import hash_token
from portal.timezones import format_local
from tests.conftest import HTMX, field_error

ALL_SCOPES = list(API_SCOPES)


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="flash flash-\w+" role="status">(.*?)</li>', page)]


def shown_secret(page: str) -> str:
    """The full key the page reveals ("" when it shows none)."""
    match = re.search(r'value="([^"]+)"\s+readonly[^>]*data-testid="secret-value"', page)
    return html.unescape(match.group(1)) if match else ""


def shown_keys(page: str) -> dict[str, str]:
    """key name -> status badge, as the list shows them."""
    rows = re.findall(r'<tr data-testid="key-row" data-key-id="[^"]+" data-name="([^"]+)">(.*?)</tr>', page, re.S)
    return {html.unescape(name): re.search(r'class="badge badge-\w+">(\w+)<', row).group(1) for name, row in rows}


def stored_keys(app, tenant) -> list[ApiKey]:
    with app.app_context():
        return list(db.session.execute(select(ApiKey).where(ApiKey.tenant_id == tenant.tenant_id)).scalars())


def new_key(name="CI pipeline", scopes=None, expires_in_days="90", **extra) -> dict:
    return {
        "key_name": name,
        "scopes": ALL_SCOPES if scopes is None else scopes,
        "expires_in_days": expires_in_days,
        **extra,
    }


def create_key(client, **form) -> str:
    response = client.post("/api-keys", data=new_key(**form))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    secret = shown_secret(response.get_data(as_text=True))
    assert secret
    return secret


def key_id(app, secret: str) -> str:
    with app.app_context():
        return db.session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_token(secret))).scalar_one()


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Keys Co")


@pytest.fixture
def team(tenant, make_user):
    return {role: make_user(tenant, role=role) for role in ("owner", "admin", "developer", "viewer")}


# --- the page and roles ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_sees_the_keys_but_only_key_managers_get_the_form(client, team, login, role):
    login(client, team[role])
    page = client.get("/api-keys").get_data(as_text=True)
    assert "<h1>API keys</h1>" in page
    assert 'aria-current="page">API keys</a>' in page
    assert ("Create a key" in page) == (role != "viewer")
    assert ("can see the keys but not create or revoke them" in page) == (role == "viewer")
    assert "No API keys yet." in page


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/api-keys")
    assert response.status_code == 302 and "/signin" in response.headers["Location"]


def test_viewer_cannot_create_api_key(app, client, tenant, team, login):
    login(client, team["viewer"])
    assert client.post("/api-keys", data=new_key()).status_code == 403
    assert stored_keys(app, tenant) == []


def test_viewer_cannot_revoke_api_key(app, client, team, login):
    login(client, team["developer"])
    secret = create_key(client)
    viewer_client = app.test_client()
    login(viewer_client, team["viewer"])
    page = viewer_client.get("/api-keys").get_data(as_text=True)
    assert shown_keys(page) == {"CI pipeline": "active"} and "Yes, revoke" not in page
    response = viewer_client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "mine now"})
    assert response.status_code == 403
    assert client.get("/api/v1/tenants/" + secret.split("_api_")[0], headers={"X-API-Key": secret}).status_code == 200


@pytest.mark.parametrize("bad_id", ["%00", "key_%00x", "x" * 300])
def test_an_id_no_key_could_have_is_not_found_not_an_error(client, team, login, bad_id):
    login(client, team["owner"])
    assert client.post(f"/api-keys/{bad_id}/revoke", data={"reason": "x"}).status_code == 404


@pytest.mark.parametrize("role", ["owner", "admin", "developer"])
def test_key_managers_can_create_and_revoke(app, client, team, login, role):
    login(client, team[role])
    secret = create_key(client, name=f"{role} key")
    response = client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "rotated"})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"The key “{role} key” ({secret[: len(secret) - 37]}…) was revoked." in flashes(page)
    assert shown_keys(page) == {f"{role} key": "revoked"}
    assert "rotated" in page


# --- shown exactly once ------------------------------------------------------------------


def test_new_key_is_shown_once_and_only_its_hash_is_stored(app, client, tenant, team, login):
    login(client, team["developer"])
    response = client.post("/api-keys", data=new_key())
    page = response.get_data(as_text=True)
    secret = shown_secret(page)
    assert re.fullmatch(rf"{tenant.tenant_id}_api_[A-Za-z0-9_-]{{43}}", secret)
    assert "Copy it now: this is the only time it is shown." in page
    assert 'data-copy-target="#new-secret"' in page and 'hx-history="false"' in page
    assert response.headers["Cache-Control"] == "no-store"
    assert shown_keys(page) == {"CI pipeline": "active"}

    [key] = stored_keys(app, tenant)
    assert key.key_hash == hash_token(secret) and secret not in (key.prefix, key.key_hash)
    assert secret.startswith(key.prefix) and len(key.prefix) < len(secret) - 30
    with client.session_transaction() as session:
        assert secret not in repr(dict(session))

    later = client.get("/api-keys").get_data(as_text=True)
    assert secret not in later and shown_secret(later) == ""
    assert f'title="{key.prefix}…"' in later
    assert shown_keys(later) == {"CI pipeline": "active"}


def test_created_key_works_against_the_api_until_it_is_revoked(app, client, tenant, team, login):
    login(client, team["admin"])
    secret = create_key(client, name="Deploy bot")
    api = app.test_client()
    url = f"/api/v1/tenants/{tenant.tenant_id}"
    assert api.get(url, headers={"X-API-Key": secret}).status_code == 200
    assert api.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200

    row = re.search(r'data-name="Deploy bot">(.*?)</tr>', client.get("/api-keys").get_data(as_text=True), re.S)
    last_used = re.sub(r"<[^>]+>", " ", row.group(1).split("</td>")[5])
    assert format_local(utcnow(), "date") in last_used  # the one date format, "Dec 7, 2026"

    assert client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "leaked"}).status_code == 303
    denied = api.get(url, headers={"X-API-Key": secret})
    assert denied.status_code == 401 and denied.get_json()["error_code"] == "INVALID_API_KEY"
    [key] = stored_keys(app, tenant)
    assert key.revoked_reason == "leaked"
    with app.app_context():
        actions = (
            db.session.execute(
                select(AuditEvent.action).where(
                    AuditEvent.tenant_id == tenant.tenant_id, AuditEvent.action.like("api_key.%")
                )
            )
            .scalars()
            .all()
        )
    assert sorted(actions) == ["api_key.created", "api_key.revoked"]


def test_chosen_scopes_and_expiry_are_stored_and_listed(app, client, tenant, team, login):
    login(client, team["developer"])
    create_key(client, name="Reader", scopes=["usage:read", "pipelines:read"], expires_in_days="30")
    create_key(client, name="Forever", expires_in_days="", never_expires="y")
    keys = {key.name: key for key in stored_keys(app, tenant)}
    assert keys["Reader"].scopes == ["pipelines:read", "usage:read"]
    assert (keys["Reader"].expires_at - utcnow()).days in (29, 30)
    assert keys["Forever"].expires_at is None and keys["Forever"].scopes == ALL_SCOPES

    page = client.get("/api-keys").get_data(as_text=True)
    reader = re.search(r'data-name="Reader">(.*?)</tr>', page, re.S).group(1)
    assert "<code>usage:read</code>" in reader and "admin:*" not in reader
    forever = re.search(r'data-name="Forever">(.*?)</tr>', page, re.S).group(1)
    assert '<td class="nowrap">never</td>' in forever


def test_create_form_offers_the_scopes_that_grant_something_with_only_the_read_one_ticked(client, team, login):
    login(client, team["owner"])
    page = client.get("/api-keys").get_data(as_text=True)
    boxes = re.findall(r'<input type="checkbox" name="scopes" value="([^"]+)" ?(checked)?>', page)
    # Least privilege by default: admin:* is there to tick, never ticked for you.
    assert boxes == [("usage:read", "checked"), ("credentials:read", ""), ("credentials:write", ""), ("admin:*", "")]
    for scope, _ in boxes:
        assert API_SCOPES[scope] in page
    assert "pipelines:" not in page  # seed 000's pipeline scopes guard nothing here
    assert re.search(r'id="expires_in_days"[^>]*value="90"', page)


def test_expired_key_shows_as_expired_and_stops_working(app, client, tenant, team, login):
    login(client, team["developer"])
    secret = create_key(client, name="Old key", expires_in_days="1")
    with app.app_context():
        key = db.session.get(ApiKey, key_id(app, secret))
        key.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    assert shown_keys(client.get("/api-keys").get_data(as_text=True)) == {"Old key": "expired"}
    assert (
        app.test_client().get(f"/api/v1/tenants/{tenant.tenant_id}", headers={"X-API-Key": secret}).status_code == 401
    )


# --- invalid input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"scopes": []}, "scopes", "Choose at least one scope."),
        ({"scopes": ["pipelines:read", "root:*"]}, "scopes", "Unknown scope(s): root:*."),
        ({"expires_in_days": "0"}, "expires_in_days", "Enter a number of days from 1 to 3650."),
        ({"expires_in_days": "3651"}, "expires_in_days", "Enter a number of days from 1 to 3650."),
        ({"expires_in_days": "soon"}, "expires_in_days", "Enter a whole number of days from 1 to 3650."),
        ({"expires_in_days": ""}, "expires_in_days", "Enter a number of days, or tick “Never expires”."),
        ({"name": "k" * 101}, "key_name", "Use at most 100 characters."),
        ({"name": "   "}, "key_name", "Give the key a name you will recognise later."),
    ],
)
def test_invalid_key_form_shows_the_message_beside_the_field_and_stores_nothing(
    app, client, tenant, team, login, form, field, message
):
    login(client, team["developer"])
    response = client.post("/api-keys", data=new_key(**form))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert html.unescape(field_error(page, field)).startswith(message)
    assert shown_secret(page) == ""
    assert stored_keys(app, tenant) == []


def test_invalid_key_form_keeps_what_was_typed(client, team, login):
    login(client, team["developer"])
    page = client.post(
        "/api-keys", data=new_key(name="Typed name", scopes=["usage:read"], expires_in_days="0")
    ).get_data(as_text=True)
    assert 'value="Typed name"' in page
    assert '<input type="checkbox" name="scopes" value="usage:read" checked>' in page
    assert '<input type="checkbox" name="scopes" value="admin:*" >' in page


def test_never_expires_ignores_the_days_box(app, client, tenant, team, login):
    login(client, team["developer"])
    create_key(client, expires_in_days="nonsense", never_expires="y")
    [key] = stored_keys(app, tenant)
    assert key.expires_at is None


def test_revoking_needs_a_reason(app, client, tenant, team, login):
    login(client, team["developer"])
    secret = create_key(client)
    response = client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "  "})
    assert "Say why the key is revoked." in flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    assert [key.status for key in stored_keys(app, tenant)] == ["active"]


def test_revoking_twice_says_it_is_already_revoked(app, client, team, login):
    login(client, team["developer"])
    secret = create_key(client)
    url = f"/api-keys/{key_id(app, secret)}/revoke"
    client.post(url, data={"reason": "first"})
    response = client.post(url, data={"reason": "second"})
    assert "This API key is already revoked." in flashes(
        client.get(response.headers["Location"]).get_data(as_text=True)
    )


# --- htmx --------------------------------------------------------------------------------


def test_htmx_create_gets_the_key_and_the_list_as_fragments(client, team, login):
    login(client, team["developer"])
    response = client.post("/api-keys", data=new_key(name="Via htmx"), headers=HTMX)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert '<header class="site' not in page and "<h1>" not in page
    assert page.lstrip().startswith('<section id="create-key">')
    assert shown_secret(page)
    assert '<section id="api-keys-list" hx-swap-oob="true">' in page
    assert shown_keys(page) == {"Via htmx": "active"}


def test_htmx_invalid_create_gets_the_form_fragment_with_messages(app, client, tenant, team, login):
    login(client, team["developer"])
    response = client.post("/api-keys", data=new_key(scopes=[]), headers=HTMX)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.lstrip().startswith('<section id="create-key">') and "api-keys-list" not in page
    assert field_error(page, "scopes") == "Choose at least one scope."
    assert stored_keys(app, tenant) == []


def test_boosted_navigation_gets_the_whole_page(client, team, login):
    login(client, team["viewer"])
    page = client.get("/api-keys", headers={**HTMX, "HX-Boosted": "true"}).get_data(as_text=True)
    assert "<header" in page and "<h1>API keys</h1>" in page


def test_htmx_revoke_redirects_with_hx_redirect(app, client, team, login):
    login(client, team["developer"])
    secret = create_key(client)
    response = client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "x"}, headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/api-keys"


# --- other tenants, suspended tenants ----------------------------------------------------


def test_another_tenants_key_is_not_found_and_stays_active(app, client, make_tenant, make_user, team, login):
    other = make_tenant(company_name="Other Co")
    other_client = app.test_client()
    login(other_client, make_user(other, role="admin"))
    secret = create_key(other_client, name="Theirs")
    login(client, team["owner"])
    assert client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "mine"}).status_code == 404
    assert [key.status for key in stored_keys(app, other)] == ["active"]
    page = client.get("/api-keys").get_data(as_text=True)
    assert "Theirs" not in page and shown_keys(page) == {}


def test_suspended_tenant_sees_its_keys_but_cannot_create_or_revoke(app, client, make_tenant, make_user, login):
    tenant = make_tenant(company_name="Paused Co")
    developer = make_user(tenant, role="developer")
    login(client, developer)
    secret = create_key(client, name="Before")
    with app.app_context():
        from portal.models import Tenant

        db.session.get(Tenant, tenant.tenant_id).status = "suspended"
        db.session.get(Tenant, tenant.tenant_id).suspension_reason = "payment_failed"
        db.session.commit()
    assert shown_keys(client.get("/api-keys").get_data(as_text=True)) == {"Before": "active"}
    assert client.post("/api-keys", data=new_key(name="After")).status_code == 403
    assert client.post(f"/api-keys/{key_id(app, secret)}/revoke", data={"reason": "x"}).status_code == 403
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(ApiKey)
                .where(ApiKey.tenant_id == tenant.tenant_id, ApiKey.revoked_at.is_(None))
            )
            == 1
        )
