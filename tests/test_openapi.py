"""The OpenAPI document: valid, in step with the routes, and true of the running API.

The schemathesis run sends generated requests (valid and invalid) to every operation of the
in-process app with real credentials, and fails on any 5xx or any response the document
does not describe (status code, body schema, content type, headers).
"""

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import portal.api  # noqa: F401
import portal.api.credentials  # noqa: F401  (register every operation)
from portal.api import billing, credits, invitations, keys, members, openapi, tenants  # noqa: F401
from portal.api.openapi import build_document, openapi_path
from portal.api.registry import OPERATIONS, OPERATOR, PUBLIC, TENANT, bp
from portal.models import ADMIN_SCOPE

ADMIN_TOKEN = "operator-bootstrap-token-for-openapi-tests"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, op


def test_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_served_document_is_the_one_built_from_the_registry(app, document):
    assert document == build_document(max_content_length=app.config["MAX_CONTENT_LENGTH"])


def test_every_api_route_is_documented_and_every_documented_operation_is_routed(app, document):
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{bp.name}."):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routed.add((method, openapi_path(rule.rule)))
    documented = {(method, path) for method, path, _ in _operations(document)}
    assert routed == documented
    assert len(OPERATIONS) == len(documented)


def test_every_operation_states_its_auth_errors_and_success(document):
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"ApiKeyHeader", "BearerAuth"}
    assert schemes["BearerAuth"]["type"] == "http" and schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyHeader"]["description"],
    }
    for method, path, op in _operations(document):
        where = f"{method} {path}"
        assert op["x-auth"] in (PUBLIC, OPERATOR, TENANT), where
        assert op["summary"] and op["operationId"], where
        assert "Auth:" in op["description"], where
        names = {name for requirement in op["security"] for name in requirement}
        if op["x-auth"] == PUBLIC:
            assert op["security"] == [], where
        elif op["x-auth"] == OPERATOR:
            # Only the bearer scheme: a tool must not offer X-API-Key where no tenant key may act.
            assert op["security"] == [{"BearerAuth": []}], where
            assert "401" in op["responses"] and "403" in op["responses"], where
        else:
            assert names == {"ApiKeyHeader", "BearerAuth"}, where
            # A valid credential without permission (another tenant, a missing scope) is 403.
            assert "401" in op["responses"] and "403" in op["responses"], where
        if op.get("x-scope"):
            assert {"ApiKeyHeader": [op["x-scope"]]} in op["security"], where
            assert {"BearerAuth": [op["x-scope"]]} in op["security"], where
        success = [code for code in op["responses"] if code.startswith("2")]
        assert success, where
        # More than one success status only when the others say when they are given.
        descriptions = sorted(op["responses"][code]["description"] for code in success)
        assert descriptions[0] == "Success." and all(d.startswith("Success: ") for d in descriptions[1:]), where
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]["$ref"]
                # A 429 and a 503 say how long to wait, in the body and in Retry-After.
                assert schema.endswith("/RateLimitedEnvelope" if code in ("429", "503") else "/ErrorEnvelope"), where
                assert "X-Request-ID" in response["headers"], where
        assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
            op["responses"]["429"]["headers"]
        ), where
        assert set(op["responses"]["503"]["headers"]) == {"Retry-After", "X-Request-ID"}, where
        for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
            assert "{" + name + "}" in path, where


def test_the_error_envelope_in_the_document_matches_a_real_error(client, document):
    response = client.get("/api/v1/tenants/nobody_here", headers={"X-API-Key": "nope"})
    assert response.status_code == 401
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"detail", "error_code", "timestamp", "request_id"}
    assert set(response.get_json()) <= set(envelope["properties"])


def test_api_docs_page_loads_the_vendored_viewer_and_this_document(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f"/static/vendor/swagger-ui-{openapi.VIEWER_VERSION}/swagger-ui-bundle.js" in html
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    assert "<script>" not in html  # initialised from static/api-docs.js: the CSP allows no inline script
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/static/vendor/swagger-ui-{openapi.VIEWER_VERSION}/{asset}").status_code == 200


# --- schemathesis ------------------------------------------------------------------------

schema = schemathesis.openapi.from_dict(build_document())
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def credentials(app, make_tenant, make_user):
    """An operator token, a tenant with a key holding every scope, and ids worth aiming at."""
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key
    from portal.billing.invoices import for_tenant
    from portal.credentials.services import add_credential
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.invitations.services import create_invitation

    previous_token = app.config.get("PORTAL_ADMIN_TOKEN")
    app.config["PORTAL_ADMIN_TOKEN"] = ADMIN_TOKEN
    tenant = make_tenant()
    developer = make_user(tenant=tenant, role="developer")
    with app.test_request_context():
        _, plaintext = create_key(SYSTEM, tenant, "schemathesis", scopes=[ADMIN_SCOPE])
        spare, _ = create_key(SYSTEM, tenant, "spare", scopes=None)
        _, invitation_token = create_invitation(SYSTEM, tenant, "invitee@example.com", "viewer")
        credential = add_credential(
            SYSTEM,
            tenant,
            "aws",
            "access_key",
            "schemathesis",
            {
                "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "region": "us-east-1",
                "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            },
        )
        commit()
        # make_tenant starts the starter plan, whose first invoice is issued at once.
        invoice = db.session.execute(for_tenant(tenant)).scalars().first()
    yield {
        "key": plaintext,
        # Per test, so which cases aim at real ids does not depend on the tests run before.
        "counter": itertools.count(),
        "path": {
            "tenant_id": tenant.tenant_id,
            "key_id": spare.id,
            "user_id": developer.user.id,
            "token": invitation_token,
            "credential_id": credential.id,
            "invoice_id": invoice.id,
        },
    }
    app.config["PORTAL_ADMIN_TOKEN"] = previous_token


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case, app, credentials):
    """No generated request gets a 5xx or a response the document does not describe."""
    raw = case.operation.definition.raw
    # Two in three requests aim at real objects, so the handlers run past the 403/404 guards.
    aim = next(credentials["counter"]) % 3 != 0
    if aim and case.path_parameters:
        for name in case.path_parameters:
            if name in credentials["path"]:
                case.path_parameters[name] = credentials["path"][name]
    headers = {}
    if raw["x-auth"] == TENANT:
        headers["X-API-Key"] = credentials["key"]
    elif raw["x-auth"] == OPERATOR or raw["operationId"] == "onboard":
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
