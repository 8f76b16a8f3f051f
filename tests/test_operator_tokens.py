"""Operator API tokens in the console: only operators see them, a new token is shown once,
works as a Bearer token on the operator API and stops working when revoked."""

import html
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import OperatorToken
from portal.security import hash_token
from tests.conftest import HTMX, field_error


def shown_secret(page: str) -> str:
    match = re.search(r'value="([^"]+)"\s+readonly[^>]*data-testid="secret-value"', page)
    return html.unescape(match.group(1)) if match else ""


def shown_tokens(page: str) -> dict[str, str]:
    """token name -> status badge, as the list shows them."""
    rows = re.findall(r'<tr data-testid="token-row" data-token-id="[^"]+" data-name="([^"]+)">(.*?)</tr>', page, re.S)
    return {html.unescape(name): re.search(r'class="badge badge-\w+">(\w+)<', row).group(1) for name, row in rows}


def stored_tokens(app) -> list[OperatorToken]:
    with app.app_context():
        return list(db.session.execute(select(OperatorToken)).scalars())


def token_id(app, secret: str) -> str:
    with app.app_context():
        return db.session.execute(
            select(OperatorToken.id).where(OperatorToken.token_hash == hash_token(secret))
        ).scalar_one()


@pytest.fixture
def operator(client, make_operator, login):
    member = make_operator()
    login(client, member)
    return member


def create_token(client, name="billing sync") -> str:
    response = client.post("/admin/tokens", data={"name": name})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    secret = shown_secret(response.get_data(as_text=True))
    assert secret
    return secret


def test_tenant_owner_gets_not_found_for_operator_tokens(app, client, make_tenant, make_user, login):
    tenant = make_tenant()
    login(client, make_user(tenant, role="owner"))
    assert client.get("/admin/tokens").status_code == 404
    assert client.post("/admin/tokens", data={"name": "sneaky"}).status_code == 404
    assert stored_tokens(app) == []
    assert "API tokens" not in client.get("/overview").get_data(as_text=True)


def test_operator_cannot_be_revoked_by_a_non_operator(app, client, make_operator, make_tenant, make_user, login):
    op_client = app.test_client()
    login(op_client, make_operator())
    secret = create_token(op_client)
    login(client, make_user(make_tenant(), role="owner"))
    assert client.post(f"/admin/tokens/{token_id(app, secret)}/revoke").status_code == 404
    assert [token.is_active for token in stored_tokens(app)] == [True]


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/admin/tokens")
    assert response.status_code == 302 and "/signin" in response.headers["Location"]


def test_tokens_page_lists_nothing_yet_and_explains_the_bootstrap_token(client, operator):
    page = client.get("/admin/tokens").get_data(as_text=True)
    assert "<h1>Operator API tokens</h1>" in page
    assert 'aria-current="page">API tokens</a>' in page
    assert "No operator tokens yet." in page
    assert "<code>PORTAL_ADMIN_TOKEN</code> environment variable remains a bootstrap token" in " ".join(page.split())


def test_new_token_is_shown_once_and_only_its_hash_is_stored(app, client, operator):
    response = client.post("/admin/tokens", data={"name": "billing sync"})
    page = response.get_data(as_text=True)
    secret = shown_secret(page)
    assert re.fullmatch(r"opt_[A-Za-z0-9_-]{43}", secret)
    assert "Copy it now: this is the only time it is shown." in page and 'data-copy-target="#new-secret"' in page
    assert response.headers["Cache-Control"] == "no-store"
    [token] = stored_tokens(app)
    assert token.token_hash == hash_token(secret) and secret.startswith(token.prefix) and token.prefix != secret
    with client.session_transaction() as session:
        assert secret not in repr(dict(session))

    later = client.get("/admin/tokens").get_data(as_text=True)
    assert secret not in later and shown_secret(later) == ""
    assert f"{token.prefix}…" in later
    assert shown_tokens(later) == {"billing sync": "active"}


def test_token_works_as_bearer_on_the_operator_api_until_revoked(app, client, operator):
    secret = create_token(client)
    api = app.test_client()
    listing = api.get("/api/v1/admin/tenants", headers={"Authorization": f"Bearer {secret}"})
    assert listing.status_code == 200, listing.get_data(as_text=True)
    assert "never" not in re.search(
        r'data-name="billing sync">(.*?)</tr>', client.get("/admin/tokens").get_data(as_text=True), re.S
    ).group(1)

    response = client.post(f"/admin/tokens/{token_id(app, secret)}/revoke")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [token] = stored_tokens(app)
    assert f"The token “billing sync” ({token.prefix}…) was revoked." in html.unescape(page)
    assert shown_tokens(page) == {"billing sync": "revoked"}
    denied = api.get("/api/v1/admin/tenants", headers={"Authorization": f"Bearer {secret}"})
    assert denied.status_code == 401


def test_revoking_twice_says_it_is_already_revoked(app, client, operator):
    url = f"/admin/tokens/{token_id(app, create_token(client))}/revoke"
    client.post(url)
    page = client.get(client.post(url).headers["Location"]).get_data(as_text=True)
    assert "This token is already revoked." in page


def test_unknown_token_is_not_found(client, operator):
    assert client.post("/admin/tokens/opt_nope/revoke").status_code == 404


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the token a name."),
        ("t" * 101, "Use at most 100 characters."),
    ],
)
def test_invalid_token_name_shows_a_message_and_stores_nothing(app, client, operator, name, message):
    response = client.post("/admin/tokens", data={"name": name})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert field_error(page, "name") == message
    assert shown_secret(page) == "" and stored_tokens(app) == []


def test_htmx_create_gets_the_token_and_the_list_as_fragments(client, operator):
    response = client.post("/admin/tokens", data={"name": "via htmx"}, headers=HTMX)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and '<header class="site' not in page
    assert page.lstrip().startswith('<section id="create-token">') and shown_secret(page)
    assert '<section id="tokens-list" hx-swap-oob="true">' in page
    assert shown_tokens(page) == {"via htmx": "active"}


def test_htmx_invalid_create_gets_the_form_fragment(app, client, operator):
    page = client.post("/admin/tokens", data={"name": ""}, headers=HTMX).get_data(as_text=True)
    assert page.lstrip().startswith('<section id="create-token">') and "tokens-list" not in page
    assert field_error(page, "name") == "Give the token a name."
    assert stored_tokens(app) == []
