"""The OpenAPI 3.1 document of ``/api/v1``, built from ``OPERATIONS``, and its viewer.

Every route of the API is declared with ``operation(...)``, which records its method, rule,
auth, scope, pydantic models, status and errors; this module turns those records into the
document, so an endpoint cannot exist without being described (tests/test_openapi.py
checks both directions).
"""

import re

import email_validator
from flask import current_app, render_template, url_for
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from werkzeug.routing import parse_converter_args

from portal.api.registry import EVENT_PAYLOADS, OPERATIONS, OPERATOR, PUBLIC, TENANT, Operation, bp, operation
from portal.api.schemas.common import Query
from portal.errors import HTTP_ERROR_CODES
from portal.webhooks.catalog import EVENT_TYPES

VIEWER_VERSION = "5.35.0"  # swagger-ui-dist, vendored under static/vendor/swagger-ui-<version>/
MAX_BODY_NOTE = "Request bodies larger than MAX_CONTENT_LENGTH ({limit} bytes) get 413."
REF = "#/components/schemas/{model}"
_FLASK_PARAM = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<arguments>[^)]*)\))?:)?(?P<name>[a-zA-Z_]\w*)>"
)
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
    """The error body of a 429 or a 503, with the wait in seconds (also in ``Retry-After``)."""

    retry_after_seconds: int


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, a body that is not an object, a field that fails validation, or "
    "a query parameter the endpoint does not know, sends twice or gets under two of its names "
    "(`VALIDATION_ERROR` with `errors` per field).",
    401: "No credentials (`UNAUTHORIZED`), or a credential that is invalid, expired or revoked "
    "(`INVALID_API_KEY`): every credential sent (`X-API-Key`, `Authorization: Bearer`) must be valid, "
    "and both name the same caller when both are sent.",
    403: "Wrong kind of credential, another tenant's id (`Access denied`), a missing scope "
    "(`INSUFFICIENT_SCOPE`) or a suspended tenant (`CUSTOMER_SUSPENDED`).",
    404: "No such tenant or object (`RESOURCE_NOT_FOUND`); objects of other tenants are not found either.",
    409: "The request conflicts with the current state (`CONFLICT`), or onboards a tenant_id that exists "
    "(`DUPLICATE_TENANT_ID`).",
    413: "The request body is too large (`PAYLOAD_TOO_LARGE`).",
    405: "The path is another operation's and does not take this method (`METHOD_NOT_ALLOWED`); `Allow` "
    "lists the methods it takes.",
    415: "The body is not JSON (`UNSUPPORTED_MEDIA_TYPE`): send `Content-Type: application/json`.",
    429: "Rate limit of the key exceeded (`RATE_LIMIT_EXCEEDED`); wait `Retry-After` seconds.",
    500: "Unexpected server error (`INTERNAL_ERROR`); quote the `request_id` to support.",
    503: "The database is briefly unavailable (`SERVICE_UNAVAILABLE`): a dropped connection, a failover, a "
    "deadlock; wait `Retry-After` seconds and retry (a rolled-back request changed nothing, an event is "
    "idempotent by its key).",
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


def _refuses_empty(model: type[BaseModel], schema: dict) -> bool:
    """Whether {} is refused: by the model, or by a rule its document states (exactly one of
    some fields, where the model leaves the check to a service)."""
    if any(branch.get("required") for rule in schema.get("allOf", []) for branch in rule.get("oneOf", [])):
        return True
    try:
        model.model_validate({})
    except ValidationError:
        return True
    return False


def _path_names(rule: str) -> set[str]:
    return {match.group("name") for match in _FLASK_PARAM.finditer(rule)}


def _path_parameters(rule: str) -> list[dict]:
    parameters = []
    for match in _FLASK_PARAM.finditer(rule):
        schema = dict(_CONVERTER_TYPES.get(match.group("converter") or "", {"type": "string"}))
        if match.group("converter") == "except":
            excluded, _ = parse_converter_args(match.group("arguments"))
            schema["not"] = {"enum": list(excluded)}
        parameters.append({"name": match.group("name"), "in": "path", "required": True, "schema": schema})
    return parameters


