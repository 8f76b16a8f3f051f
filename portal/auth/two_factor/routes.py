"""Two-factor pages on the auth blueprint: set-up on /account/two-factor, the second step of
sign-in, and signing in with a passkey alone.

WebAuthn challenges live in the signed session cookie (a challenge is not a secret: it only has
to be fresh), one at a time, for CHALLENGE_SECONDS, and are popped on first use.
"""

import time
from urllib.parse import urlsplit, urlunsplit

import segno
from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, login_required
from markupsafe import Markup
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from portal.access import Actor, current_actor
from portal.auth.routes import _safe_next, _sign_in, bp
from portal.auth.two_factor import pending
from portal.auth.two_factor import services as two_factor
from portal.auth.two_factor.forms import (
    AddPasskeyForm,
    ConfirmTotpForm,
    DisableTotpForm,
    PasskeyAnswerForm,
    RegenerateCodesForm,
    RemovePasskeyForm,
    SecondStepForm,
)
from portal.errors import ServiceError
from portal.extensions import limiter
from portal.forms import apply_service_error
from portal.infra.transactions import commit, rollback
from portal.web import form_errors_status, page_view, redirect_to, render

CHALLENGE_KEY = "webauthn_challenge"
CHALLENGE_SECONDS = 5 * 60


def _issuer() -> str:
    return current_app.config["TWO_FACTOR_ISSUER"]


def _relying_party() -> two_factor.RelyingParty | None:
    return two_factor.relying_party(current_app.config["PUBLIC_BASE_URL"], request.host_url, _issuer())


def _localhost_url() -> str | None:
    """Where passkeys would work on a development machine opened at 127.0.0.1."""
    here = urlsplit(request.host_url)
    if here.hostname in ("127.0.0.1", "::1"):
        netloc = "localhost" + (f":{here.port}" if here.port else "")
        return urlunsplit((here.scheme, netloc, request.path, "", ""))
    return None


@bp.context_processor
def two_factor_helpers():
    # Callables: evaluated only by the templates that show them (the account and sign-in pages).
    return {
        "two_factor_status": lambda: two_factor.status(current_user),
        "passkeys_available": lambda: _relying_party() is not None,
        "passkeys_localhost_url": _localhost_url,
    }


def _qr_svg(uri: str) -> Markup:
    # Inline <svg> with presentation attributes only: nothing the strict CSP blocks.
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, omitsize=True, svgclass="qr-code", lineclass=None, title="QR code for your authenticator app"
    )
    return Markup(svg)  # noqa: S704 - segno's own markup, built from our own otpauth URI


def _store_challenge(purpose: str, challenge: bytes, rp: two_factor.RelyingParty) -> None:
    session[CHALLENGE_KEY] = {
        "purpose": purpose,
        "challenge": bytes_to_base64url(challenge),
        "until": int(time.time()) + CHALLENGE_SECONDS,
        "rp_id": rp.id,
        "origin": rp.origin,
    }


def _take_challenge(purpose: str) -> tuple[bytes, two_factor.RelyingParty] | None:
    """The challenge issued for ``purpose``, once: it is gone from the session whatever happens next."""
    stored = session.pop(CHALLENGE_KEY, None)
    if not isinstance(stored, dict) or stored.get("purpose") != purpose or stored.get("until", 0) < time.time():
        return None
    rp = _relying_party()
    if rp is None or (rp.id, rp.origin) != (stored.get("rp_id"), stored.get("origin")):
        return None
    return base64url_to_bytes(stored["challenge"]), rp


def _options_response(purpose: str, build):
    """JSON options for the browser's WebAuthn call; the challenge stays here."""
    rp = _relying_party()
    if rp is None:
        return jsonify(error="Passkeys are not available at this address."), 400
    options, challenge = build(rp)
    _store_challenge(purpose, challenge, rp)
    response = current_app.response_class(options, mimetype="application/json")
    return response


# --- the account's two-factor page ------------------------------------------------------------


@page_view(bp, "/account/two-factor", "two_factor_settings", login_required)
def _page(status: int = 200, **forms):
    """The person's second factors: authenticator app, passkeys, recovery codes."""
    return render(
        "auth/two_factor/index.html",
        status=status,
        state=two_factor.status(current_user),
        disable_form=forms.get("disable_form") or DisableTotpForm(formdata=None),
        regenerate_form=forms.get("regenerate_form") or RegenerateCodesForm(formdata=None),
        passkey_form=forms.get("passkey_form") or AddPasskeyForm(formdata=None),
        remove_form=RemovePasskeyForm(formdata=None),
        remove_errors=forms.get("remove_errors") or {},
    )


def _codes_page(codes: list[str], reason: str):
    return render("auth/two_factor/recovery_codes.html", codes=codes, reason=reason)


def _me():
    return current_user._get_current_object()


