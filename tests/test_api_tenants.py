"""Seed 000's customer endpoints over /api/v1: onboard, read, update, list, suspend, activate;
plus what every API response shares (auth headers, request ids, envelopes, rate limits)."""

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import ApiKey, AuditEvent, Invitation, Tenant, utcnow
from tests.api_support import (
    HOSTILE_JSON,
    assert_envelope,
    bearer,
    count,
    fetch,
    issue_key,
    limit_tenant_to,
    operator_token,
    send_json,
    with_key,
)
from tests.conftest import make_app, unique

SEED_ONBOARD = {
    "tenant_id": "acmeinc_23xv2",
    "company_name": "ACME Corporation",
    "contact_email": "admin@acmecorp.com",
    "subscription_plan": "professional",
    "force_recreate_dataset": False,
    "force_recreate_tables": False,
}
SEED_PATCH = {
    "company_name": "ACME Inc.",
    "contact_email": "newadmin@acmecorp.com",
    "metadata": {"industry": "fintech", "company_size": "200-500"},
}
SEED_SUSPEND = {
    "reason": "payment_failed",
    "notify_customer": True,
    "suspension_note": "Subscription payment failed. Please update payment method.",
}
SEED_ACTIVATE = {"notify_customer": True, "activation_note": "Payment received. Account reactivated."}


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


@pytest.fixture
def tenant_and_key(app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    return tenant, plaintext


# --- onboard -----------------------------------------------------------------------------


def test_onboard_with_an_operator_token_replays_seed_000(client, app, op, outbox):
    body = dict(SEED_ONBOARD, tenant_id=unique("acme"))
    response = client.post("/api/v1/tenants/onboard", json=body, headers=op)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["tenant_id"] == body["tenant_id"]
    assert data["subscription_plan"] == "professional"
    assert data["api_key"].startswith(f"{body['tenant_id']}_api_")
    assert len(data["api_key"]) >= len(body["tenant_id"]) + 5 + 32
    assert "only be shown once" in data["message"]
    invitation = data["owner_invitation"]
    assert invitation["invited_email"] == "admin@acmecorp.com"
    assert invitation["role"] == "owner" and invitation["status"] == "pending"
    assert outbox("admin@acmecorp.com"), "the owner invitation is emailed to contact_email"
    # The key it returns works at once, with every scope.
    me = client.get(f"/api/v1/tenants/{body['tenant_id']}", headers=with_key(data["api_key"]))
    assert me.status_code == 200
    key = fetch(app, ApiKey, data["api_key_id"])
    assert "admin:*" in key.scopes and data["api_key"] not in (key.key_hash, key.prefix)


def test_onboard_with_the_bootstrap_admin_token(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_ADMIN_TOKEN", "bootstrap-" + "x" * 40)
    body = dict(SEED_ONBOARD, tenant_id=unique("boot"))
    response = client.post("/api/v1/tenants/onboard", json=body, headers=bearer("bootstrap-" + "x" * 40))
    assert response.status_code == 200, response.get_json()
    assert fetch(app, Tenant, body["tenant_id"]).company_name == "ACME Corporation"


def test_onboard_without_a_token_is_refused_unless_self_service_is_on(client, app, monkeypatch):
    body = dict(SEED_ONBOARD, tenant_id=unique("anon"))
    assert_envelope(client.post("/api/v1/tenants/onboard", json=body), 403)
    assert fetch(app, Tenant, body["tenant_id"]) is None
    monkeypatch.setitem(app.config, "API_PUBLIC_ONBOARDING", True)
    assert client.post("/api/v1/tenants/onboard", json=body).status_code == 200


def test_onboard_with_a_tenant_key_is_refused(client, app, tenant_and_key):
    _, plaintext = tenant_and_key
    body = dict(SEED_ONBOARD, tenant_id=unique("bykey"))
    assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=with_key(plaintext)), 403)
    assert fetch(app, Tenant, body["tenant_id"]) is None


@pytest.mark.parametrize("flag", ["force_recreate_dataset", "force_recreate_tables"])
def test_onboard_refuses_force_recreate_with_a_clear_400(client, app, op, flag):
    body = dict(SEED_ONBOARD, tenant_id=unique("force"), **{flag: True})
    error = assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=op), 400, "NOT_SUPPORTED")
    assert "not supported" in error["detail"]
    assert fetch(app, Tenant, body["tenant_id"]) is None