def _query_value_schema(schema: dict) -> dict:
    """A query string carries no null: a field's "or null" and null default mean "left out"."""
    schema = dict(schema)
    if schema.get("default", 0) is None:
        del schema["default"]
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if "anyOf" in schema:
        del schema["anyOf"]
        if len(branches) == 1:
            schema.update(branches[0])
        else:
            schema["anyOf"] = branches
    return schema


def _query_parameters(model: type[Query], schemas: dict) -> list[dict]:
    """One parameter per field under its own name, then one per other name it is accepted under."""
    schema = schemas[model.__name__]
    required = set(schema.get("required", []))
    properties = schema.get("properties", {})
    parameters = []
    for own, *others in model.parameter_names().values():
        prop = _query_value_schema(properties[own])
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter = {"name": own, "in": "query", "required": own in required, "schema": prop}
        # The seeds' other names are accepted but not listed as parameters of their own:
        # OpenAPI cannot say "one of these two, never both", and the server refuses both.
        if description or others:
            also = (
                f"Also accepted as {', '.join(f'`{name}`' for name in others)} (one name per request, never two)."
                if others
                else ""
            )
            parameter["description"] = " ".join(part for part in (description, also) if part)
        parameters.append(parameter)
    return parameters


def _error_statuses(op: Operation) -> list[int]:
    # 400 everywhere: any endpoint refuses query parameters it does not know.
    # 401 everywhere: a public endpoint refuses a credential that is sent but invalid.
    statuses = set(op.errors) | {400, 401}
    if op.auth != PUBLIC:
        # A valid credential that may not do this: a tenant key on an operator-only operation
        # or on another tenant, a missing scope, a suspended tenant.
        statuses.add(403)
    if _FLASK_PARAM.search(op.rule):
        statuses.add(404)
    if any(match.group("converter") == "except" for match in _FLASK_PARAM.finditer(op.rule)):
        # A parameter spelling a sibling path's word ("onboard") is that path, which may not
        # take this method.
        statuses.add(405)
    if op.body is not None:
        statuses.update({413, 415})
    statuses.update({429, 500, 503})
    statuses.difference_update({op.status, *op.also_succeeds})
    return sorted(statuses)


def _security(op: Operation) -> list[dict]:
    if op.auth == PUBLIC:
        return []
    # Two schemes, one per header: a generic client or tool then knows an operator-only
    # operation takes no X-API-Key, and that a tenant key sent as a bearer is a valid
    # credential there, refused with 403 (seed 000: valid key, insufficient permissions).
    if op.auth == OPERATOR:
        return [{"BearerAuth": []}]
    scopes = [op.scope] if op.scope else []
    return [{"ApiKeyHeader": scopes}, {"BearerAuth": scopes}]


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
    if op.auth == TENANT and "tenant_id" in _path_names(op.rule) and not op.allowed_when_suspended:
        lines.append("Refused with 403 `CUSTOMER_SUSPENDED` while the tenant is suspended.")
    return "\n\n".join(lines)


def _responses(op: Operation) -> dict:
    success_headers = {**_REQUEST_ID_HEADER, **_RATE_LIMIT_HEADERS}
    success: dict = {"description": "Success.", "headers": success_headers}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}}
    elif op.media_type is not None:
        success["content"] = {op.media_type: {"schema": {"type": "string", "format": "binary"}}}
    if op.links:
        success["links"] = _links(op)
    responses = {str(op.status): success}
    for status, when in op.also_succeeds.items():
        responses[str(status)] = {**success, "description": f"Success: {when}."}
    for status in _error_statuses(op):
        envelope = RateLimitedEnvelope if status in (429, 503) else ErrorEnvelope
        headers = dict(_REQUEST_ID_HEADER)
        if status == 405:
            headers["Allow"] = {
                "description": "The methods the path takes (RFC 9110).",
                "schema": {"type": "string"},
                "required": True,
            }
        if status in (429, 503):
            headers["Retry-After"] = {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
                "required": True,
            }
        if status == 429:
            headers.update(_RATE_LIMIT_HEADERS)
        responses[str(status)] = {
            "description": _ERROR_DESCRIPTIONS.get(status, HTTP_ERROR_CODES.get(status, "Error")),
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=envelope.__name__)}}},
        }
    return responses


