"""The OpenAPI 3.1 document of ``/api/v1``, built from ``OPERATIONS``, and its viewer.

Every route of the API is declared with ``operation(...)``, which records its method, rule,
auth, scope, pydantic models, status and errors; this module turns those records into the
document, so an endpoint cannot exist without being described (tests/test_openapi.py
checks both directions).
"""

import re

from flask import current_app, render_template, url_for
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from portal.api.registry import OPERATIONS, OPERATOR, PUBLIC, TENANT, Operation, bp, operation
from portal.api.schemas.common import Query
from portal.errors import HTTP_ERROR_CODES

VIEWER_VERSION = "5.35.0"  # swagger-ui-dist, vendored under static/vendor/swagger-ui-<version>/
MAX_BODY_NOTE = "Request bodies larger than MAX_CONTENT_LENGTH ({limit} bytes) get 413."
REF = "#/components/schemas/{model}"
_FLASK_PARAM = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_]\w*)>")
_CONVERTER_TYPES = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}


class FieldError(BaseModel):
    field: str | None
    message: str


class ErrorEnvelope(BaseModel):
    """Seed 000's error body, for every 4xx and 5xx of the API."""

    detail: str
    error_code: str
    timestamp: str
    request_id: str
    errors: list[FieldError] | None = None


class RateLimitedEnvelope(ErrorEnvelope):
    """The error body of a 429, with the wait in seconds (also in ``Retry-After``)."""

    retry_after_seconds: int


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, a body that is not an object, a field that fails validation, or "
    "a query parameter the endpoint does not know, sends twice or gets under two of its names "
    "(`VALIDATION_ERROR` with `errors` per field).",
    401: "No credentials (`UNAUTHORIZED`), or an invalid, expired or revoked key (`INVALID_API_KEY`).",
    403: "Wrong kind of credential, another tenant's id (`Access denied`), a missing scope "
    "(`INSUFFICIENT_SCOPE`) or a suspended tenant (`CUSTOMER_SUSPENDED`).",
    404: "No such tenant or object (`RESOURCE_NOT_FOUND`); objects of other tenants are not found either.",
    409: "The request conflicts with the current state (`CONFLICT`), or onboards a tenant_id that exists "
    "(`DUPLICATE_TENANT_ID`).",
    413: "The request body is too large (`PAYLOAD_TOO_LARGE`).",
    415: "The body is not JSON (`UNSUPPORTED_MEDIA_TYPE`): send `Content-Type: application/json`.",
    429: "Rate limit of the key exceeded (`RATE_LIMIT_EXCEEDED`); wait `Retry-After` seconds.",
    500: "Unexpected server error (`INTERNAL_ERROR`); quote the `request_id` to support.",
}

_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests allowed in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "When the window resets (Unix time, seconds).", "schema": {"type": "integer"}},
}
_REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID echoed, or a generated one.",
        "schema": {"type": "string"},
    },
}


def openapi_path(rule: str) -> str:
    """``/tenants/<tenant_id>`` -> ``/tenants/{tenant_id}``."""
    return _FLASK_PARAM.sub(lambda m: "{" + m.group("name") + "}", rule)


def _path_parameters(rule: str) -> list[dict]:
    parameters = []
    for match in _FLASK_PARAM.finditer(rule):
        schema = dict(_CONVERTER_TYPES.get(match.group("converter") or "", {"type": "string"}))
        parameters.append({"name": match.group("name"), "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(model: type[Query], schemas: dict) -> list[dict]:
    """One parameter per field under its own name, then one per other name it is accepted under."""
    schema = schemas[model.__name__]
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    parameters, aliases = [], []
    for own, *others in model.parameter_names().values():
        prop = dict(properties[own])
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter = {"name": own, "in": "query", "required": own in required, "schema": prop}
        if description or others:
            also = f"Also accepted as {', '.join(f'`{name}`' for name in others)}." if others else ""
            parameter["description"] = " ".join(part for part in (description, also) if part)
        parameters.append(parameter)
        for name in others:
            aliases.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": prop,
                    "description": f"Another name for `{own}` (send one of them).",
                }
            )
    return parameters + aliases


def _error_statuses(op: Operation) -> list[int]:
    # 400 everywhere: any endpoint refuses query parameters it does not know.
    # 401 everywhere: a public endpoint refuses a credential that is sent but invalid.
    statuses = set(op.errors) | {400, 401}
    if op.auth == OPERATOR or op.scope or "<tenant_id>" in op.rule:
        statuses.add(403)
    if _FLASK_PARAM.search(op.rule):
        statuses.add(404)
    if op.body is not None:
        statuses.update({413, 415})
    statuses.update({429, 500})
    statuses.discard(op.status)
    return sorted(statuses)


def _security(op: Operation) -> list[dict]:
    if op.auth == PUBLIC:
        return []
    if op.auth == OPERATOR:
        return [{"OperatorToken": []}]
    scopes = [op.scope] if op.scope else []
    return [{"ApiKeyHeader": scopes}, {"ApiKeyBearer": scopes}, {"OperatorToken": []}]