def test_onboard_an_existing_tenant_is_409(client, op, make_tenant):
    tenant = make_tenant()
    body = dict(SEED_ONBOARD, tenant_id=tenant.tenant_id)
    error = assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=op), 409)
    assert tenant.tenant_id in error["detail"]
    upper = dict(body, tenant_id=tenant.tenant_id.upper())
    assert_envelope(client.post("/api/v1/tenants/onboard", json=upper, headers=op), 409)


@pytest.mark.parametrize("tenant_id", ["ab", "a" * 51, "acme-inc", "acme inc", "acme\n", "", "ünï_code"])
def test_onboard_with_a_bad_tenant_id_is_400(client, op, tenant_id):
    body = dict(SEED_ONBOARD, tenant_id=tenant_id)
    error = assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=op), 400, "VALIDATION_ERROR")
    assert error["errors"][0]["field"] == "tenant_id"


# --- get / patch -------------------------------------------------------------------------


def test_get_tenant_returns_the_seed_fields(client, tenant_and_key):
    tenant, plaintext = tenant_and_key
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert response.status_code == 200
    data = response.get_json()
    for field in (
        "tenant_id",
        "company_name",
        "contact_email",
        "subscription_plan",
        "status",
        "created_at",
        "updated_at",
        "metadata",
    ):
        assert field in data
    assert data["tenant_id"] == tenant.tenant_id and data["status"] == "active"


@pytest.mark.parametrize("headers", ["x-api-key", "bearer"])
def test_both_auth_headers_work(client, tenant_and_key, headers):
    tenant, plaintext = tenant_and_key
    sent = with_key(plaintext) if headers == "x-api-key" else bearer(plaintext)
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=sent).status_code == 200


def test_operator_token_reads_any_tenant_and_missing_one_is_404(client, op, make_tenant):
    tenant = make_tenant()
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=op).status_code == 200
    error = assert_envelope(client.get("/api/v1/tenants/no_such_tenant", headers=op), 404, "RESOURCE_NOT_FOUND")
    assert error["detail"] == "Customer not found"


def test_no_key_is_401_and_a_wrong_key_is_401_invalid_api_key(client, make_tenant):
    tenant = make_tenant()
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}"), 401, "UNAUTHORIZED")
    wrong = with_key(f"{tenant.tenant_id}_api_" + "x" * 43)
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=wrong), 401, "INVALID_API_KEY")
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=bearer("junk")), 401, "INVALID_API_KEY")


def test_patch_tenant_replays_seed_000(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    response = client.patch(f"/api/v1/tenants/{tenant.tenant_id}", json=SEED_PATCH, headers=with_key(plaintext))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["company_name"] == "ACME Inc."
    assert data["contact_email"] == "newadmin@acmecorp.com"
    assert data["metadata"] == SEED_PATCH["metadata"]
    assert "updated_at" in data
    stored = fetch(app, Tenant, tenant.tenant_id)
    assert stored.company_name == "ACME Inc." and stored.metadata_json == SEED_PATCH["metadata"]


def test_patch_tenant_by_operator_and_partial_update(client, app, op, make_tenant):
    tenant = make_tenant()
    response = client.patch(f"/api/v1/tenants/{tenant.tenant_id}", json={"company_name": "Only Name"}, headers=op)
    assert response.status_code == 200
    stored = fetch(app, Tenant, tenant.tenant_id)
    assert stored.company_name == "Only Name" and stored.contact_email == tenant.contact_email


def test_patch_tenant_needs_admin_scope(client, app, make_tenant):
    tenant = make_tenant()
    _, reader = issue_key(app, tenant, scopes=["pipelines:read", "usage:read"])
    error = assert_envelope(
        client.patch(f"/api/v1/tenants/{tenant.tenant_id}", json=SEED_PATCH, headers=with_key(reader)),
        403,
        "INSUFFICIENT_SCOPE",
    )
    assert "admin:*" in error["detail"]
    assert fetch(app, Tenant, tenant.tenant_id).company_name == tenant.company_name
    # Reading needs no particular scope.
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(reader)).status_code == 200


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_patch_bodies_give_4xx_envelopes_and_change_nothing(client, app, tenant_and_key, payload):
    tenant, plaintext = tenant_and_key
    response = send_json(client, "patch", f"/api/v1/tenants/{tenant.tenant_id}", payload, with_key(plaintext))
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    stored = fetch(app, Tenant, tenant.tenant_id)
    assert (stored.company_name, stored.contact_email, stored.metadata_json) == (
        tenant.company_name,
        tenant.contact_email,
        tenant.metadata_json,
    )


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        ("{not json", "application/json", 400),
        ('{"company_name": "X"}', "text/plain", 415),
        ("company_name=X", "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe\x00garbage", "application/json", 400),
    ],
)
def test_malformed_or_mistyped_bodies_give_envelopes(client, app, tenant_and_key, raw, content_type, status):
    tenant, plaintext = tenant_and_key
    response = client.patch(
        f"/api/v1/tenants/{tenant.tenant_id}", data=raw, content_type=content_type, headers=with_key(plaintext)
    )
    assert_envelope(response, status)
    assert fetch(app, Tenant, tenant.tenant_id).company_name == tenant.company_name


