"""Two-factor authentication through HTTP: the authenticator app, recovery codes, passkeys (with a
software authenticator that signs for real), the tenant's and the console's policies, the
wrong-code hold and the security emails."""

import hashlib
import json
import os
import re
import time

import pyotp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, text
from webauthn.helpers import bytes_to_base64url, encode_cbor

from portal.auth.two_factor import services as two_factor
from portal.config import load_config
from portal.credentials import crypto
from portal.extensions import db
from portal.models import AuditEvent, Passkey, RecoveryCode, UserTwoFactor, utcnow
from tests.conftest import PASSWORD, field_error, form_error, signed_in

ORIGIN = "http://portal.test"  # the test app's PUBLIC_BASE_URL: the RP ID is portal.test


# --- helpers ------------------------------------------------------------------------------------


def code_for(secret: str, steps_from_now: int = 0) -> str:
    """The app's code ``steps_from_now`` 30-second steps away (the server accepts -1, 0 and +1).

    Not within a second of a step boundary, so the step cannot change before the server checks it.
    """
    if 30 - time.time() % 30 < 1.5:
        time.sleep(1.6)
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_from_now)


def wrong_code(secret: str) -> str:
    """Six digits that are no code of the current window."""
    window = {pyotp.TOTP(secret).at(time.time() + 30 * step) for step in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in window)


def start_totp(client) -> tuple[str, str]:
    """(secret, page) after "Set up an authenticator app"."""
    response = client.post("/account/two-factor/totp")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    page = response.get_data(as_text=True)
    shown = re.search(r'data-testid="totp-secret" id="totp-secret">([^<]+)<', page).group(1)
    return shown.replace(" ", ""), page


def recovery_codes_in(page: str) -> list[str]:
    return re.findall(r'data-testid="recovery-code">([^<]+)<', page)


def enrol_totp(client) -> tuple[str, list[str]]:
    """Turn the app on for the signed-in person; (secret, the recovery codes shown once)."""
    secret, _ = start_totp(client)
    response = client.post("/account/two-factor/totp/confirm", data={"code": code_for(secret, -1)})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return secret, recovery_codes_in(response.get_data(as_text=True))


def password_step(client, email: str, password: str = PASSWORD):
    response = client.post("/signin", data={"email": email, "password": password})
    assert response.status_code == 303
    return response


def second_step(client, code: str):
    return client.post("/signin/two-factor", data={"code": code})


def security_subjects(outbox, email: str) -> list[str]:
    return [message.subject for message in outbox(email)]


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Two Factor Co")


@pytest.fixture
def member(tenant, make_user):
    return make_user(tenant, role="developer")


# --- enrolment --------------------------------------------------------------------------------


def test_enrolment_refuses_a_wrong_code_and_turns_on_with_the_right_one(client, app, member, login, outbox):
    login(client, member)
    secret, page = start_totp(client)
    # The QR code is inline SVG without style attributes (the CSP has no 'unsafe-inline').
    svg = re.search(r"<svg[^>]*class=\"qr-code\".*?</svg>", page, flags=re.S).group(0)
    assert "style=" not in svg and "<script" not in page.split("</head>")[1]
    assert pyotp.TOTP(secret).provisioning_uri(name=member.email, issuer_name="Portal").startswith("otpauth://totp/")

    wrong = client.post("/account/two-factor/totp/confirm", data={"code": wrong_code(secret)})
    assert wrong.status_code == 422
    assert "That code is not correct" in field_error(wrong.get_data(as_text=True), "code")
    assert not two_factor_on(app, member)

    response = client.post("/account/two-factor/totp/confirm", data={"code": code_for(secret)})
    assert response.status_code == 200
    codes = recovery_codes_in(response.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", c) for c in codes)
    assert "Two-factor authentication is on" in response.get_data(as_text=True)
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert 'data-testid="totp-status"><span class="badge badge-active">on</span>' in page
    assert "10 of 10 recovery codes left" in page
    assert "Security: two-factor authentication (authenticator app) was turned on" in security_subjects(
        outbox, member.email
    )
    with app.app_context():
        assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "user.totp_enabled")) is not None


def test_the_account_page_links_to_two_factor_and_says_whether_it_is_on(client, member, login):
    login(client, member)
    page = client.get("/account").get_data(as_text=True)
    assert "Your password alone signs you in." in page
    assert 'href="/account/two-factor"' in page
    enrol_totp(client)
    page = client.get("/account").get_data(as_text=True)
    assert "a code from your authenticator app" in page
    assert "10 recovery codes left" in page


