"""Page-or-fragment rendering, htmx-aware redirects and the security headers."""

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for

from portal.errors import ServiceError, request_id_of
from portal.extensions import htmx
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback

T = TypeVar("T")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'self'; "
    "object-src 'none'; frame-ancestors 'none'"
)


def public_url(endpoint: str, **values) -> str:
    """An absolute link for emails, from PUBLIC_BASE_URL; works outside a request (jobs, CLI)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)


def wants_fragment() -> bool:
    """htmx asked for a piece of a page (a boosted navigation wants the whole page)."""
    return bool(htmx) and not htmx.boosted


def render(page_template: str, fragment: str | None = None, status: int = 200, **context):
    """Render the full page, or only ``fragment`` when htmx asked for one."""
    template = fragment if fragment and wants_fragment() else page_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def redirect_to(endpoint: str, **values):
    """Post/Redirect/Get that also works for htmx requests that target a fragment."""
    url = url_for(endpoint, **values)
    if wants_fragment():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def act(action: Callable[[], str], endpoint: str, done: str | None = None, **values):
    """One button's work as a unit: run ``action`` (it returns the success message), commit,
    flash the outcome (the service's complaint after a rollback), and redirect (PRG) to
    ``endpoint``, or once it is done to ``done`` when given (the work took the page away)."""
    try:
        message = action()
        commit()
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
    else:
        flash(message, "success")
        endpoint = done or endpoint
    return redirect_to(endpoint, **values)


def save_form(form, action: Callable[[], T]) -> T | None:
    """A form's work as a unit: when ``form`` validates, run ``action`` and commit; a service's
    complaint is rolled back and shown on the form, beside the field it names. What ``action``
    returned (it returns something: a message, what it made), or None to show the form again."""
    if not form.validate_on_submit():
        return None
    try:
        result = action()
        commit()
    except ServiceError as error:
        rollback()
        apply_service_error(form, error)
        return None
    return result


def submit(form, action: Callable[[], str], endpoint: str, **values):
    """``act`` for a form: ``save_form``, then flash the message ``action`` returned and redirect
    (PRG). None when the form is to be shown again, with its errors."""
    message = save_form(form, action)
    if message is None:
        return None
    flash(message, "success")
    return redirect_to(endpoint, **values)


def page_view(bp: Blueprint, rule: str, endpoint: str, *guards: Callable):
    """Make a page function also the GET view of ``rule``, behind ``guards`` (access decorators,
    outermost first); its docstring is the view's. Every argument of the function has a default
    (the forms it shows again, a status), and the POST views that show the page again call it."""

    def register(show):
        view = show
        for guard in reversed(guards):
            view = guard(view)
        bp.add_url_rule(rule, endpoint, view, methods=["GET"])
        return show

    return register


def form_errors_status() -> int:
    # htmx only swaps 2xx responses by default; a plain form post gets a proper 422.
    return 200 if htmx else 422


# Added to every response unless the view set its own value.
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
RETRY_AFTER_STATUSES = ("429", "503")
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
NO_STORE = ("Cache-Control", "no-store")


def register_response_headers(app) -> None:
    """Headers every response carries, added as it starts by a WSGI middleware (a list of
    tuples, where Werkzeug's Headers validated and scanned each one, and an after-request hook
    each cost a twentieth of a cached API read): the security headers unless the view set its
    own, the request's id, and Retry-After on a 429 or a 503 only (Flask-Limiter puts it on
    every response it counts, as its window's reset; RFC 9110 has it tell a client to wait
    before retrying). htmx's pushed URL needs the request: an after-request hook."""

    # Which defaults apply, by (HTTPS-only cookies, static file): worked out once, not per response.
    defaults = {
        (secure, static): tuple(
            (name.lower(), (name, value))
            for name, value in SECURITY_HEADERS + ((HSTS,) if secure else ()) + (() if static else (NO_STORE,))
        )
        for secure in (False, True)
        for static in (False, True)
    }
    static_prefix = f"{app.static_url_path}/"
    config = app.config
    wsgi_app = app.wsgi_app

    def with_response_headers(environ, start_response):
        def start(status, headers, exc_info=None):
            waiting = status.startswith(RETRY_AFTER_STATUSES)
            kept, present = [], set()
            for header in headers:
                lower = header[0].lower()
                if lower == "x-request-id" or (lower == "retry-after" and not waiting):
                    continue
                kept.append(header)
                present.add(lower)
            static = environ.get("PATH_INFO", "").startswith(static_prefix)
            kept.extend(
                header
                for lower, header in defaults[bool(config["SESSION_COOKIE_SECURE"]), static]
                if lower not in present
            )
            kept.append(("X-Request-ID", request_id_of(environ)))
            return start_response(status, kept, exc_info)

        return wsgi_app(environ, start)

    app.wsgi_app = with_response_headers

    @app.after_request
    def push_boosted_url(response):
        # A boosted form that redirects (Post/Redirect/Get) ends on another page than it posted to:
        # name the page shown, so the address bar, a reload and Back all show this page.
        if (
            request.method == "GET"
            and response.status_code == 200
            and "HTTP_HX_REQUEST" in request.environ  # not an htmx request: no header to look up
            and htmx
            and htmx.boosted
        ):
            response.headers.setdefault("HX-Push-Url", request.full_path.removesuffix("?"))
        return response