def test_a_body_over_max_content_length_is_413(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    huge = '{"company_name": "' + "x" * (app.config["MAX_CONTENT_LENGTH"] + 10) + '"}'
    response = client.patch(
        f"/api/v1/tenants/{tenant.tenant_id}", data=huge, content_type="application/json", headers=with_key(plaintext)
    )
    assert_envelope(response, 413)
    assert fetch(app, Tenant, tenant.tenant_id).company_name == tenant.company_name


# --- cross-tenant ------------------------------------------------------------------------


def test_a_key_of_tenant_a_naming_tenant_b_is_access_denied(client, app, make_tenant):
    a, b = make_tenant(), make_tenant()
    _, key_a = issue_key(app, a)
    for method, path, body in [
        ("get", f"/api/v1/tenants/{b.tenant_id}", None),
        ("patch", f"/api/v1/tenants/{b.tenant_id}", SEED_PATCH),
        ("get", "/api/v1/tenants/no_such_tenant", None),
    ]:
        response = getattr(client, method)(path, json=body, headers=with_key(key_a))
        assert assert_envelope(response, 403)["detail"] == "Access denied"
    stored = fetch(app, Tenant, b.tenant_id)
    assert stored.company_name == b.company_name and stored.metadata_json == b.metadata_json


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/admin/tenants", None),
        ("post", "/api/v1/tenants/{tid}/suspend", SEED_SUSPEND),
        ("post", "/api/v1/tenants/{tid}/activate", SEED_ACTIVATE),
    ],
)
def test_operator_endpoints_refuse_tenant_keys_even_with_admin_scope(client, app, tenant_and_key, method, path, body):
    tenant, plaintext = tenant_and_key
    response = getattr(client, method)(path.format(tid=tenant.tenant_id), json=body, headers=with_key(plaintext))
    assert_envelope(response, 403)
    assert fetch(app, Tenant, tenant.tenant_id).status == "active"


# --- admin list --------------------------------------------------------------------------


