"""Seed 000's contract where a client meets it first: the error codes it names, a credential
that is sent but wrong, the optional contact email, when Retry-After is sent, and query
parameters (the seeds' names accepted, unknown ones refused) on every endpoint."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.api.openapi import build_document
from portal.api.registry import OPERATIONS, OPERATOR, PUBLIC
from portal.extensions import db
from portal.models import EmailMessage, Invitation, Invoice, Tenant, utcnow
from tests.api_support import assert_envelope, bearer, count, fetch, issue_key, operator_token, send_json, with_key
from tests.conftest import make_app, unique

ONBOARD = {"company_name": "ACME Corporation", "contact_email": "admin@acmecorp.com", "subscription_plan": "starter"}


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


def _concrete(rule: str, tenant_id: str) -> str:
    """A Flask rule with its placeholders filled: the tenant's id, else a made-up id."""
    path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?tenant_id>", tenant_id, rule)
    return "/api/v1" + re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"made_up_\1", path)


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


# --- 7: a credential that is sent must be valid, public endpoints included ---------------


@pytest.mark.parametrize(
    "headers", [{"Authorization": "Bearer not-a-real-token"}, {"X-API-Key": "acme_api_not_a_real_key"}]
)
def test_public_onboarding_with_an_invalid_credential_is_401_not_an_anonymous_sign_up(
    client, app, monkeypatch, headers
):
    monkeypatch.setitem(app.config, "API_PUBLIC_ONBOARDING", True)
    body = dict(ONBOARD, tenant_id=unique("badtoken"))
    error = assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=headers), 401, "INVALID_API_KEY")
    assert error["detail"] == "API key is invalid, expired or revoked."
    assert fetch(app, Tenant, body["tenant_id"]) is None
    # Not a 400 for the fields an operator never meant to send either.
    assert_envelope(client.post("/api/v1/tenants/onboard", json={}, headers=headers), 401, "INVALID_API_KEY")


def test_every_endpoint_refuses_an_invalid_key_with_401_invalid_api_key(client, make_tenant):
    tenant = make_tenant()
    for op in OPERATIONS:
        path = _concrete(op.rule, tenant.tenant_id)
        for headers in ({"X-API-Key": "nope"}, bearer("nope")):
            assert_envelope(_call(client, op, path, headers), 401, "INVALID_API_KEY")


def test_a_revoked_key_on_a_public_endpoint_is_401(client, app, make_tenant):
    tenant = make_tenant()
    key, plaintext = issue_key(app, tenant)
    assert client.get("/api/v1/openapi.json", headers=with_key(plaintext)).status_code == 200
    with app.app_context():
        db.session.get(type(key), key.id).revoked_at = utcnow()
        db.session.commit()
    assert_envelope(client.get("/api/v1/openapi.json", headers=with_key(plaintext)), 401, "INVALID_API_KEY")
    assert client.get("/api/v1/openapi.json").status_code == 200  # without a credential: public


def test_the_document_says_public_endpoints_may_answer_401(client):
    document = client.get("/api/v1/openapi.json").get_json()
    onboard = document["paths"]["/api/v1/tenants/onboard"]["post"]
    assert "401" in onboard["responses"] and "INVALID_API_KEY" in onboard["description"]


# --- 8: contact_email is optional --------------------------------------------------------


def test_onboarding_without_a_contact_email_sends_no_invitation_and_says_so(client, app, op):
    body = {"tenant_id": unique("nocontact"), "company_name": "Quiet Corp"}
    response = client.post("/api/v1/tenants/onboard", json=body, headers=op)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["owner_invitation"] is None
    assert "No owner invitation was sent: no contact_email was given." in data["message"]
    assert count(app, Invitation, tenant_id=body["tenant_id"]) == 0
    assert count(app, EmailMessage, tenant_id=body["tenant_id"]) == 0
    # The key works and the tenant reads back with no contact.
    tenant = client.get(f"/api/v1/tenants/{body['tenant_id']}", headers=with_key(data["api_key"])).get_json()
    assert tenant["contact_email"] is None and tenant["company_name"] == "Quiet Corp"