def test_the_totp_secret_is_not_stored_in_clear(client, app, member, login):
    login(client, member)
    secret, _ = enrol_totp(client)
    with app.app_context():
        row = db.session.get(UserTwoFactor, member.user.id)
        # Everything stored for the person, as a dump would show it.
        dump = repr(db.session.execute(text("SELECT * FROM user_two_factor")).all())
        dump += repr(db.session.execute(text("SELECT * FROM recovery_codes")).all())
        keyring = crypto.current_keyring()
        assert secret not in dump and secret.lower() not in dump
        assert secret.encode() not in row.totp_secret
        # Sealed under CREDENTIALS_KEYS and bound to this person: it opens only as theirs.
        assert crypto.decrypt(keyring, row.totp_secret, row.totp_key_id, "totp", member.user.id).decode() == secret
        with pytest.raises(crypto.CredentialDecryptError):
            crypto.decrypt(keyring, row.totp_secret, row.totp_key_id, "totp", "usr_someone_else")


# --- signing in ---------------------------------------------------------------------------------


def test_password_alone_does_not_sign_in_and_the_code_does_once(app, client, member, login, outbox):
    login(client, member)
    secret, _ = enrol_totp(client)

    browser = app.test_client()
    response = password_step(browser, member.email)
    assert response.headers["Location"] == "/signin/two-factor"
    assert not signed_in(browser)
    # Half signed in is not signed in: nothing behind sign-in answers.
    for path in ("/overview", "/account", "/account/two-factor", "/team", "/settings"):
        assert browser.get(path).status_code == 302, path
        assert "/signin" in browser.get(path).headers["Location"]
    page = browser.get("/signin/two-factor").get_data(as_text=True)
    assert "One more step" in page

    wrong = second_step(browser, wrong_code(secret))
    assert wrong.status_code == 422 and not signed_in(browser)
    code = code_for(secret)
    response = second_step(browser, code)
    assert response.status_code == 303 and response.headers["Location"] == "/overview"
    assert signed_in(browser)

    # The same code again, in another browser: a replay, refused.
    other = app.test_client()
    password_step(other, member.email)
    replay = second_step(other, code)
    assert replay.status_code == 422
    assert "already used" in field_error(replay.get_data(as_text=True), "code")
    assert not signed_in(other)
    # The next step's code works.
    assert second_step(other, code_for(secret, 1)).status_code == 303
    assert signed_in(other)


def test_the_second_step_keeps_where_the_person_was_going(app, client, member, login):
    login(client, member)
    secret, _ = enrol_totp(client)
    browser = app.test_client()
    browser.post("/signin?next=/settings", data={"email": member.email, "password": PASSWORD})
    response = second_step(browser, code_for(secret))
    assert response.headers["Location"] == "/settings"


def test_the_second_step_without_a_password_first_sends_back_to_sign_in(client):
    response = client.get("/signin/two-factor")
    assert response.status_code == 303 and response.headers["Location"] == "/signin"
    response = second_step(client, "123456")
    assert response.status_code == 303 and response.headers["Location"] == "/signin"


def test_a_recovery_code_signs_in_once(app, client, member, login, outbox):
    login(client, member)
    _, codes = enrol_totp(client)

    browser = app.test_client()
    password_step(browser, member.email)
    response = second_step(browser, codes[0].upper().replace("-", " "))  # typed loosely still counts
    assert response.status_code == 303 and response.headers["Location"] == "/account/two-factor"
    page = browser.get("/account/two-factor").get_data(as_text=True)
    assert "You signed in with a recovery code; 9 left." in page
    assert "9 of 10 recovery codes left" in page
    [email] = [m for m in outbox(member.email) if "recovery code was used" in m.subject]
    assert "Used for: sign-in" in email.text_body and "Codes left: 9" in email.text_body

    again = app.test_client()
    password_step(again, member.email)
    response = second_step(again, codes[0])
    assert response.status_code == 422 and not signed_in(again)
    assert second_step(again, codes[1]).status_code == 303