def _setup_page(secret: str, form: ConfirmTotpForm | None = None, status: int = 200):
    uri = two_factor.provisioning_uri(_me(), secret, _issuer())
    return render(
        "auth/two_factor/totp_setup.html",
        status=status,
        form=form or ConfirmTotpForm(formdata=None),
        qr=_qr_svg(uri),
        secret=two_factor.format_secret(secret),
        uri=uri,
    )


@bp.post("/account/two-factor/totp")
@login_required
def start_totp():
    """Make a new secret and show its QR code; it is switched on by the first correct code."""
    try:
        secret = two_factor.start_totp(_me())
        commit()
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("auth.two_factor_settings")
    return _setup_page(secret)


@bp.get("/account/two-factor/totp")
@login_required
def totp_setup():
    """The set-up in progress (after a reload); otherwise back to the two-factor page."""
    try:
        secret = two_factor.pending_totp_secret(_me())
    except ServiceError as error:
        flash(error.message, "error")
        secret = None
    if secret is None:
        return redirect(url_for("auth.two_factor_settings"))
    return _setup_page(secret)


@bp.post("/account/two-factor/totp/confirm")
@login_required
def confirm_totp():
    """Switch the authenticator app on with its first correct code."""
    form = ConfirmTotpForm()
    if form.validate_on_submit():
        try:
            codes = two_factor.confirm_totp(current_actor(), _me(), form.code.data)
            commit()
        except two_factor.CodeRefused as error:
            commit()  # the wrong code counts towards the hold
            apply_service_error(form, error)
        except ServiceError as error:
            rollback()
            flash(error.message, "error")
            return redirect_to("auth.two_factor_settings")
        else:
            if codes:
                return _codes_page(codes, "enabled")
            flash("Two-factor authentication is on: the authenticator app is set up.", "success")
            return redirect_to("auth.two_factor_settings")
    secret = two_factor.pending_totp_secret(_me())
    if secret is None:
        return redirect_to("auth.two_factor_settings")
    return _setup_page(secret, form, status=form_errors_status())


def _with_password_and_code(form, change):
    """``change(actor, me, password, code)`` committed; a wrong code still counts towards the
    hold (committed too), any other complaint changes nothing. Returns (done, its result)."""
    try:
        result = change(current_actor(), _me(), form.password.data, form.code.data)
        commit()
    except two_factor.CodeRefused as error:
        commit()
        apply_service_error(form, error)
    except ServiceError as error:
        rollback()
        apply_service_error(form, error)
    else:
        return True, result
    return False, None


@bp.post("/account/two-factor/totp/disable")
@login_required
def disable_totp():
    """Turn the authenticator app off: the password and a current code (or a recovery code)."""
    form = DisableTotpForm()
    if form.validate_on_submit():
        done, _ = _with_password_and_code(form, two_factor.disable_totp)
        if done:
            flash("The authenticator app is off.", "success")
            return redirect_to("auth.two_factor_settings")
    return _page(status=form_errors_status(), disable_form=form)


@bp.post("/account/two-factor/recovery-codes")
@login_required
def regenerate_recovery_codes():
    """New recovery codes (the old ones stop working): the password and a current code."""
    form = RegenerateCodesForm()
    if form.validate_on_submit():
        done, codes = _with_password_and_code(form, two_factor.regenerate_recovery_codes)
        if done:
            return _codes_page(codes, "regenerated")
    return _page(status=form_errors_status(), regenerate_form=form)


@bp.post("/account/two-factor/passkeys/options")
@login_required
def passkey_registration_options():
    """JSON: options for navigator.credentials.create()."""
    return _options_response("register", lambda rp: two_factor.registration_options(_me(), rp))


@bp.post("/account/two-factor/passkeys")
@login_required
def add_passkey():
    """Store the passkey the browser just made (the form carries its answer)."""
    form = AddPasskeyForm()
    if form.validate_on_submit():
        issued = _take_challenge("register")
        if issued is None or not form.credential.data:
            form.form_errors.append("The passkey request expired or was not completed. Try again.")
        else:
            challenge, rp = issued
            try:
                passkey, codes = two_factor.add_passkey(
                    current_actor(), _me(), rp, challenge, form.credential.data, form.name.data
                )
                commit()
            except ServiceError as error:
                rollback()
                apply_service_error(form, error)
            else:
                if codes:
                    return _codes_page(codes, "passkey")
                flash(f"Passkey “{passkey.name}” added.", "success")
                return redirect_to("auth.two_factor_settings")
    return _page(status=form_errors_status(), passkey_form=form)


@bp.post("/account/two-factor/passkeys/<passkey_id>/remove")
@login_required
def remove_passkey(passkey_id: str):
    """Remove a passkey after the password."""
    form = RemovePasskeyForm()
    if form.validate_on_submit():
        try:
            passkey = two_factor.remove_passkey(current_actor(), _me(), passkey_id, form.password.data)
            commit()
        except ServiceError as error:
            rollback()
            return _page(status=form_errors_status(), remove_errors={passkey_id: error.message})
        flash(f"Passkey “{passkey.name}” removed.", "success")
        return redirect_to("auth.two_factor_settings")
    return _page(status=form_errors_status(), remove_errors={passkey_id: " ".join(form.password.errors)})