def test_a_tenant_without_a_contact_email_is_suspended_with_notify_and_no_email(client, app, op):
    tenant_id = unique("nocontact")
    client.post("/api/v1/tenants/onboard", json={"tenant_id": tenant_id, "company_name": "Quiet"}, headers=op)
    notify = {"reason": "payment_failed", "notify_customer": True}
    assert client.post(f"/api/v1/tenants/{tenant_id}/suspend", json=notify, headers=op).status_code == 200
    activate = {"notify_customer": True}
    assert client.post(f"/api/v1/tenants/{tenant_id}/activate", json=activate, headers=op).status_code == 200
    assert count(app, EmailMessage, tenant_id=tenant_id) == 0
    # Once the operator sets one, it is the tenant's contact.
    patched = client.patch(f"/api/v1/tenants/{tenant_id}", json={"contact_email": "later@quiet.example"}, headers=op)
    assert patched.get_json()["contact_email"] == "later@quiet.example"


def test_a_failed_payment_of_a_tenant_with_no_contact_and_no_members_emails_nobody(client, app, op):
    from portal.billing.payments.dunning import payment_failed
    from portal.infra.transactions import commit

    tenant_id = unique("nocontact")
    client.post("/api/v1/tenants/onboard", json={"tenant_id": tenant_id, "company_name": "Quiet"}, headers=op)
    with app.test_request_context():
        invoice = db.session.execute(select(Invoice).filter_by(tenant_id=tenant_id, status="open")).scalar_one()
        assert invoice.billing_email == ""
        payment_failed(invoice, "Your card was declined.", utcnow())
        commit()
        failures = invoice.payment_failures
    assert failures == 1
    assert count(app, EmailMessage, tenant_id=tenant_id) == 0


def test_the_operator_console_shows_a_tenant_without_a_contact_email(client, app, op, make_operator, login):
    tenant_id = unique("nocontact")
    client.post("/api/v1/tenants/onboard", json={"tenant_id": tenant_id, "company_name": "Quiet"}, headers=op)
    console = app.test_client()
    login(console, make_operator())
    page = console.get(f"/admin/tenants/{tenant_id}")
    assert page.status_code == 200
    assert "contact none" in page.get_data(as_text=True)


def test_onboarding_with_an_invalid_contact_email_is_still_400(client, op):
    body = dict(ONBOARD, tenant_id=unique("bademail"), contact_email="not-an-email")
    error = assert_envelope(client.post("/api/v1/tenants/onboard", json=body, headers=op), 400, "VALIDATION_ERROR")
    assert error["errors"][0]["field"] == "contact_email"


# --- 9: Retry-After only when the client has to wait ---------------------------------------


@pytest.fixture
def limited_app(database_url):
    return make_app(database_url, RATELIMIT_ENABLED=True)


def test_retry_after_is_sent_with_429_only_not_on_answered_requests(limited_app, app, make_tenant):
    from tests.api_support import limit_tenant_to

    tenant = make_tenant()
    limit_tenant_to(app, tenant, per_minute=2)
    _, plaintext = issue_key(app, tenant)
    client = limited_app.test_client()
    ok = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    denied = client.get("/api/v1/tenants/someone_else", headers=with_key(plaintext))
    assert (ok.status_code, denied.status_code) == (200, 403)
    for response in (ok, denied):
        assert "X-RateLimit-Remaining" in response.headers
        assert "Retry-After" not in response.headers
    limited = client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=with_key(plaintext))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 61


def test_retry_after_is_not_sent_by_unthrottled_pages_either(limited_app):
    response = limited_app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and "Retry-After" not in response.headers


# --- 10: query parameters -------------------------------------------------------------------


def _events(client, op, tenant, count_: int):
    start = utcnow()  # not before the tenant's first billing period, which starts now
    batch = [
        {
            "tenant_id": tenant.tenant_id,
            "eventIdempotencyKey": f"e{i}",
            "eventName": "pipeline_run" if i % 2 == 0 else "compute_usage",
            "occurredAt": (start + timedelta(seconds=i)).isoformat(),
        }
        for i in range(count_)
    ]
    response = send_json(client, "post", "/api/v1/events/batch", {"events": batch}, op)
    assert response.get_json()["accepted"] == count_
    return start