def test_disabling_needs_the_password_and_a_current_code(app, client, member, login, outbox):
    login(client, member)
    secret, _ = enrol_totp(client)

    response = client.post("/account/two-factor/totp/disable", data={"password": "wrong", "code": code_for(secret)})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "password") == "That password is not correct."
    response = client.post("/account/two-factor/totp/disable", data={"password": PASSWORD, "code": wrong_code(secret)})
    assert response.status_code == 422
    assert "not correct" in field_error(response.get_data(as_text=True), "code")
    assert two_factor_on(app, member)

    response = client.post("/account/two-factor/totp/disable", data={"password": PASSWORD, "code": code_for(secret)})
    assert response.status_code == 303
    assert not two_factor_on(app, member)
    assert "Security: two-factor authentication (authenticator app) was turned off" in security_subjects(
        outbox, member.email
    )
    with app.app_context():  # no factor left: the recovery codes went with it
        assert db.session.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == member.user.id)) is None
    browser = app.test_client()
    password_step(browser, member.email)
    assert signed_in(browser)


def test_a_lost_phone_is_replaced_with_a_recovery_code(app, member, login):
    client = app.test_client()
    login(client, member)
    _, codes = enrol_totp(client)
    # New browser, phone gone: sign in with a recovery code, turn the app off with another, set up again.
    browser = app.test_client()
    password_step(browser, member.email)
    second_step(browser, codes[0])
    response = browser.post("/account/two-factor/totp/disable", data={"password": PASSWORD, "code": codes[1]})
    assert response.status_code == 303
    secret, new_codes = enrol_totp(browser)
    assert len(new_codes) == 10  # the old set went when the last factor did


def two_factor_on(app, member) -> bool:
    with app.app_context():
        row = db.session.get(UserTwoFactor, member.user.id)
        return bool(row and row.totp_enabled)


def test_new_recovery_codes_need_the_password_and_a_code_and_void_the_old_ones(app, client, member, login, outbox):
    login(client, member)
    secret, old = enrol_totp(client)
    response = client.post("/account/two-factor/recovery-codes", data={"password": PASSWORD, "code": "nope"})
    assert response.status_code == 422
    response = client.post("/account/two-factor/recovery-codes", data={"password": PASSWORD, "code": code_for(secret)})
    assert response.status_code == 200
    new = recovery_codes_in(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert "Security: new recovery codes were made" in security_subjects(outbox, member.email)
    browser = app.test_client()
    password_step(browser, member.email)
    assert second_step(browser, old[2]).status_code == 422
    assert second_step(browser, new[0]).status_code == 303


# --- the wrong-code hold --------------------------------------------------------------------------


def test_five_wrong_codes_drop_the_sign_in_and_hold_codes_for_a_while(app, client, member, login):
    login(client, member)
    secret, codes = enrol_totp(client)
    browser = app.test_client()
    password_step(browser, member.email)
    for attempt in range(1, 5):
        response = second_step(browser, wrong_code(secret))
        assert response.status_code == 422, attempt
    assert "1 more wrong code and codes are paused for 15 minutes" in form_error(
        response.get_data(as_text=True)
    ) + field_error(response.get_data(as_text=True), "code")
    response = second_step(browser, wrong_code(secret))
    assert response.status_code == 303 and response.headers["Location"] == "/signin"
    page = browser.get("/signin").get_data(as_text=True)
    assert "Too many wrong codes" in page
    # The pending sign-in is gone, and even a right code is refused during the hold, in any browser.
    assert browser.get("/signin/two-factor").headers["Location"] == "/signin"
    fresh = app.test_client()
    password_step(fresh, member.email)
    response = second_step(fresh, code_for(secret))
    assert response.status_code == 303 and response.headers["Location"] == "/signin"
    assert not signed_in(fresh)
    password_step(fresh, member.email)
    assert second_step(fresh, codes[0]).headers["Location"] == "/signin"
    assert not signed_in(fresh)
    with app.app_context():
        row = db.session.get(UserTwoFactor, member.user.id)
        assert row.held_until is not None
        assert 14 * 60 < (row.held_until - utcnow()).total_seconds() <= 15 * 60
        # The hold over, the right code works again.
        row.held_until = utcnow()
        db.session.commit()
    password_step(fresh, member.email)
    assert second_step(fresh, code_for(secret, 1)).status_code == 303
    assert signed_in(fresh)


def test_a_right_code_resets_the_count_of_wrong_ones(app, client, member, login):
    login(client, member)
    secret, codes = enrol_totp(client)
    browser = app.test_client()
    password_step(browser, member.email)
    for _ in range(4):
        second_step(browser, wrong_code(secret))
    assert second_step(browser, codes[0]).status_code == 303
    with app.app_context():
        assert db.session.get(UserTwoFactor, member.user.id).failed_codes == 0


# --- policies -----------------------------------------------------------------------------------------


def test_owner_requiring_two_factor_sends_a_member_without_it_to_set_it_up(app, tenant, make_user, login, member):
    owner = make_user(tenant, role="owner")
    owner_client = app.test_client()
    login(owner_client, owner)
    # Not before the owner has it themselves.
    response = owner_client.post("/settings/two-factor", data={"require_two_factor": "y"})
    assert response.status_code == 422
    assert "Set up two-factor authentication for yourself first" in response.get_data(as_text=True)
    enrol_totp(owner_client)
    response = owner_client.post("/settings/two-factor", data={"require_two_factor": "y"})
    assert response.status_code == 303
    assert "Every member now needs two-factor authentication" in owner_client.get("/settings").get_data(as_text=True)
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "tenant.two_factor_required_changed"))
        assert (event.tenant_id, event.details, event.actor_label) == (
            tenant.tenant_id,
            {"required": True},
            owner.email,
        )

    browser = app.test_client()
    response = password_step(browser, member.email)
    assert response.headers["Location"] == "/overview"
    for path in ("/overview", "/team", "/settings", "/billing"):
        response = browser.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/account/two-factor", path
    page = browser.get("/account/two-factor").get_data(as_text=True)
    assert "Two Factor Co requires two-factor authentication. Set up two-factor authentication to continue." in page
    enrol_totp(browser)
    assert browser.get("/overview").status_code == 200


