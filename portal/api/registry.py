"""One decorator per endpoint: authenticate, authorise, parse, and describe it for OpenAPI.

Every route of the API is declared with ``operation(...)``; the OpenAPI document is built
from the same declarations (``portal.api.openapi``), so the two cannot drift apart.
"""

import inspect
import re
from dataclasses import dataclass, field
from functools import partial, wraps

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.routing import BaseConverter

from portal.api.principal import CACHED_AUTH_ENDPOINTS, Principal, credentials_presented, current_principal
from portal.api.schemas.common import Query
from portal.errors import NotFound, PermissionDenied, ServiceError, TenantSuspended
from portal.extensions import db
from portal.models import ADMIN_SCOPE, Tenant

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class SegmentExceptConverter(BaseConverter):
    """A path segment other than its sibling paths' words: ``/events/<except("batch"):ref>``.
    Without it ``/events/batch`` is also ``/events/<ref>``: a GET there would read an event
    whose ref is "batch", and OPTIONS and a 405's ``Allow`` would list methods the document
    does not give that path."""

    def __init__(self, url_map, *excluded: str):
        super().__init__(url_map)
        self.excluded = excluded
        self.regex = f"(?!(?:{'|'.join(re.escape(word) for word in excluded)})(?![^/]))[^/]+"


# Recorded before any rule, so the converter is known when the rules are added to the app.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("except", SegmentExceptConverter))

PUBLIC = "public"
OPERATOR = "operator"
TENANT = "tenant"  # a tenant key (of that tenant) or an operator token


class ApiError(ServiceError):
    """An API-only error with its own code (401 INVALID_API_KEY, 415, ...)."""

    def __init__(self, status: int, error_code: str, message: str, errors: list | None = None):
        super().__init__(message)
        self.status_code = status
        self.error_code = error_code
        self.errors = errors


@dataclass
class Operation:
    method: str
    rule: str
    endpoint: str
    summary: str
    auth: str
    scope: str | None
    body: type[BaseModel] | None
    query: type[Query] | None
    response: type[BaseModel] | None
    status: int
    tags: list[str]
    allowed_when_suspended: bool
    description: str = ""
    errors: list[int] = field(default_factory=list)
    links: dict[str, dict[str, str]] = field(default_factory=dict)
    also_succeeds: dict[int, str] = field(default_factory=dict)
    # A success that is a file, not JSON: its media type (the view returns the Response).
    media_type: str | None = None


OPERATIONS: list[Operation] = []
# Event type, or a prefix ending in "." -> the model of that event's ``data`` (for the
# document's ``webhooks`` section; the outbox's serializers produce those shapes).
EVENT_PAYLOADS: dict[str, type[BaseModel]] = {}


def _authenticate(auth: str) -> Principal | None:
    principal = current_principal()
    if principal is None and credentials_presented():
        # On every endpoint, public ones included: a caller whose key is wrong must hear so,
        # not be served as anonymous (a public sign-up, a 400 for fields it never meant to send).
        detail = "API key is invalid, expired or revoked."
        if credentials_presented() > 1:
            detail = (
                "A credential sent is invalid, expired or revoked, or X-API-Key and Authorization name "
                "different callers: send one valid credential."
            )
        raise ApiError(401, "INVALID_API_KEY", detail)
    if auth == PUBLIC:
        return principal
    if principal is None:
        raise ApiError(401, "UNAUTHORIZED", "Authentication required: send X-API-Key or Authorization: Bearer.")
    if auth == OPERATOR and not principal.is_operator:
        raise PermissionDenied("This endpoint needs an operator token.")
    return principal


def _tenant_for(principal: Principal | None, tenant_id: str, scope: str | None, allowed_when_suspended: bool) -> Tenant:
    if principal is not None and not principal.is_operator:
        key = principal.api_key
        if key.tenant_id != tenant_id:
            # Seed 000: another tenant's id is "Access denied", whether it exists or not.
            raise PermissionDenied("Access denied")
        if scope and not key.allows(scope):
            raise ApiError(403, "INSUFFICIENT_SCOPE", f"This API key lacks the scope {scope}.")
        tenant = key.tenant
    else:
        tenant = db.session.get(Tenant, tenant_id)
        if tenant is None:
            raise ApiError(404, "RESOURCE_NOT_FOUND", "Customer not found")
    if tenant.status == "cancelled" and (principal is None or not principal.is_operator):
        raise ApiError(404, "RESOURCE_NOT_FOUND", "Customer not found")
    if tenant.is_suspended and not allowed_when_suspended and not principal.is_operator:
        raise TenantSuspended("Customer account is suspended")
    return tenant