def test_admin_list_paginates_filters_and_searches(client, op, make_tenant):
    marker = unique("zq")
    made = [make_tenant(company_name=f"{marker} Company {i}") for i in range(3)]
    suspended = make_tenant(company_name=f"{marker} Paused", status="suspended")
    response = client.get(f"/api/v1/admin/tenants?search={marker}&page=1&page_size=2", headers=op)
    assert response.status_code == 200
    data = response.get_json()
    assert len(data["tenants"]) == 2
    assert data["pagination"] == {
        "page": 1,
        "page_size": 2,
        "total_items": 4,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    assert set(data["tenants"][0]) >= {"tenant_id", "company_name", "subscription_plan", "status", "created_at"}
    page2 = client.get(f"/api/v1/admin/tenants?search={marker}&page=2&page_size=2", headers=op).get_json()
    ids = {t["tenant_id"] for t in data["tenants"] + page2["tenants"]}
    assert ids == {t.tenant_id for t in made} | {suspended.tenant_id}
    only = client.get(f"/api/v1/admin/tenants?search={marker.upper()}&status=suspended", headers=op).get_json()
    assert [t["tenant_id"] for t in only["tenants"]] == [suspended.tenant_id]
    by_plan = client.get(f"/api/v1/admin/tenants?search={marker}&subscription_plan=enterprise", headers=op)
    assert by_plan.get_json()["tenants"] == []
    by_id = client.get(f"/api/v1/admin/tenants?search={made[0].tenant_id}&status=all", headers=op).get_json()
    assert [t["tenant_id"] for t in by_id["tenants"]] == [made[0].tenant_id]


@pytest.mark.parametrize(
    "query",
    [
        "page_size=101",
        "page_size=0",
        "page=0",
        "page=abc",
        "status=deleted",
        "subscription_plan=gold",
        "search=" + "x" * 101,
    ],
)
def test_admin_list_refuses_bad_query_parameters(client, op, query):
    assert_envelope(client.get(f"/api/v1/admin/tenants?{query}", headers=op), 400, "VALIDATION_ERROR")


def test_admin_list_search_treats_wildcards_literally(client, op, make_tenant):
    make_tenant()
    data = client.get("/api/v1/admin/tenants?search=%25", headers=op).get_json()
    assert all("%" in t["tenant_id"] + t["company_name"] for t in data["tenants"])


# --- suspend / activate ------------------------------------------------------------------


def test_suspend_and_activate_replay_seed_000(client, app, op, make_tenant, outbox):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    response = client.post(f"/api/v1/tenants/{tenant.tenant_id}/suspend", json=SEED_SUSPEND, headers=op)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["tenant_id"] == tenant.tenant_id and data["status"] == "suspended"
    assert data["suspension_reason"] == "payment_failed" and data["suspended_at"] and data["message"]
    assert outbox(tenant.contact_email), "notify_customer sends an email"
    # The suspended tenant's key still reads its own tenant, but nothing else.
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).status_code == 200
    assert_envelope(
        client.patch(f"/api/v1/tenants/{tenant.tenant_id}", json=SEED_PATCH, headers=with_key(plaintext)),
        403,
        "CUSTOMER_SUSPENDED",
    )
    assert_envelope(client.post(f"/api/v1/tenants/{tenant.tenant_id}/suspend", json=SEED_SUSPEND, headers=op), 409)

    response = client.post(f"/api/v1/tenants/{tenant.tenant_id}/activate", json=SEED_ACTIVATE, headers=op)
    assert response.status_code == 200
    data = response.get_json()
    assert data["status"] == "active" and data["activated_at"] and data["message"]
    assert fetch(app, Tenant, tenant.tenant_id).status == "active"
    assert_envelope(client.post(f"/api/v1/tenants/{tenant.tenant_id}/activate", json=SEED_ACTIVATE, headers=op), 409)


@pytest.mark.parametrize(
    "payload", [{"reason": "bored"}, {}, {"reason": "payment_failed", "notify_customer": "yes"}] + HOSTILE_JSON
)
def test_suspend_refuses_bad_bodies_and_changes_nothing(client, app, op, make_tenant, payload):
    tenant = make_tenant()
    response = send_json(client, "post", f"/api/v1/tenants/{tenant.tenant_id}/suspend", payload, op)
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)
    assert fetch(app, Tenant, tenant.tenant_id).status == "active"


def test_suspend_an_unknown_tenant_is_404(client, op):
    assert_envelope(client.post("/api/v1/tenants/no_such_one/suspend", json=SEED_SUSPEND, headers=op), 404)


# --- shared behaviour --------------------------------------------------------------------


def test_api_changes_are_audited_with_the_key_as_actor(client, app, make_tenant):
    tenant = make_tenant()
    key, plaintext = issue_key(app, tenant, name="Deploy bot")
    client.patch(
        f"/api/v1/tenants/{tenant.tenant_id}", json={"company_name": "Audited Co"}, headers=with_key(plaintext)
    )
    with app.app_context():
        event_ = db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="tenant.updated").one()
        assert "Deploy bot" in event_.actor_label and key.prefix in event_.actor_label
        assert event_.actor_user_id is None


def test_a_signed_in_browser_session_neither_authenticates_nor_follows_api_calls(
    client, tenant_and_key, make_user, login
):
    tenant, plaintext = tenant_and_key
    login(client, make_user(tenant, role="owner"))
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}"), 401, "UNAUTHORIZED")
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.vary
    assert client.get("/overview").status_code == 200  # still signed in to the portal


def test_request_id_is_echoed_or_generated(client, tenant_and_key):
    tenant, plaintext = tenant_and_key
    echoed = client.get(
        f"/api/v1/tenants/{tenant.tenant_id}", headers={**with_key(plaintext), "X-Request-ID": "client-42"}
    )
    assert echoed.headers["X-Request-ID"] == "client-42"
    generated = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert generated.headers["X-Request-ID"].startswith("req_")
    error = client.get("/api/v1/tenants/other_one", headers={**with_key(plaintext), "X-Request-ID": "client-43"})
    assert error.get_json()["request_id"] == "client-43"