@pytest.mark.parametrize("role", ["admin", "developer"])
def test_only_the_owner_sets_the_two_factor_policy(app, client, tenant, make_user, login, role):
    login(client, make_user(tenant, role=role))
    assert client.post("/settings/two-factor", data={"require_two_factor": "y"}).status_code == 403
    page = client.get("/settings").get_data(as_text=True)
    assert 'data-testid="two-factor-policy"' in page and "two-factor-policy-form" not in page


def test_operator_needs_two_factor_before_the_console_when_required(app, client, make_operator, login, monkeypatch):
    operator = make_operator()
    login(client, operator)
    assert client.get("/admin/tenants").status_code == 200  # development: optional
    monkeypatch.setitem(app.config, "OPERATOR_2FA_REQUIRED", True)
    for path in ("/admin", "/admin/tenants", "/admin/outbox"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/account/two-factor", path
    assert "The operator console requires two-factor authentication." in client.get("/account/two-factor").get_data(
        as_text=True
    )
    enrol_totp(client)
    assert client.get("/admin/tenants").status_code == 200


def test_production_requires_two_factor_of_operators_by_default(monkeypatch):
    monkeypatch.delenv("OPERATOR_2FA_REQUIRED", raising=False)
    monkeypatch.setenv("PORTAL_ENV", "production")
    assert load_config()["OPERATOR_2FA_REQUIRED"] is True
    monkeypatch.setenv("PORTAL_ENV", "development")
    assert load_config()["OPERATOR_2FA_REQUIRED"] is False
    monkeypatch.setenv("OPERATOR_2FA_REQUIRED", "true")
    assert load_config()["OPERATOR_2FA_REQUIRED"] is True


def test_an_operator_reset_is_audited_in_each_tenant_and_emailed(app, tenant, member, login, make_operator, outbox):
    browser = app.test_client()
    login(browser, member)
    enrol_totp(browser)
    operator = make_operator()
    console = app.test_client()
    login(console, operator)
    page = console.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert f"/admin/users/{member.user.id}/two-factor" in page
    response = console.post(f"/admin/users/{member.user.id}/two-factor/reset", data={"reason": ""})
    assert response.status_code == 422 and two_factor_on(app, member)
    response = console.post(
        f"/admin/users/{member.user.id}/two-factor/reset", data={"reason": "Lost phone, identity checked by call"}
    )
    assert response.status_code == 303
    assert not two_factor_on(app, member)
    [email] = [m for m in outbox(member.email) if "operator switched off" in m.subject]
    assert "Lost phone, identity checked by call" in email.text_body
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.two_factor_reset_by_operator"))
        assert event.tenant_id == tenant.tenant_id and event.actor_label == operator.email
    # Customers cannot reach the reset.
    assert browser.post(f"/admin/users/{member.user.id}/two-factor/reset", data={"reason": "x"}).status_code == 404


# --- passkeys, with a software authenticator -------------------------------------------------------


class SoftAuthenticator:
    """A platform authenticator in a few lines: one P-256 key per credential, "none" attestation,
    user present and verified. Its signatures are real; the server checks them as any other."""

    def __init__(self):
        self.credentials = {}  # credential id -> (private key, user handle, sign count)

    def create(self, options: dict, origin: str = ORIGIN) -> dict:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        credential_id = os.urandom(32)
        self.credentials[credential_id] = [key, options["user"]["id"], 0]
        attested = bytes(16) + len(credential_id).to_bytes(2, "big") + credential_id + encode_cbor(cose)
        auth_data = hashlib.sha256(options["rp"]["id"].encode()).digest() + bytes([0x45]) + bytes(4) + attested
        client_data = json.dumps({"type": "webauthn.create", "challenge": options["challenge"], "origin": origin})
        return {
            "id": bytes_to_base64url(credential_id),
            "rawId": bytes_to_base64url(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data.encode()),
                "attestationObject": bytes_to_base64url(
                    encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
                ),
                "transports": ["internal"],
            },
        }

    def get(self, options: dict, origin: str = ORIGIN, credential_id: bytes | None = None) -> dict:
        credential_id = credential_id or next(iter(self.credentials))
        entry = self.credentials[credential_id]
        entry[2] += 1
        auth_data = hashlib.sha256(options["rpId"].encode()).digest() + bytes([0x05]) + entry[2].to_bytes(4, "big")
        client_data = json.dumps({"type": "webauthn.get", "challenge": options["challenge"], "origin": origin})
        signature = entry[0].sign(auth_data + hashlib.sha256(client_data.encode()).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": bytes_to_base64url(credential_id),
            "rawId": bytes_to_base64url(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data.encode()),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": entry[1],
            },
        }