def _links(op: Operation) -> dict:
    targets = {target.endpoint: target for target in OPERATIONS}
    links = {}
    for endpoint, parameters in op.links.items():
        target = targets[endpoint]
        carried = dict(parameters)
        if "tenant_id" in _path_names(op.rule) and "tenant_id" in _path_names(target.rule):
            carried.setdefault("tenant_id", "$request.path.tenant_id")
        links[endpoint] = {"operationId": endpoint, "parameters": carried}
    return links


class ServerRules(GenerateJsonSchema):
    """pydantic's JSON Schema, plus what the same models enforce that it leaves out, so a
    request the document calls valid is one the server takes."""

    def str_schema(self, schema):
        json_schema = super().str_schema(schema)
        if schema.get("strip_whitespace") and schema.get("min_length"):
            # The value is stripped before its length is checked: "  " is refused as empty.
            _add_pattern(json_schema, r"\S")
        return json_schema

    def dict_schema(self, schema):
        json_schema = super().dict_schema(schema)
        if "patternProperties" in json_schema and "additionalProperties" not in json_schema:
            # A key that does not match the key type's pattern is refused, not let through.
            json_schema["additionalProperties"] = False
        return json_schema


def _add_pattern(json_schema: dict, pattern: str) -> None:
    if "pattern" in json_schema:
        json_schema.setdefault("allOf", []).append({"pattern": pattern})
    else:
        json_schema["pattern"] = pattern


def _any_case(word: str) -> str:
    # JSON Schema patterns are ECMA-262: no inline (?i).
    return "".join(f"[{char.upper()}{char.lower()}]" if char.isalpha() else re.escape(char) for char in word)