def _refs(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [event["ref"] for event in response.get_json()["events"]]


def test_events_query_takes_seed_003_names(client, op, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    start = _events(client, op, tenant, 6)
    _events(client, op, other, 2)
    mine = f"customerAlias={tenant.tenant_id}"
    assert _refs(client.get(f"/api/v1/events?{mine}", headers=op)) == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert _refs(client.get(f"/api/v1/events?{mine}&limit=1", headers=op)) == ["e0"]
    assert _refs(client.get(f"/api/v1/events?{mine}&limit=2&cursor=2", headers=op)) == ["e2", "e3"]
    assert _refs(client.get(f"/api/v1/events?{mine}&eventName=compute_usage", headers=op)) == ["e1", "e3", "e5"]
    window = (
        f"startTime={(start + timedelta(seconds=2)).isoformat()}&endTime={(start + timedelta(seconds=4)).isoformat()}"
    )
    window = window.replace("+00:00", "Z")
    assert _refs(client.get(f"/api/v1/events?{mine}&{window}", headers=op)) == ["e2", "e3"]
    page = client.get(f"/api/v1/events?{mine}&limit=1", headers=op).get_json()["pagination"]
    assert page["page_size"] == 1 and page["has_next"] is True


def test_an_unknown_customer_alias_is_not_found_never_every_tenants_events(client, op, make_tenant):
    _events(client, op, make_tenant(), 1)
    error = assert_envelope(client.get("/api/v1/events?customerAlias=nobody", headers=op), 404, "RESOURCE_NOT_FOUND")
    assert error["detail"] == "Customer not found"


def test_an_unknown_query_parameter_is_400_naming_it_and_the_known_ones(client, op):
    error = assert_envelope(client.get("/api/v1/events?foo=1", headers=op), 400, "VALIDATION_ERROR")
    assert error["detail"] == (
        "Unknown query parameter 'foo'. Known: page (or cursor), page_size (or limit), start_time (or startTime), "
        "end_time (or endTime), event_name (or eventName), tenant_id (or customerAlias)."
    )
    assert error["errors"] == [{"field": "foo", "message": "Unknown query parameter."}]
    error = assert_envelope(client.get("/api/v1/admin/tenants?pagesize=5&Status=x", headers=op), 400)
    assert error["detail"].startswith("Unknown query parameters 'pagesize', 'Status'. Known: page (or cursor),")


def test_an_endpoint_without_query_parameters_refuses_any(client, app, make_tenant):
    tenant = make_tenant()
    _, plaintext = issue_key(app, tenant)
    error = assert_envelope(
        client.get(f"/api/v1/tenants/{tenant.tenant_id}?expand=all", headers=with_key(plaintext)),
        400,
        "VALIDATION_ERROR",
    )
    assert error["detail"] == "Unknown query parameter 'expand'. This endpoint takes no query parameters."


def test_every_endpoint_refuses_an_unknown_query_parameter(client, app, make_tenant):
    tenant = make_tenant()
    _, key = issue_key(app, tenant)
    operator = bearer(operator_token(app))
    for op in OPERATIONS:
        headers = {} if op.auth == PUBLIC else operator if op.auth == OPERATOR else with_key(key)
        path = _concrete(op.rule, tenant.tenant_id) + "?no_such_parameter=1"
        error = assert_envelope(_call(client, op, path, headers), 400, "VALIDATION_ERROR")
        assert error["detail"].startswith("Unknown query parameter 'no_such_parameter'."), (op.method, op.rule)


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("page=1&page=2", "Query parameter 'page' is sent more than once."),
        ("limit=1&page_size=2", "Send limit or page_size, not both: they are the same parameter."),
        ("startTime=x&start_time=y", "Send startTime or start_time, not both: they are the same parameter."),
        ("limit=500", "limit: Input should be less than or equal to 100"),
        ("cursor=next", "cursor: Input should be a valid integer, unable to parse string as an integer"),
        ("startTime=soon", "startTime: use an ISO 8601 date and time with a timezone, e.g. 2025-11-17T14:00:00Z"),
        (f"{'x' * 60}=1", f"Unknown query parameter '{'x' * 40}…'."),
    ],
)
def test_query_mistakes_are_named_in_the_clients_words(client, op, query, detail):
    error = assert_envelope(client.get(f"/api/v1/events?{query}", headers=op), 400, "VALIDATION_ERROR")
    assert error["detail"].startswith(detail), error["detail"]