def add_passkey(client, authenticator: SoftAuthenticator, name: str = "Work laptop"):
    options = client.post("/account/two-factor/passkeys/options").get_json()
    return client.post(
        "/account/two-factor/passkeys", data={"name": name, "credential": json.dumps(authenticator.create(options))}
    )


def test_a_passkey_is_added_with_recovery_codes_and_signs_in_without_an_email(app, client, member, login, outbox):
    login(client, member)
    options = client.post("/account/two-factor/passkeys/options").get_json()
    assert options["rp"]["id"] == "portal.test"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    authenticator = SoftAuthenticator()
    response = client.post(
        "/account/two-factor/passkeys",
        data={"name": "Work laptop", "credential": json.dumps(authenticator.create(options))},
    )
    assert response.status_code == 200
    assert len(recovery_codes_in(response.get_data(as_text=True))) == 10  # its first second factor
    assert "Security: a passkey was added" in security_subjects(outbox, member.email)
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert 'data-testid="passkey-row" data-name="Work laptop"' in page

    # Alone, with no email typed (a discoverable credential).
    browser = app.test_client()
    options = browser.post("/signin/passkey/options").get_json()
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"
    response = browser.post("/signin/passkey", data={"credential": json.dumps(authenticator.get(options))})
    assert response.status_code == 303 and response.headers["Location"] == "/overview"
    assert signed_in(browser)

    # The challenge is single use: the same answer again is refused.
    other = app.test_client()
    other.post("/signin/passkey/options")
    response = other.post("/signin/passkey", data={"credential": json.dumps(authenticator.get(options))})
    assert response.status_code == 303 and not signed_in(other)


def test_a_passkey_is_the_second_step_after_the_password(app, client, member, login):
    login(client, member)
    authenticator = SoftAuthenticator()
    assert add_passkey(client, authenticator).status_code == 200
    browser = app.test_client()
    password_step(browser, member.email)
    assert not signed_in(browser)
    page = browser.get("/signin/two-factor").get_data(as_text=True)
    assert "Use a passkey" in page and "Recovery code" in page
    options = browser.post("/signin/two-factor/passkey/options").get_json()
    assert [c["id"] for c in options["allowCredentials"]] == [bytes_to_base64url(next(iter(authenticator.credentials)))]
    response = browser.post("/signin/two-factor/passkey", data={"credential": json.dumps(authenticator.get(options))})
    assert response.status_code == 303
    assert signed_in(browser)


