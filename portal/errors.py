"""Errors raised by services, and how each front door shows them.

Services raise these; portal views turn them into a flash or a form message, the JSON
API into seed 000's envelope. Anything else is a bug and becomes a friendly 500.
"""

import logging
import secrets
import time

from flask import jsonify, make_response, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from portal.extensions import db, limiter
from portal.models import utcnow

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refusal; the API answers it with ``status_code`` and ``error_code``, which a subclass
    names in its class line: ``class NotFound(ServiceError, status=404, code="RESOURCE_NOT_FOUND")``."""

    status_code = 400
    error_code = "BAD_REQUEST"

    def __init_subclass__(cls, status: int | None = None, code: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.error_code = code

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(ServiceError, status=400, code="VALIDATION_ERROR"): ...


class PermissionDenied(ServiceError, status=403, code="FORBIDDEN"): ...


class NotFound(ServiceError, status=404, code="RESOURCE_NOT_FOUND"): ...


class Conflict(ServiceError, status=409, code="CONFLICT"): ...


class DuplicateTenantId(Conflict, code="DUPLICATE_TENANT_ID"):
    """Seed 000's own code for onboarding a tenant_id that is taken."""


class TenantSuspended(ServiceError, status=403, code="CUSTOMER_SUSPENDED"): ...


HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


REQUEST_ID_KEY = "portal.request_id"


def request_id_of(environ: dict) -> str:
    """The request's id, kept in its WSGI environ (where the response's headers find it, see
    ``portal.web``): the client's X-Request-ID when it is short and printable, never junk
    reflected; otherwise a new one."""
    found = environ.get(REQUEST_ID_KEY)
    if found is None:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        if incoming and len(incoming) <= 100 and incoming.isprintable():
            found = incoming
        else:
            found = f"req_{secrets.token_hex(8)}"
        environ[REQUEST_ID_KEY] = found
    return found


def request_id() -> str:
    return request_id_of(request.environ)


def json_error(
    status: int, detail: str, error_code: str | None = None, errors=None, retry_after: int | None = None, **extra
):
    """Seed 000's error envelope. ``retry_after``: the seconds to wait, in the body
    (``retry_after_seconds``) and in ``Retry-After``, which only a 429 or a 503 keeps."""
    body = {
        "detail": detail,
        "error_code": error_code or HTTP_ERROR_CODES.get(status, "ERROR"),
        "timestamp": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request_id": request_id(),
    }
    if errors:
        body["errors"] = errors
    if retry_after is not None:
        body["retry_after_seconds"] = retry_after
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def error_page(status: int, message: str | None):
    """The error page in the layout; an htmx request gets it as the whole page too."""
    response = make_response(render_template("errors/error.html", status=status, message=message), status)
    if request.headers.get("HX-Request"):
        # A fragment request would otherwise paste the page into a form, or drop it.
        response.headers["HX-Retarget"] = "body"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def _rate_limited():
    current = limiter.current_limit
    # Flask-Limiter rewrites Retry-After as int(reset_at - now); compute it the same way so
    # the header and retry_after_seconds agree.
    retry = max(int(current.reset_at - time.time()), 1) if current else 60
    return json_error(
        429, f"Rate limit exceeded. Try again in {retry} seconds.", "RATE_LIMIT_EXCEEDED", retry_after=retry
    )


# SQLSTATE classes of database failures that pass: a connection lost (08), a transaction rolled
# back by a deadlock or a serialization failure (40), too many connections (53), a shutdown or a
# statement timeout (57); and a lock not obtained in time (55P03).
PASSING_SQLSTATES = ("08", "40", "53", "57", "55P03")
UNAVAILABLE_RETRY_SECONDS = 5


def database_unavailable(error: Exception) -> bool:
    """The database could not serve this request but may serve the next: a pooled connection
    dropped under a statement (a restart, a failover, a network fault), no server to connect to,
    a deadlock, a busy SQLite file. The transaction was rolled back, or was the one statement,
    so the client may retry; anything else (a bad statement, a constraint) is a bug."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    if hasattr(original, "sqlite_errorname"):
        return original.sqlite_errorname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is None:
        # The driver raised it without the server's word: it could not connect, or lost the server.
        return isinstance(error, OperationalError)
    return sqlstate.startswith(PASSING_SQLSTATES)


def _unavailable():
    """Seed 000's 503, with how long to wait. Retrying is safe: a transaction that met the
    failure was rolled back, and an event's one statement is idempotent by its key."""
    message = f"The service is briefly unavailable. Please try again in {UNAVAILABLE_RETRY_SECONDS} seconds."
    if _wants_json():
        return json_error(503, message, retry_after=UNAVAILABLE_RETRY_SECONDS)
    response = error_page(503, message)
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
    return response


def _logged_path() -> str:
    """The route's rule, not the path: a reset, invitation or email confirmation link carries
    its live token in the path, and logs must hold nothing usable."""
    return request.url_rule.rule if request.url_rule is not None else request.path


def register_error_handlers(app) -> None:
    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError):
        if _wants_json():
            errors = getattr(error, "errors", None)
            if errors is None and error.field:
                errors = [{"field": error.field, "message": error.message}]
            return json_error(error.status_code, error.message, error.error_code, errors)
        return error_page(error.status_code, error.message)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        status = error.code or 500
        if _wants_json():
            if status == 429:
                return _rate_limited()
            response = json_error(status, error.description or error.name)
        else:
            if status == 400 and "CSRF" in (error.description or ""):
                message = "Your form expired or was sent from elsewhere. Reload the page and try again."
            else:
                message = error.description
            response = error_page(status, message)
        # The exception's own headers (a 405's Allow, which RFC 9110 requires; a 401's
        # WWW-Authenticate) belong on whichever body we render instead of werkzeug's.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return handle_http_error(error)
        if database_unavailable(error):
            # Not a bug: logged without the statement and its parameters, which carry user data.
            log.warning(
                "Database unavailable on %s %s (request %s): %s %s",
                request.method,
                _logged_path(),
                request_id(),
                type(error.orig).__name__,
                getattr(error.orig, "sqlstate", None) or "",
            )
            db.session.rollback()
            return _unavailable()
        log.exception("Unhandled error on %s %s (request %s)", request.method, _logged_path(), request_id())

        db.session.rollback()
        if _wants_json():
            return json_error(500, "Internal server error. Quote the request_id when contacting support.")
        return error_page(500, None)
