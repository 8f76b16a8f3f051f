from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from wtforms.fields.choices import SelectChoice

from portal import timezones
from portal.access import TENANT_SESSION_KEY, current_actor
from portal.auth import services
from portal.auth.forms import AccountForm, ForgotPasswordForm, ResetPasswordForm, SignInForm, SignUpForm
from portal.auth.two_factor import pending as pending_sign_in
from portal.errors import ServiceError
from portal.extensions import limiter
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.models import has_second_factor, utcnow
from portal.tenants import services as tenants
from portal.web import form_errors_status, redirect_to, render

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
    """htmx: propose an account id from the company name as it is typed."""
    suggestion = tenants.suggest_tenant_id(request.args.get("company_name", "")[:200])
    return render("auth/_tenant_id_suggestion.html", suggestion=suggestion)


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"], methods=["POST"])
def sign_in():
    """Sign in with email and password."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("main.overview"))
    form = SignInForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is None:
            form.form_errors.append("Email or password is not correct.")
        elif has_second_factor(user.id):
            commit()  # keep a password hash authenticate() upgraded; nobody is signed in yet
            pending_sign_in.begin(user, _safe_next(request.args.get("next")))
            return redirect(url_for("auth.two_factor_sign_in"), code=303)
        else:
            _sign_in(user)
            commit()
            return redirect(_safe_next(request.args.get("next")) or url_for("main.overview"), code=303)
    status = form_errors_status() if form.errors or form.form_errors else 200
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


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """The signed-in person's own preferences (today: the timezone they read times in)."""
    form = AccountForm(
        formdata=request.form if request.method == "POST" else None, timezone=current_user.timezone or ""
    )
    browser = timezones.browser_name()
    form.timezone.choices = [
        SelectChoice("", f"Automatic: your browser's ({browser or 'not known yet, so UTC'})"),
        *(SelectChoice(name, name.replace("_", " ")) for name in timezones.names()),
    ]
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
    return render("auth/account.html", form=form, now=utcnow(), status=form_errors_status() if form.errors else 200)


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
    if form.validate_on_submit():
        try:
            services.reset_password(token, form.password.data, request.remote_addr)
            commit()
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            logout_user()
            session.clear()
            flash("Your password is changed. Sign in with the new one.", "success")
            return redirect(url_for("auth.sign_in"), code=303)
    status = form_errors_status() if form.errors or form.form_errors else 200
    return render("auth/reset_password.html", form=form, token=token, status=status)