def _description(op: Operation) -> str:
    lines = [op.description] if op.description else []
    lines.append(
        {
            PUBLIC: "Auth: none (public). A credential that is sent must be valid (else 401 `INVALID_API_KEY`).",
            OPERATOR: "Auth: operator token (`Authorization: Bearer`).",
            TENANT: "Auth: a key of this tenant (`X-API-Key` or `Authorization: Bearer`) or an operator token.",
        }[op.auth]
    )
    if op.scope:
        lines.append(f"Scope: `{op.scope}`.")
    if op.auth == TENANT and "<tenant_id>" in op.rule and not op.allowed_when_suspended:
        lines.append("Refused with 403 `CUSTOMER_SUSPENDED` while the tenant is suspended.")
    return "\n\n".join(lines)


def _responses(op: Operation) -> dict:
    success_headers = {**_REQUEST_ID_HEADER, **_RATE_LIMIT_HEADERS}
    success: dict = {"description": "Success.", "headers": success_headers}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}}
    responses = {str(op.status): success}
    for status in _error_statuses(op):
        envelope = RateLimitedEnvelope if status == 429 else ErrorEnvelope
        headers = dict(_REQUEST_ID_HEADER)
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
                "required": True,
            }
            headers.update(_RATE_LIMIT_HEADERS)
        responses[str(status)] = {
            "description": _ERROR_DESCRIPTIONS.get(status, HTTP_ERROR_CODES.get(status, "Error")),
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=envelope.__name__)}}},
        }
    return responses


def _component_schemas(operations: list[Operation]) -> dict:
    """One JSON Schema per model (requests in validation mode, responses in serialization mode)."""
    models: dict[tuple[type[BaseModel], str], None] = {}
    for op in operations:
        for model in (op.body, op.query):
            if model is not None:
                models[(model, "validation")] = None
        if op.response is not None:
            models[(op.response, "serialization")] = None
    models[(ErrorEnvelope, "serialization")] = None
    models[(RateLimitedEnvelope, "serialization")] = None
    _, document = models_json_schema(list(models), ref_template=REF)
    schemas = document.get("$defs", {})
    names = {model.__name__ for model, _ in models}
    clashes = names - set(schemas)
    # A model used both as input and output with different shapes gets -Input/-Output names
    # from pydantic; the registry never does that, and the $refs above rely on plain names.
    assert not clashes, f"models need distinct request and response classes: {sorted(clashes)}"
    return schemas


def build_document(operations: list[Operation] | None = None, *, max_content_length: int | None = None) -> dict:
    """The OpenAPI 3.1 document for ``operations`` (all registered ones by default)."""
    operations = OPERATIONS if operations is None else operations
    schemas = _component_schemas(operations)
    paths: dict[str, dict] = {}
    for op in operations:
        parameters = _path_parameters(op.rule)
        if op.query is not None:
            parameters += _query_parameters(op.query, schemas)
        item = {
            "operationId": op.endpoint,
            "summary": op.summary,
            "description": _description(op),
            "tags": op.tags or ["api"],
            "security": _security(op),
            "x-auth": op.auth,
            "responses": _responses(op),
        }
        if op.scope:
            item["x-scope"] = op.scope
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            body_schema = schemas[op.body.__name__]
            item["requestBody"] = {
                "required": bool(body_schema.get("required")),
                "content": {"application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
            }
        paths.setdefault(bp.url_prefix + openapi_path(op.rule), {})[op.method.lower()] = item
    limit = max_content_length
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tenant portal API",
            "version": "1",
            "description": (
                "The JSON API of the tenant self-service portal. Errors use one envelope "
                "(`detail`, `error_code`, `timestamp`, `request_id`, `errors` on validation). "
                "Rate limits per key by plan; every response carries `X-Request-ID` and "
                "`X-RateLimit-*` headers. " + (MAX_BODY_NOTE.format(limit=limit) if limit else "")
            ).strip(),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "A tenant API key (`<tenant_id>_api_<secret>`).",
                },
                "ApiKeyBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant API key sent as `Authorization: Bearer <key>`.",
                },
                "OperatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An operator API token, or the PORTAL_ADMIN_TOKEN bootstrap token.",
                },
            },
        },
    }


@operation("GET", "/openapi.json", auth=PUBLIC, tags=["meta"], summary="This OpenAPI document")
def openapi_document(principal):
    return build_document(max_content_length=current_app.config.get("MAX_CONTENT_LENGTH"))


# The viewer lives at /api/docs, outside the blueprint's /api/v1 prefix. It runs under the
# site's strict CSP (script-src and style-src 'self'): Swagger UI 5 sets styles through the
# CSSOM only, which that policy allows; checked in Chromium with a securitypolicyviolation
# listener (tests/browser/test_api_docs.py).
def api_docs():
    """Swagger UI over /api/v1/openapi.json (vendored, no CDN)."""
    return render_template(
        "api/docs.html",
        viewer=f"vendor/swagger-ui-{VIEWER_VERSION}",
        spec_url=url_for("api.openapi_document"),
    )


@bp.record_once
def _register_docs(state) -> None:
    state.app.add_url_rule("/api/docs", endpoint="api_docs", view_func=api_docs)