def test_someone_elses_passkey_is_not_a_second_factor(app, tenant, make_user, member, login):
    mallory = make_user(tenant, role="viewer")
    theirs = SoftAuthenticator()
    mallory_client = app.test_client()
    login(mallory_client, mallory)
    add_passkey(mallory_client, theirs)
    mine = SoftAuthenticator()
    member_client = app.test_client()
    login(member_client, member)
    add_passkey(member_client, mine)

    browser = app.test_client()
    password_step(browser, member.email)
    options = browser.post("/signin/two-factor/passkey/options").get_json()
    response = browser.post("/signin/two-factor/passkey", data={"credential": json.dumps(theirs.get(options))})
    assert response.status_code == 400
    assert "not registered here" in response.get_data(as_text=True)
    assert not signed_in(browser)


def test_removing_a_passkey_needs_the_password(app, client, member, login, outbox):
    login(client, member)
    add_passkey(client, SoftAuthenticator(), "Old phone")
    with app.app_context():
        passkey_id = db.session.scalar(select(Passkey.id).where(Passkey.user_id == member.user.id))
    response = client.post(f"/account/two-factor/passkeys/{passkey_id}/remove", data={"password": "wrong"})
    assert response.status_code == 422 and "That password is not correct." in response.get_data(as_text=True)
    response = client.post(f"/account/two-factor/passkeys/{passkey_id}/remove", data={"password": PASSWORD})
    assert response.status_code == 303
    assert "Security: a passkey was removed" in security_subjects(outbox, member.email)
    assert not two_factor_on(app, member)
    browser = app.test_client()
    password_step(browser, member.email)
    assert signed_in(browser)
    # Someone else's passkey id is simply not found.
    assert client.post("/account/two-factor/passkeys/pk_nope/remove", data={"password": PASSWORD}).status_code == 422


@pytest.mark.parametrize(
    "credential",
    ["", "not json", "[]", '{"id": 5}', '{"id": "abc", "rawId": "abc", "type": "public-key", "response": {}}'],
)
def test_junk_passkey_answers_get_a_message_not_a_500(app, client, member, login, credential):
    login(client, member)
    client.post("/account/two-factor/passkeys/options")
    response = client.post("/account/two-factor/passkeys", data={"name": "x", "credential": credential})
    assert response.status_code == 422
    assert form_error(response.get_data(as_text=True))
    browser = app.test_client()
    browser.post("/signin/passkey/options")
    response = browser.post("/signin/passkey", data={"credential": credential})
    assert response.status_code == 303 and response.headers["Location"] == "/signin"


def test_a_passkey_answer_for_another_origin_is_refused(app, client, member, login):
    login(client, member)
    options = client.post("/account/two-factor/passkeys/options").get_json()
    answer = SoftAuthenticator().create(options, origin="https://evil.example")
    response = client.post("/account/two-factor/passkeys", data={"name": "x", "credential": json.dumps(answer)})
    assert response.status_code == 422
    assert "could not be verified" in form_error(response.get_data(as_text=True))


@pytest.mark.parametrize(
    ("base", "request_root", "expected"),
    [
        (
            "https://portal.example.com",
            "https://portal.example.com/",
            ("portal.example.com", "https://portal.example.com"),
        ),
        # A real domain is never swapped for the request's host.
        ("https://portal.example.com", "http://localhost:5000/", ("portal.example.com", "https://portal.example.com")),
        ("http://127.0.0.1:5000", "http://localhost:5000/", ("localhost", "http://localhost:5000")),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/", None),  # browsers refuse an IP as RP ID
        ("http://10.0.0.8:8000", "http://localhost:8000/", None),
        ("http://localhost:5000", "http://localhost:5001/", ("localhost", "http://localhost:5001")),
    ],
)
def test_the_relying_party_comes_from_public_base_url(base, request_root, expected):
    rp = two_factor.relying_party(base, request_root, "Portal")
    assert (rp and (rp.id, rp.origin)) == expected if expected else rp is None


def test_key_rotation_reseals_authenticator_secrets_so_the_old_key_can_go(app, client, member, login, monkeypatch):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", key_a)
    login(client, member)
    secret, _ = enrol_totp(client)

    monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", f"{key_b},{key_a}")
    result = app.test_cli_runner().invoke(args=["credentials", "rotate-keys"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Re-sealed [1-9]\d* authenticator-app secret\(s\); 0 could not be decrypted.", result.output)
    with app.app_context():
        assert db.session.get(UserTwoFactor, member.user.id).totp_key_id == crypto.parse_keys(key_b).primary_id

    monkeypatch.setitem(app.config, "CREDENTIALS_KEYS", key_b)
    browser = app.test_client()
    password_step(browser, member.email)
    assert second_step(browser, code_for(secret, 1)).status_code == 303