# --- sign-in: the second step, and a passkey alone ----------------------------------------------


def _finish_sign_in(user, message: str | None = None, to: str | None = None):
    target = pending.next_url() or request.args.get("next")
    _sign_in(user)  # a fresh session: the pending state and any challenge go with the old one
    commit()
    if message:
        flash(message, "warning")
    return redirect(to or _safe_next(target) or url_for("main.overview"), code=303)


def _expired():
    pending.drop()
    flash("Your sign-in timed out. Enter your email and password again.", "info")
    return redirect(url_for("auth.sign_in"), code=303)


def _second_step_page(user, form: SecondStepForm | None = None, status: int = 200, passkey_error: str = ""):
    state = two_factor.status(user)
    form = form or SecondStepForm(formdata=None)
    if not state.totp_enabled:
        # A passkey-only account types no app codes: the field takes a recovery code only.
        form.code.label.text = "Recovery code"
        form.code.description = "Lost your passkey? One of the recovery codes you saved signs you in once."
    return render(
        "auth/two_factor/challenge.html",
        status=status,
        form=form,
        passkey_form=PasskeyAnswerForm(formdata=None),
        passkey_error=passkey_error,
        state=state,
    )


@bp.get("/signin/two-factor")
def two_factor_sign_in():
    """The second step: a code from the app, a passkey, or a recovery code."""
    user = pending.user()
    if user is None:
        return _expired()
    return _second_step_page(user)


@bp.post("/signin/two-factor")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def two_factor_sign_in_code():
    """Finish signing in with a code from the app or a recovery code."""
    user = pending.user()
    if user is None:
        return _expired()
    form = SecondStepForm()
    if form.validate_on_submit():
        try:
            method = two_factor.verify_code(Actor(user=user, ip=request.remote_addr), user, form.code.data)
        except two_factor.CodesHeld as error:
            commit()
            pending.drop()
            flash(error.message, "error")
            return redirect(url_for("auth.sign_in"), code=303)
        except two_factor.CodeRefused as error:
            commit()  # the wrong code counts towards the hold
            apply_service_error(form, error)
        except ServiceError as error:
            rollback()
            apply_service_error(form, error)
        else:
            if method == "recovery":
                left = two_factor.recovery_codes_left(user)
                return _finish_sign_in(
                    user,
                    f"You signed in with a recovery code; {left} left. Lost your phone? "
                    "Turn the authenticator app off and set it up again here.",
                    to=url_for("auth.two_factor_settings"),
                )
            return _finish_sign_in(user)
    return _second_step_page(user, form, status=form_errors_status())


@bp.post("/signin/two-factor/passkey/options")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def two_factor_passkey_options():
    """JSON: options for navigator.credentials.get() with the half-signed-in person's passkeys."""
    user = pending.user()
    if user is None:
        return jsonify(error="Your sign-in timed out. Enter your email and password again."), 400
    return _options_response("second_factor", lambda rp: two_factor.authentication_options(rp, user))


@bp.post("/signin/two-factor/passkey")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def two_factor_passkey():
    """Finish signing in with one of the person's passkeys."""
    user = pending.user()
    if user is None:
        return _expired()
    form = PasskeyAnswerForm()
    issued = _take_challenge("second_factor")
    if not form.validate_on_submit() or issued is None or not form.credential.data:
        return _second_step_page(user, status=400, passkey_error="The passkey request expired. Try again.")
    challenge, rp = issued
    try:
        two_factor.verify_passkey(rp, challenge, form.credential.data, user=user)
    except ServiceError as error:
        rollback()
        return _second_step_page(user, status=400, passkey_error=error.message)
    return _finish_sign_in(user)


@bp.post("/signin/passkey/options")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def passkey_sign_in_options():
    """JSON: options for navigator.credentials.get() with any passkey of this site (no email needed)."""
    return _options_response("sign_in", lambda rp: two_factor.authentication_options(rp))


@bp.post("/signin/passkey")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def passkey_sign_in():
    """Sign in with a passkey alone: it proves both who you are and that you hold the device."""
    form = PasskeyAnswerForm()
    issued = _take_challenge("sign_in")
    if not form.validate_on_submit() or issued is None or not form.credential.data:
        flash("The passkey request expired. Try again.", "error")
        return redirect(url_for("auth.sign_in"), code=303)
    challenge, rp = issued
    try:
        user = two_factor.verify_passkey(rp, challenge, form.credential.data)
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect(url_for("auth.sign_in"), code=303)
    return _finish_sign_in(user)
