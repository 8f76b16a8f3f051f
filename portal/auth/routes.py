from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from wtforms.fields.choices import SelectChoice

from portal import timezones
from portal.access import TENANT_SESSION_KEY, current_actor
from portal.auth import services
from portal.auth.forms import (
    AccountForm,
    ChangeEmailForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    ResetPasswordForm,
    SignInForm,
    SignUpForm,
)
from portal.auth.two_factor import pending as pending_sign_in
from portal.errors import Conflict, ServiceError
from portal.extensions import limiter
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.models import has_second_factor, utcnow
from portal.tenants import services as tenants
from portal.web import act, form_errors_status, redirect_to, render, save_form, submit

bp = Blueprint("auth", __name__)


def _sign_in(user, tenant_id: str | None = None) -> None:
    # A fresh session on every sign-in: nothing from before survives (no fixation).
    if current_user.is_authenticated:
        services.end_session(current_user.get_id())
    session.clear()
    services.start_session(user, request.remote_addr, request.headers.get("User-Agent"))
    login_user(user)
    if tenant_id:
        session[TENANT_SESSION_KEY] = tenant_id


def _safe_next(target: str | None) -> str | None:
    # Only same-site paths: "//evil.example" or "https://..." would be an open redirect. Browsers
    # drop tabs and newlines and read "\\" as "/", so "/\t/evil.example" is one too; and a CR/LF
    # in a Location header is a 500. Anything with such characters is simply not followed.
    if not target or not target.startswith("/") or any(ch.isspace() or not ch.isprintable() for ch in target):
        return None
    if target.startswith("//") or "\\" in target or urlsplit(target).netloc:
        return None
    return target


@bp.route("/signup", methods=["GET", "POST"])
def sign_up():
    """Create a company account and become its owner."""
    form = SignUpForm()
    if request.method == "GET" and request.args.get("company_name"):
        form.company_name.data = request.args["company_name"]
        form.tenant_id.data = tenants.suggest_tenant_id(request.args["company_name"])
    if form.validate_on_submit():
        try:
            user, tenant = tenants.sign_up(
                current_actor(),
                form.company_name.data,
                form.tenant_id.data,
                form.email.data,
                form.password.data,
                form.name.data or "",
                plan=form.plan.data,
            )
            commit()
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            _sign_in(user, tenant.tenant_id)
            commit()
            flash(f"Welcome! Your account {tenant.company_name} is ready.", "success")
            # The form posts through htmx into itself: a plain redirect would paste the page into it.
            return redirect_to("main.overview")
    status = form_errors_status() if form.errors or form.form_errors else 200
    return render("auth/sign_up.html", "auth/_sign_up_form.html", status=status, form=form)


@bp.get("/signup/suggest-id")
def suggest_id():
    """htmx: the account ID field, filled with an ID proposed from the company name as it is typed,
    unless the person has typed one of their own (anything but the previous suggestion)."""
    suggestion = tenants.suggest_tenant_id(request.args.get("company_name", "")[:200])
    typed = request.args.get("tenant_id", "").strip()
    filled = typed in ("", request.args.get("suggested_tenant_id", ""))
    form = SignUpForm(formdata=None)
    form.tenant_id.data = suggestion if filled else typed
    return render("auth/_tenant_id_suggestion.html", form=form, suggestion=suggestion, filled=filled)


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"], methods=["POST"])
def sign_in():
    """Sign in with email and password."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("main.overview"))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = services.sign_in_with_password(form.email.data, form.password.data, request.remote_addr)
        except services.SignInHeld as held:
            # htmx swaps only 2xx answers; a plain form post gets the honest 429.
            user, status = None, 200 if form_errors_status() == 200 else held.status_code
            form.form_errors.append(held.message)
        # The failure counts per account even though nobody signs in.
        commit()
        if user is None:
            if not form.form_errors:
                form.form_errors.append("Email or password is not correct.")
        elif has_second_factor(user.id):
            # Nobody is signed in yet: the second step calls _sign_in (the count was committed above).
            pending_sign_in.begin(user, _safe_next(request.args.get("next")))
            return redirect(url_for("auth.two_factor_sign_in"), code=303)
        else:
            _sign_in(user)
            commit()
            return redirect(_safe_next(request.args.get("next")) or url_for("main.overview"), code=303)
    if status == 200 and (form.errors or form.form_errors):
        status = form_errors_status()
    return render("auth/sign_in.html", "auth/_sign_in_form.html", status=status, form=form)


@bp.post("/signout")
def sign_out():
    """End this browser's session on the server, then forget the cookie."""
    if current_user.is_authenticated:
        services.end_session(current_user.get_id())
        commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"), code=303)


def _timezone_form(formdata=None) -> AccountForm:
    form = AccountForm(formdata=formdata, timezone=current_user.timezone or "")
    browser = timezones.browser_name()
    form.timezone.choices = [
        SelectChoice("", f"Automatic: your browser's ({browser or 'not known yet, so UTC'})"),
        *(SelectChoice(name, name.replace("_", " ")) for name in timezones.names()),
    ]
    return form