# email-validator (behind pydantic's EmailStr) refuses addresses at special-use domains
# (RFC 6761: .test, .localhost, ...) that `format: email` alone allows.
_SPECIAL_USE_DOMAIN = {
    "pattern": "@(?:[^@]*\\.)?(?:"
    + "|".join(_any_case(name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    + ")\\.?$"
}


def _email_rules(node) -> None:
    if isinstance(node, dict):
        if node.get("format") == "email" and "not" not in node:
            node["not"] = _SPECIAL_USE_DOMAIN
            node.setdefault(
                "description",
                "An email address; not at a special-use domain ("
                + ", ".join(f".{name}" for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
                + ").",
            )
        for value in node.values():
            _email_rules(value)
    elif isinstance(node, list):
        for value in node:
            _email_rules(value)


def _allows_null(schema: dict) -> bool:
    return schema.get("type") == "null" or any(_allows_null(branch) for branch in schema.get("anyOf", []))


def _component_schemas(operations: list[Operation]) -> dict:
    """One JSON Schema per model (requests in validation mode, responses in serialization mode)."""
    models: dict[tuple[type[BaseModel], str], None] = {}
    for op in operations:
        for model in (op.body, op.query):
            if model is not None:
                models[(model, "validation")] = None
        if op.response is not None:
            models[(op.response, "serialization")] = None
    for model in EVENT_PAYLOADS.values():
        models[(model, "serialization")] = None
    models[(ErrorEnvelope, "serialization")] = None
    models[(RateLimitedEnvelope, "serialization")] = None
    _, document = models_json_schema(list(models), ref_template=REF, schema_generator=ServerRules)
    schemas = document.get("$defs", {})
    _email_rules(schemas)
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            # ``str = None``: may be left out, may not be null (see common.exactly_one_of).
            if "default" in prop and prop["default"] is None and not _allows_null(prop):
                del prop["default"]
    names = {model.__name__ for model, _ in models}
    clashes = names - set(schemas)
    # A model used both as input and output with different shapes gets -Input/-Output names
    # from pydantic; the registry never does that, and the $refs above rely on plain names.
    assert not clashes, f"models need distinct request and response classes: {sorted(clashes)}"
    return schemas


def _payload_model(event_type: str) -> type[BaseModel] | None:
    if event_type in EVENT_PAYLOADS:
        return EVENT_PAYLOADS[event_type]
    prefixes = [prefix for prefix in EVENT_PAYLOADS if prefix.endswith(".") and event_type.startswith(prefix)]
    return EVENT_PAYLOADS[max(prefixes, key=len)] if prefixes else None


_SIGNATURE_HEADERS = [
    ("webhook-id", "The event's id (`event_id`): the same on every retry, so receivers can drop repeats."),
    ("webhook-timestamp", "Seconds since the epoch when this attempt was signed."),
    (
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` under the endpoint's "
        "secret (Standard Webhooks); during a rotation's 24 hours, one signature per secret, space-separated.",
    ),
]


def _webhooks() -> dict:
    """OpenAPI 3.1's ``webhooks``: what the portal POSTs to an endpoint, one entry per event type."""
    parameters = [
        {"name": name, "in": "header", "required": True, "description": about, "schema": {"type": "string"}}
        for name, about in _SIGNATURE_HEADERS
    ]
    found = {}
    for event_type, about in EVENT_TYPES.items():
        model = _payload_model(event_type)
        data = {"$ref": REF.format(model=model.__name__)} if model else {"type": "object"}
        found[event_type] = {
            "post": {
                "operationId": "webhook_" + re.sub(r"\W", "_", event_type),
                "summary": about,
                "tags": ["webhooks"],
                "parameters": parameters,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["event_id", "event_type", "tenant_id", "timestamp", "data"],
                                "properties": {
                                    "event_id": {"type": "string"},
                                    "event_type": {"const": event_type},
                                    "tenant_id": {
                                        "type": ["string", "null"],
                                        "description": "null only for a test event sent to one of the operator's own endpoints.",
                                    },
                                    "timestamp": {"type": "string", "format": "date-time"},
                                    "data": data,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "2XX": {
                        "description": "Received. Any other answer, or none within WEBHOOK_TIMEOUT_SECONDS (10 by default), is retried."
                    }
                },
            }
        }
    return found


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
            item["requestBody"] = {
                # No body is read as {}: required exactly when {} is refused (a required field,
                # or a rule such as exactly_one_of).
                "required": _refuses_empty(op.body, schemas[op.body.__name__]),
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
                "`X-RateLimit-*` headers. A method a path does not list gets 405 with `Allow` "
                "(`#/components/responses/MethodNotAllowed`). No text, in a body or a query, may hold a NUL "
                "character (U+0000): it is refused with 400. " + (MAX_BODY_NOTE.format(limit=limit) if limit else "")
            ).strip(),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas,
            "responses": {
                # Not an operation's response: what any method a path does not list gets.
                "MethodNotAllowed": {
                    "description": "The path exists but not with this method (`METHOD_NOT_ALLOWED`); "
                    "`Allow` lists the methods it takes.",
                    "headers": {
                        "Allow": {
                            "description": "The methods this path takes (RFC 9110).",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        **_REQUEST_ID_HEADER,
                    },
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=ErrorEnvelope.__name__)}}},
                },
            },
            "securitySchemes": {
                "ApiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "A tenant API key (`<tenant_id>_api_<secret>`).",
                },
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <credential>`: a tenant API key, an operator API "
                    "token, or the PORTAL_ADMIN_TOKEN bootstrap token. Operator-only operations take only "
                    "this scheme, with an operator token; a tenant key there gets 403.",
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