def test_the_document_names_the_seed_names_of_the_events_query_without_offering_both():
    # Both names of one parameter are refused together, which OpenAPI cannot say of two
    # parameters: a generated client knows one name, and reads of the other in its description.
    parameters = build_document()["paths"]["/api/v1/events"]["get"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    for own, seed in [
        ("page", "cursor"),
        ("page_size", "limit"),
        ("start_time", "startTime"),
        ("end_time", "endTime"),
        ("event_name", "eventName"),
        ("tenant_id", "customerAlias"),
    ]:
        assert seed not in by_name
        assert f"`{seed}`" in by_name[own]["description"] and "never two" in by_name[own]["description"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/invoices?tenant_id=a%00b", "/api/v1/events?customerAlias=a%00b", "/api/v1/events?event_name=x%00"],
)
def test_a_nul_character_in_a_query_parameter_is_a_400_not_a_500(client, op, path):
    response = client.get(path, headers=op)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error_code"] == "VALIDATION_ERROR" and "NUL character" in body["detail"]


# --- HTTP by the book: 405 with Allow, and every credential sent must be valid -------------


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("TRACE", "/api/v1/entitlements", {"POST"}),
        ("PUT", "/api/v1/tenants/onboard", {"POST"}),
        ("GET", "/api/v1/events/batch", {"POST"}),
        ("DELETE", "/api/v1/plans", {"GET", "HEAD"}),
    ],
)
def test_a_method_a_path_does_not_take_is_405_with_allow_and_the_envelope(client, op, method, path, allowed):
    response = client.open(path, method=method, headers=op)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert {name.strip() for name in response.headers["Allow"].split(",")} - {"OPTIONS"} == allowed


def test_a_sibling_paths_word_is_not_read_as_an_id(client, op):
    # /events/batch is POST only: a GET there is not "the event whose ref is batch".
    assert client.get("/api/v1/events/batch", headers=op).status_code == 405
    assert client.get("/api/v1/tenants/onboard", headers=op).status_code == 405
    allow = client.options("/api/v1/events/dry-run", headers=op).headers["Allow"]
    assert "GET" not in allow and "DELETE" not in allow


@pytest.fixture
def tenant_and_key(app, make_tenant):
    tenant = make_tenant()
    return tenant, issue_key(app, tenant)[1]


@pytest.mark.parametrize("valid", ["operator", "tenant key"])
def test_a_valid_credential_beside_an_invalid_one_is_401_whichever_is_which(client, app, tenant_and_key, valid):
    tenant, key = tenant_and_key
    if valid == "operator":
        headers = {**bearer(operator_token(app)), "X-API-Key": "acme_api_not_a_real_key"}
    else:
        headers = {**with_key(key), "Authorization": "Bearer opt_not_a_real_token"}
    error = assert_envelope(client.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=headers), 401, "INVALID_API_KEY")
    assert "send one valid credential" in error["detail"]
    before = count(app, Tenant)
    onboard = dict(ONBOARD, tenant_id=unique("twocreds"))
    assert_envelope(client.post("/api/v1/tenants/onboard", json=onboard, headers=headers), 401, "INVALID_API_KEY")
    assert count(app, Tenant) == before


def test_two_valid_credentials_of_different_callers_are_401_and_the_same_one_twice_is_served(
    client, app, tenant_and_key
):
    tenant, key = tenant_and_key
    path = f"/api/v1/tenants/{tenant.tenant_id}"
    mixed = {**with_key(key), **bearer(operator_token(app))}
    assert_envelope(client.get(path, headers=mixed), 401, "INVALID_API_KEY")
    assert client.get(path, headers={**with_key(key), **bearer(key)}).status_code == 200