def _account_page(status: int = 200, fragment: str | None = None, **forms):
    """The account page (or the one ``fragment`` htmx asked for), fresh forms where none is given."""
    forms.setdefault("form", _timezone_form())
    forms.setdefault("password_form", ChangePasswordForm(formdata=None))
    forms.setdefault("email_form", ChangeEmailForm(formdata=None))
    user = current_user._get_current_object()
    return render(
        "auth/account.html",
        fragment,
        status=status,
        sessions=services.active_sessions(user),
        pending_email_change=services.pending_email_change(user),
        now=utcnow(),
        **forms,
    )


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """The signed-in person's own account: password, email, sessions, and the timezone (saved here)."""
    form = _timezone_form(request.form if request.method == "POST" else None)
    if request.method == "POST" and form.validate():
        try:
            services.set_timezone(current_actor(), current_user._get_current_object(), form.timezone.data)
            commit()
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            flash(f"Times are now shown in {current_user.timezone or 'your browser’s timezone'}.", "success")
            return redirect(url_for("auth.account"), code=303)
    return _account_page(form=form, status=form_errors_status() if form.errors else 200)


@bp.post("/account/password")
@limiter.limit("10 per minute")
@login_required
def change_password():
    """Change the password after confirming the current one; every other session ends."""
    form = ChangePasswordForm()
    user = current_user._get_current_object()

    def change() -> str:
        services.change_password(current_actor(), user, form.current_password.data, form.new_password.data)
        return "Your password is changed. Every other browser and device is signed out."

    message = save_form(form, change)
    if message is not None:
        login_user(user)  # this browser's renewed session token, into its cookie
        flash(message, "success")
        return redirect_to("auth.account")
    return _account_page(password_form=form, status=form_errors_status(), fragment="auth/_password_form.html")


@bp.post("/account/email")
@limiter.limit("5 per minute")
@login_required
def request_email_change():
    """Ask to change the sign-in email: a link goes to the new address, a notice to the current one."""
    form = ChangeEmailForm()

    def ask() -> str:
        change = services.request_email_change(
            current_actor(), current_user._get_current_object(), form.new_email.data, form.password.data
        )
        return f"We sent a link to {change.new_email}. Your sign-in email changes when you open it."

    return submit(form, ask, "auth.account") or _account_page(
        email_form=form, status=form_errors_status(), fragment="auth/_email_form.html"
    )


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email_change(token: str):
    """The emailed link: a button makes the change (mail scanners follow links, and a GET changes
    nothing). No sign-in needed: the link proves the new address is the person's."""
    change = services.find_email_change(token)
    if change is None:
        return render("auth/email_change_invalid.html", status=400)
    new_email = change.new_email
    if request.method == "POST":
        try:
            user = services.confirm_email_change(token, request.remote_addr)
            commit()
        except Conflict as error:
            rollback()
            return render("auth/confirm_email_change.html", new_email=new_email, refusal=error.message, status=409)
        except ServiceError:
            rollback()
            return render("auth/email_change_invalid.html", status=400)
        flash(f"Your sign-in email is now {user.email}.", "success")
        if current_user.is_authenticated and current_user.id == user.id:
            return redirect(url_for("auth.account"), code=303)
        return redirect(url_for("auth.sign_in"), code=303)
    return render("auth/confirm_email_change.html", new_email=new_email)


@bp.post("/account/sessions/<session_id>/sign-out")
@login_required
def sign_out_session(session_id: str):
    """Sign out one of the person's other browsers; another person's session is not found (404)."""
    user = current_user._get_current_object()
    row = services.own_session(user, session_id)
    return act(
        lambda: f"{services.end_other_session(current_actor(), user, row)} is signed out.",
        "auth.account",
        _anchor="account-sessions",
    )


@bp.post("/account/sessions/sign-out-others")
@login_required
def sign_out_other_sessions():
    """Sign out every browser of the person's but this one."""

    def action() -> str:
        ended = services.end_other_sessions(current_actor(), current_user._get_current_object())
        if not ended:
            return "No other browser or device was signed in."
        return f"Signed out {ended} other session{'s' if ended != 1 else ''}."

    return act(action, "auth.account", _anchor="account-sessions")


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether the email is known or not."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        services.request_password_reset(form.email.data)
        commit()
        flash("If an account exists for that email, a reset link is on its way.", "info")
        return redirect(url_for("auth.sign_in"), code=303)
    return render("auth/forgot_password.html", form=form, status=form_errors_status() if form.errors else 200)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password from an emailed link; signs out every other session."""
    if services.find_password_reset(token) is None:
        return render("auth/reset_invalid.html", status=400)
    form = ResetPasswordForm()

    def reset() -> str:
        services.reset_password(token, form.password.data, request.remote_addr)
        return "Your password is changed. Sign in with the new one."

    message = save_form(form, reset)
    if message is not None:
        logout_user()
        session.clear()
        flash(message, "success")
        return redirect(url_for("auth.sign_in"), code=303)
    status = form_errors_status() if form.errors or form.form_errors else 200
    return render("auth/reset_password.html", form=form, token=token, status=status)