def _parse_body(model: type[BaseModel]) -> BaseModel:
    if request.content_length == 0 or (not request.get_data() and request.method in ("POST", "PATCH")):
        payload = {}
    else:
        if not request.is_json:
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as JSON with Content-Type: application/json.")
        payload = request.get_json(silent=True)
        if payload is None:
            raise ApiError(400, "MALFORMED_JSON", "The request body is not valid JSON.")
    if not isinstance(payload, dict):
        raise ApiError(400, "VALIDATION_ERROR", "The request body must be a JSON object.")
    if (where := _nul_in(payload)) is not None:
        # PostgreSQL stores no NUL in text: refused here, for every body, naming where it is.
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"{where or 'The body'} contains a NUL character.",
            [{"field": where or None, "message": "Contains a NUL character."}],
        )
    return _validate(model, _integral_numbers_as_ints(payload))


def _nul_in(value, where: str = "") -> str | None:
    """The dotted path of the first text (value or key) holding a NUL, if any."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        if (found := _nul_in(item, path)) is not None:
            return found
    return None


def _integral_numbers_as_ints(value):
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema's "integer" says so too), so
    an integer field takes it; a number field takes an int as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {name: _integral_numbers_as_ints(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_integral_numbers_as_ints(item) for item in value]
    return value


def _shown(name: str) -> str:
    return f"'{name}'" if len(name) <= 40 else f"'{name[:40]}…'"


def _parse_query(model: type[Query] | None) -> Query | None:
    """The query string, on every endpoint: a parameter the endpoint does not know, or one sent
    twice or under two of its names, is a 400 naming it, never silently ignored."""
    if not request.args:  # most calls: nothing to check, the model's defaults
        return _validate(model, {}) if model is not None else None
    accepted = model.parameter_names() if model is not None else {}
    field_of = {name: field for field, names in accepted.items() for name in names}
    unknown = [name for name in request.args if name not in field_of]
    if unknown:
        listed = ", ".join(_shown(name) for name in unknown[:5])
        known = ", ".join(
            f"{names[0]} (or {', '.join(names[1:])})" if names[1:] else names[0] for names in accepted.values()
        )
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {listed}. "
            + (f"Known: {known}." if known else "This endpoint takes no query parameters."),
            [{"field": name, "message": "Unknown query parameter."} for name in unknown],
        )
    sent: dict[str, list[str]] = {}
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise ApiError(400, "VALIDATION_ERROR", f"Query parameter {_shown(name)} is sent more than once.")
        sent.setdefault(field_of[name], []).append(name)
    for names in sent.values():
        if len(names) > 1:
            raise ApiError(
                400, "VALIDATION_ERROR", f"Send {names[0]} or {names[1]}, not both: they are the same parameter."
            )
    for name, value in request.args.items():
        # No value of ours holds a NUL, and PostgreSQL refuses one in any query: say so here,
        # once for every endpoint, rather than a 500 wherever a lookup forgot to.
        if "\x00" in value:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Query parameter {_shown(name)} contains a NUL character.",
                [{"field": name, "message": "Contains a NUL character."}],
            )
    return _validate(model, request.args.to_dict()) if model is not None else None


def _validate(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = [
            {
                "field": ".".join(str(part) for part in item["loc"]) or None,
                # A validator's own message is already in the client's words.
                "message": item["msg"].removeprefix("Value error, "),
            }
            for item in error.errors(include_url=False, include_input=False)
        ]
        first = errors[0]
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        raise ApiError(400, "VALIDATION_ERROR", detail, errors) from None


def _json_response(model: BaseModel, status: int) -> Response:
    # pydantic writes the JSON itself, in Rust: turning the model into dicts for Flask's
    # provider to encode in Python cost an entitlement check a twentieth of its CPU.
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def operation(
    method: str,
    rule: str,
    *,
    summary: str | None = None,
    auth: str = TENANT,
    scope: str | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    tags: list[str] | None = None,
    allowed_when_suspended: bool = False,
    description: str = "",
    errors: list[int] | None = None,
    cached_auth: bool = False,
    links: dict[str, dict[str, str]] | None = None,
    also_succeeds: dict[int, str] | None = None,
    media_type: str | None = None,
):
    """Register an API endpoint. The view gets ``principal``, ``tenant`` (when the rule has
    ``<tenant_id>``), ``body`` and ``query`` as keyword arguments: the request's body and query
    string parsed into the models those parameters are annotated with (``body: schemas.CancelIn``).
    It returns the response model its return annotation names (dumped as JSON with ``status``);
    a view that returns something else (a model and another status, a dict, a Response) names
    its model with ``response``. The first line of its docstring is the summary, the rest
    (its lines joined) the description, unless ``summary`` or ``description`` says otherwise.
    ``errors``: the error statuses the document cannot tell from the rest (409, a 404 of an
    object the path does not name); every operation lists 400 and 401, a non-public one 403,
    one with a path parameter 404, one with a body 413 and 415.
    ``cached_auth``: a write that may authenticate from the per-process credential cache, as
    reads do (see ``portal.api.principal.CACHED_AUTH_ENDPOINTS``).
    ``links``: OpenAPI links from this operation's success to others, by operationId (the
    view's name): ``{"revoke_api_key": {"key_id": "$response.body#/api_key_id"}}``; a
    ``tenant_id`` in both rules is carried over on its own. Clients and schemathesis's
    stateful phase follow them to use what this operation created.
    ``also_succeeds``: other success statuses with the same body, and when: ``{200: "a repeat"}``.
    ``media_type``: the success is a file of that type (``application/pdf``), not a JSON body."""

    def decorator(view):
        signature = inspect.signature(view)
        parameters = signature.parameters
        body = parameters["body"].annotation if "body" in parameters else None
        query = parameters["query"].annotation if "query" in parameters else None
        returns = signature.return_annotation
        first, _, rest = (inspect.getdoc(view) or "").partition("\n")

        @wraps(view)
        def wrapper(**path):
            principal = _authenticate(auth)
            if scope and principal is not None and not principal.is_operator and "tenant_id" not in path:
                if not principal.api_key.allows(scope):
                    raise ApiError(403, "INSUFFICIENT_SCOPE", f"This API key lacks the scope {scope}.")
            kwargs = dict(path)
            kwargs["principal"] = principal
            if "tenant_id" in path:
                kwargs["tenant"] = _tenant_for(principal, kwargs.pop("tenant_id"), scope, allowed_when_suspended)
            parsed_query = _parse_query(query)
            if query is not None:
                kwargs["query"] = parsed_query
            if body is not None:
                kwargs["body"] = _parse_body(body)
            result = view(**kwargs)
            if isinstance(result, tuple) and isinstance(result[0], BaseModel):
                return _json_response(result[0], result[1])
            if isinstance(result, BaseModel):
                return _json_response(result, status)
            return result if not isinstance(result, dict) else (result, status)

        endpoint = view.__name__
        bp.add_url_rule(rule, endpoint=endpoint, view_func=wrapper, methods=[method])
        if cached_auth:
            CACHED_AUTH_ENDPOINTS.add(f"{bp.name}.{endpoint}")
        OPERATIONS.append(
            Operation(
                method=method,
                rule=rule,
                endpoint=endpoint,
                summary=summary or first,
                auth=auth,
                scope=scope,
                body=body,
                query=query,
                response=response
                or (returns if isinstance(returns, type) and issubclass(returns, BaseModel) else None),
                status=status,
                tags=tags or [],
                description=description or " ".join(line.strip() for line in rest.strip().splitlines()),
                allowed_when_suspended=allowed_when_suspended,
                errors=errors or [],
                links=links or {},
                also_succeeds=also_succeeds or {},
                media_type=media_type,
            )
        )
        return wrapper

    return decorator


# The operator's own endpoints, listed together under "operator".
operator_operation = partial(operation, auth=OPERATOR, tags=["operator"])


def require_admin_scope(principal: Principal | None) -> None:
    """Seed 000's "customer API key (with admin scope)" endpoints."""
    if principal is not None and not principal.is_operator and not principal.api_key.allows(ADMIN_SCOPE):
        raise ApiError(403, "INSUFFICIENT_SCOPE", f"This API key lacks the scope {ADMIN_SCOPE}.")


def not_found(what: str = "Resource"):
    raise NotFound(f"{what} not found")