def test_last_used_at_is_set_on_use_but_not_rewritten_within_a_minute(client, app, make_tenant):
    from datetime import timedelta

    tenant = make_tenant()
    key, plaintext = issue_key(app, tenant)
    assert fetch(app, ApiKey, key.id).last_used_at is None
    client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    first = fetch(app, ApiKey, key.id).last_used_at
    assert first is not None and utcnow() - first < timedelta(seconds=30)

    recent = utcnow() - timedelta(seconds=30)
    with app.app_context():
        db.session.get(ApiKey, key.id).last_used_at = recent
        db.session.commit()
    client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert fetch(app, ApiKey, key.id).last_used_at == recent

    with app.app_context():
        db.session.get(ApiKey, key.id).last_used_at = utcnow() - timedelta(minutes=2)
        db.session.commit()
    client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert utcnow() - fetch(app, ApiKey, key.id).last_used_at < timedelta(seconds=30)


def test_authenticated_get_tenant_takes_at_most_three_sql_statements(client, app, tenant_and_key):
    tenant, plaintext = tenant_and_key
    statements = []

    def count_statement(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))  # sets last_used_at
    event.listen(engine, "before_cursor_execute", count_statement)
    try:
        response = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    finally:
        event.remove(engine, "before_cursor_execute", count_statement)
    assert response.status_code == 200
    # One SELECT (the key, its tenant joined), or none when the key cache (Redis) answered;
    # the issue allows three.
    assert len(statements) <= 1, statements


def test_unknown_api_route_is_a_json_404(client, tenant_and_key):
    _, plaintext = tenant_and_key
    assert_envelope(client.get("/api/v1/tenants/x/nothing/here", headers=with_key(plaintext)), 404)


# --- rate limits -------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url):
    return make_app(database_url, RATELIMIT_ENABLED=True)


def test_api_responses_carry_rate_limit_headers(limited_app, app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = limited_app.test_client()
    first = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    second = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert first.status_code == second.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "100"  # starter plan, seed 000
    assert int(first.headers["X-RateLimit-Remaining"]) == 99
    assert int(second.headers["X-RateLimit-Remaining"]) == 98
    assert int(first.headers["X-RateLimit-Reset"]) > utcnow().timestamp() - 5
    # Errors are counted and carry the headers too.
    denied = client.get("/api/v1/tenants/someone_else", headers=with_key(plaintext))
    assert denied.status_code == 403 and "X-RateLimit-Remaining" in denied.headers


def test_the_limit_is_the_one_of_the_plan_version_the_tenant_subscribes_to(limited_app, app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    client = limited_app.test_client()
    assert (
        client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).headers["X-RateLimit-Limit"]
        == "100"
    )
    limit_tenant_to(app, tenant, per_minute=42)  # a plan change is seen by the very next request
    assert (
        client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).headers["X-RateLimit-Limit"]
        == "42"
    )


def test_exceeding_the_rate_limit_is_429_with_retry_after(limited_app, app, make_tenant):
    tenant = make_tenant()
    limit_tenant_to(app, tenant, per_minute=3)
    _, plaintext = issue_key(app, tenant)
    client = limited_app.test_client()
    for _ in range(3):
        assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)).status_code == 200
    response = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    body = assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= body["retry_after_seconds"] <= 61
    # Both are computed from the window's reset time; they differ only if a second ticks in between.
    assert abs(int(response.headers["Retry-After"]) - body["retry_after_seconds"]) <= 1
    assert response.headers["X-RateLimit-Remaining"] == "0"
    # Limits are per key: another key of the same tenant is not affected.
    _, other = issue_key(app, tenant)
    assert client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(other)).status_code == 200


def test_revoked_and_expired_keys_are_401_invalid_api_key(client, app, make_tenant):
    from datetime import timedelta

    tenant = make_tenant()
    revoked, revoked_plain = issue_key(app, tenant)
    expired, expired_plain = issue_key(app, tenant)
    with app.app_context():
        db.session.get(ApiKey, revoked.id).revoked_at = utcnow()
        db.session.get(ApiKey, expired.id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    for plaintext in (revoked_plain, expired_plain):
        assert_envelope(
            client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)), 401, "INVALID_API_KEY"
        )


def test_cancelled_tenant_is_not_found_for_its_own_key(client, app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    with app.app_context():
        db.session.get(Tenant, tenant.tenant_id).status = "cancelled"
        db.session.commit()
    assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext)), 404)
    assert count(app, Invitation, tenant_id=tenant.tenant_id) == 0
