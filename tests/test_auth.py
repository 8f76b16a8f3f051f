"""Accounts: sign-up, sign-in, sign-out, throttling and password reset, through HTTP."""

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from portal.extensions import db
from portal.models import AuditEvent, Membership, PasswordReset, Tenant, User, utcnow
from portal.security import hash_token
from tests.conftest import HTMX, PASSWORD, field_error, form_error, link_in, make_app, signed_in

NEW_PASSWORD = "a brand new passphrase"


def sign_up_data(**changes) -> dict:
    suffix = uuid.uuid4().hex[:8]
    data = {
        "company_name": "Acme Widgets",
        "tenant_id": f"acme_{suffix}",
        "name": "Fay Founder",
        "email": f"fay-{suffix}@acme.example",
        "password": "long enough password",
    }
    data.update(changes)
    return data


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def user_by_email(app, email: str) -> User | None:
    with app.app_context():
        return db.session.execute(select(User).where(User.email == email.lower())).scalar_one_or_none()


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


# --- sign-up ---------------------------------------------------------------------------


def test_sign_up_creates_the_tenant_and_makes_the_person_its_owner(client, app):
    data = sign_up_data(email="Fay.Founder@Acme.Example")
    response = client.post("/signup", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/overview"

    page = client.get("/overview").get_data(as_text=True)
    assert "Welcome! Your account Acme Widgets is ready." in page
    assert f"<code>{data['tenant_id']}</code>" in page
    assert "you are <strong>owner</strong>" in page

    with app.app_context():
        tenant = db.session.get(Tenant, data["tenant_id"])
        assert (tenant.company_name, tenant.status, tenant.contact_email) == (
            "Acme Widgets",
            "active",
            "fay.founder@acme.example",
        )
        [membership] = tenant.memberships
        assert membership.role == "owner"
        assert membership.user.email == "fay.founder@acme.example"
        assert membership.user.name == "Fay Founder"
        # The password is stored as an argon2id hash, never as typed.
        assert membership.user.password_hash.startswith("$argon2id$")

    other = app.test_client()
    other.post("/signin", data={"email": "fay.founder@acme.example", "password": data["password"]})
    assert signed_in(other)


def test_sign_up_is_recorded_as_done_by_the_person_from_their_address(client, app):
    client.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    data = sign_up_data()
    client.post("/signup", data=data)
    page = client.get("/activity").get_data(as_text=True)
    rows = re.findall(r'<tr data-testid="audit-row" data-action="([^"]+)">(.*?)</tr>', page, flags=re.S)
    actions = {action: row for action, row in rows}
    assert set(actions) == {"tenant.created", "member.joined", "subscription.started", "invoice.issued"}
    for row in actions.values():
        assert data["email"] in row
        assert "198.51.100.4" in row


@pytest.mark.parametrize("tenant_id", ["abc", "A" * 50, "Mixed_Case_09"])
def test_sign_up_accepts_tenant_ids_of_letters_digits_and_underscores_from_3_to_50(client, app, tenant_id):
    response = client.post("/signup", data=sign_up_data(tenant_id=tenant_id))
    assert response.status_code == 303
    assert count(app, Tenant, Tenant.tenant_id == tenant_id) == 1


@pytest.mark.parametrize(
    ("tenant_id", "message"),
    [
        ("ab", "Use 3 to 50 letters, digits or underscores."),
        ("a" * 51, "Use 3 to 50 letters, digits or underscores."),
        ("has space", "Use 3 to 50 letters, digits or underscores."),
        ("dash-ed", "Use 3 to 50 letters, digits or underscores."),
        ("ümlaut", "Use 3 to 50 letters, digits or underscores."),
        ("trailing_newline\n", "Use 3 to 50 letters, digits or underscores."),
        ("", "This field is required."),
    ],
)
def test_sign_up_with_a_bad_tenant_id_says_why_beside_the_field_and_writes_nothing(client, app, tenant_id, message):
    data = sign_up_data(tenant_id=tenant_id)
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "tenant_id") == message
    # What was typed stays in the form (the password is never echoed back).
    assert 'value="Acme Widgets"' in page
    assert f'value="{data["email"]}"' in page
    assert 'value="Fay Founder"' in page
    assert data["password"] not in page
    assert user_by_email(app, data["email"]) is None
    assert count(app, Tenant, Tenant.company_name == "Acme Widgets") == 0


@pytest.mark.parametrize("spelling", [str, str.upper])
def test_sign_up_with_a_taken_tenant_id_in_any_case_is_refused_and_writes_nothing(client, app, make_tenant, spelling):
    existing = make_tenant()
    data = sign_up_data(tenant_id=spelling(existing.tenant_id))
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "tenant_id") == f"Tenant {data['tenant_id']} already exists."
    assert f'value="{data["tenant_id"]}"' in page
    assert user_by_email(app, data["email"]) is None
    assert count(app, Membership, Membership.tenant_id == existing.tenant_id) == 1


def test_sign_up_with_an_email_already_in_use_is_refused_and_writes_nothing(client, app, make_tenant):
    existing = make_tenant()
    data = sign_up_data(email=existing.contact_email.upper())
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "email") == "An account with this email already exists. Sign in instead."
    assert count(app, Tenant, Tenant.tenant_id == data["tenant_id"]) == 0


# Strong at both ends of the length range: ten random characters, and 256 that never repeat.
LONGEST = "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(4))


@pytest.mark.parametrize("password", ["q7#Vt2!mZr", LONGEST])
def test_sign_up_accepts_strong_passwords_from_10_to_256_characters(client, app, password):
    data = sign_up_data(password=password)
    assert client.post("/signup", data=data).status_code == 303
    other = app.test_client()
    other.post("/signin", data={"email": data["email"], "password": password})
    assert signed_in(other)


@pytest.mark.parametrize("password", ["x" * 9, "x" * 257])
def test_sign_up_with_a_too_short_or_too_long_password_is_refused(client, app, password):
    data = sign_up_data(password=password)
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    assert (
        field_error(response.get_data(as_text=True), "password") == "Field must be between 10 and 256 characters long."
    )
    assert user_by_email(app, data["email"]) is None
    assert count(app, Tenant, Tenant.tenant_id == data["tenant_id"]) == 0


@pytest.mark.parametrize(
    ("password", "advice"),
    [
        ("password123", "This is a very common password."),
        ("qwertyuiop12", "Add another word or two."),
        ("acmewidgets1", "Add another word or two."),
    ],
)
def test_sign_up_with_an_easily_guessed_password_is_refused_with_advice(client, app, password, advice):
    data = sign_up_data(password=password, company_name="Acme Widgets")
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    message = field_error(response.get_data(as_text=True), "password")
    assert message.startswith("This password is too easy to guess.") and advice in message
    assert user_by_email(app, data["email"]) is None
    assert count(app, Tenant, Tenant.tenant_id == data["tenant_id"]) == 0


def test_sign_up_with_several_mistakes_shows_each_beside_its_field(client):
    response = client.post("/signup", data=sign_up_data(company_name="", email="not-an-email", password="short"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "company_name") == "This field is required."
    assert field_error(page, "email") == "Invalid email address."
    assert field_error(page, "password") == "Field must be between 10 and 256 characters long."
    assert 'value="not-an-email"' in page


def test_htmx_sign_up_with_errors_gets_only_the_form_fragment(client, app):
    data = sign_up_data(tenant_id="x")
    response = client.post("/signup", data=data, headers=HTMX)
    # htmx swaps only 2xx answers, so the re-rendered form comes back as 200.
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    page = response.get_data(as_text=True).strip()
    assert page.startswith('<form method="post" action="/signup" id="sign-up-form"')
    assert page.endswith("</form>")
    assert "<html" not in page and "<header" not in page and "Create your account" not in page
    assert field_error(page, "tenant_id") == "Use 3 to 50 letters, digits or underscores."
    assert 'value="Acme Widgets"' in page and 'value="x"' in page
    assert user_by_email(app, data["email"]) is None


def test_htmx_sign_up_that_succeeds_tells_htmx_to_go_to_the_overview(client):
    response = client.post("/signup", data=sign_up_data(), headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/overview"
    assert signed_in(client)


@pytest.mark.parametrize(
    ("company_name", "suggestion"),
    [
        ("ACME, Inc.", "acme_inc"),
        ("  Big   Data GmbH ", "big_data_gmbh"),
        ("AB", "ab_co"),
        ("X" * 80, "x" * 50),
        ("Müller & Söhne", "muller_sohne"),  # transliterated, not m_ller_s_hne
        ("Øresund Straße", "oresund_strasse"),
    ],
)
def test_tenant_id_is_suggested_from_the_company_name(client, company_name, suggestion):
    response = client.get("/signup/suggest-id", query_string={"company_name": company_name}, headers=HTMX)
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert f'<code data-testid="suggested-tenant-id">{suggestion}</code>' in fragment
    assert "<html" not in fragment


def test_the_suggestion_fills_the_account_id_field_until_the_person_types_their_own(client):
    def field_value(query):
        fragment = client.get("/signup/suggest-id", query_string=query, headers=HTMX).get_data(as_text=True)
        return re.search(r'<input[^>]*name="tenant_id"[^>]*value="([^"]*)"', fragment).group(1)

    assert field_value({"company_name": "Müller & Söhne", "tenant_id": ""}) == "muller_sohne"
    # Still following the company name while the field holds the previous suggestion...
    query = {"company_name": "Müller & Söhne KG", "tenant_id": "muller_sohne", "suggested_tenant_id": "muller_sohne"}
    assert field_value(query) == "muller_sohne_kg"
    # ...but an ID the person typed is theirs.
    query = {"company_name": "Müller & Söhne KG", "tenant_id": "ms_berlin", "suggested_tenant_id": "muller_sohne"}
    assert field_value(query) == "ms_berlin"


def test_no_tenant_id_is_suggested_for_a_name_without_letters_or_digits(client):
    response = client.get("/signup/suggest-id", query_string={"company_name": "!!! ???"}, headers=HTMX)
    assert response.status_code == 200
    assert "Suggested account ID" not in response.get_data(as_text=True)


def test_sign_up_link_with_a_company_name_prefills_the_suggested_id(client):
    page = client.get("/signup", query_string={"company_name": "Nimbus Cloud Ltd"}).get_data(as_text=True)
    assert 'value="Nimbus Cloud Ltd"' in page
    assert 'value="nimbus_cloud_ltd"' in page


def test_suggested_tenant_id_is_accepted_by_sign_up(client, app):
    fragment = client.get("/signup/suggest-id", query_string={"company_name": "Orbit & Co. 2025"}).get_data(
        as_text=True
    )
    suggestion = re.search(r'data-testid="suggested-tenant-id">([^<]+)<', fragment).group(1)
    assert client.post("/signup", data=sign_up_data(tenant_id=suggestion)).status_code == 303
    assert count(app, Tenant, Tenant.tenant_id == suggestion) == 1


# --- sign-in ---------------------------------------------------------------------------


@pytest.fixture
def owner(make_tenant, make_user):
    return make_user(make_tenant(company_name="Signin Co"), role="owner")


def test_sign_in_with_the_right_password_opens_the_overview(client, owner):
    response = client.post("/signin", data={"email": owner.email.upper(), "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/overview"
    assert "Signin Co" in client.get("/overview").get_data(as_text=True)


def test_wrong_password_and_unknown_email_get_the_same_answer(client, app, owner):
    wrong_password = client.post("/signin", data={"email": owner.email, "password": "not the password"})
    unknown_email = app.test_client().post("/signin", data={"email": "nobody@nowhere.example", "password": PASSWORD})
    assert wrong_password.status_code == unknown_email.status_code == 422
    assert form_error(wrong_password.get_data(as_text=True)) == "Email or password is not correct."
    assert form_error(unknown_email.get_data(as_text=True)) == "Email or password is not correct."
    # The typed email is kept, the password is not.
    assert f'value="{owner.email}"' in wrong_password.get_data(as_text=True)
    assert "not the password" not in wrong_password.get_data(as_text=True)
    assert not signed_in(client)


def test_signed_out_visitor_is_sent_to_sign_in_and_brought_back_afterwards(client, owner):
    response = client.get("/team")
    assert response.status_code == 302
    assert response.headers["Location"] == "/signin?next=%2Fteam"
    response = client.post("/signin?next=%2Fteam", data={"email": owner.email, "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/team"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example/phish",
        "http:evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/\r\nSet-Cookie: stolen=1",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_redirects_off_site(client, owner, target):
    response = client.post("/signin", query_string={"next": target}, data={"email": owner.email, "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/overview"
    assert "stolen" not in str(response.headers)
    assert signed_in(client)


def test_signed_in_person_opening_sign_in_goes_to_the_overview(client, owner, login):
    login(client, owner)
    response = client.get("/signin")
    assert response.status_code == 302
    assert response.headers["Location"] == "/overview"


def test_sign_out_ends_the_session_on_the_server(client, app, owner, login):
    login(client, owner)
    cookie = session_cookie(client)

    # The copied cookie is a working key while the session lives ...
    copy = app.test_client()
    copy.set_cookie("session", cookie)
    assert signed_in(copy)

    response = client.post("/signout")
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin"
    assert "You are signed out." in client.get("/signin").get_data(as_text=True)
    assert not signed_in(client)

    # ... and worthless once signed out: replaying it on a fresh browser gets nowhere.
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    response = replay.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin")
    assert replay.get("/team").status_code == 302
    assert replay.post("/team/invitations", data={"email": "x@example.com", "role": "viewer"}).status_code == 302


def test_signing_in_again_replaces_the_previous_session(client, app, owner, login):
    login(client, owner)
    first = session_cookie(client)
    login(client, owner)
    assert session_cookie(client) != first
    replay = app.test_client()
    replay.set_cookie("session", first)
    assert not signed_in(replay)
    assert signed_in(client)


def test_sign_out_leaves_the_persons_other_browsers_signed_in(client, app, owner, login):
    phone = app.test_client()
    login(phone, owner)
    login(client, owner)
    client.post("/signout")
    assert signed_in(phone)


@pytest.fixture
def throttled_app(database_url):
    """An app of its own that allows three sign-in attempts a minute."""
    # Each app keeps its own on/off setting: the suite's app stays unthrottled meanwhile.
    return make_app(database_url, RATELIMIT_ENABLED=True, SIGNIN_RATE_LIMIT="3 per minute")


def test_fourth_sign_in_attempt_in_a_minute_is_refused_with_a_friendly_page(throttled_app, owner):
    client = throttled_app.test_client()
    # A fresh address each run: with Redis the counters outlive the test.
    client.environ_base["REMOTE_ADDR"] = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
    for _ in range(3):
        response = client.post("/signin", data={"email": owner.email, "password": "guess"})
        assert response.status_code == 422
    # Even the right password is refused once the limit is reached.
    response = client.post("/signin", data={"email": owner.email, "password": PASSWORD})
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "Too many attempts" in page
    assert "Please wait a minute and try again." in page
    assert '<header class="site">' in page
    assert not signed_in(client)
    # Reading the sign-in page is not throttled.
    assert client.get("/signin").status_code == 200


# --- password reset --------------------------------------------------------------------


def request_reset(client, email: str):
    return client.post("/forgot-password", data={"email": email})


def reset_link(outbox, email: str) -> str:
    [message] = outbox(email)[:1]
    assert message.subject == "Reset your password"
    assert message.html_body and message.text_body
    return link_in(message.text_body, "/reset-password/")


def test_emails_greet_a_person_by_name_in_the_branded_frame(client, app, make_tenant, make_user, outbox):
    member = make_user(make_tenant(company_name="Greeting Co"), role="admin", name="Wanda Walker")
    request_reset(client, member.email)
    [message] = outbox(member.email)
    assert message.text_body.startswith("Hello Wanda Walker,")
    assert "Hello Wanda Walker," in message.html_body and ">Portal</a>" in message.html_body
    # Someone without a name on file is greeted plainly, never by an email address.
    with app.app_context():
        db.session.get(User, member.user.id).name = ""
        db.session.commit()
    request_reset(app.test_client(), member.email)
    assert outbox(member.email)[0].text_body.startswith("Hello,\n")


def test_reset_request_gets_the_same_answer_for_known_and_unknown_emails(client, app, owner, outbox):
    known = request_reset(client, owner.email)
    unknown = request_reset(app.test_client(), "nobody@nowhere.example")
    assert known.status_code == unknown.status_code == 303
    assert known.headers["Location"] == unknown.headers["Location"] == "/signin"
    message = "If an account exists for that email, a reset link is on its way."
    assert message in client.get("/signin").get_data(as_text=True)
    assert len(outbox(owner.email)) == 1
    assert outbox("nobody@nowhere.example") == []


def test_reset_link_sets_the_new_password_once_and_ends_every_other_session(client, app, owner, outbox, login):
    laptop = app.test_client()
    login(laptop, owner)
    request_reset(client, owner.email)
    path = reset_link(outbox, owner.email)

    form = client.get(path)
    assert form.status_code == 200
    assert "Choose a new password" in form.get_data(as_text=True)
    response = client.post(path, data={"password": NEW_PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin"
    assert "Your password is changed. Sign in with the new one." in client.get("/signin").get_data(as_text=True)

    assert not signed_in(laptop)
    old = app.test_client().post("/signin", data={"email": owner.email, "password": PASSWORD})
    assert old.status_code == 422
    new = app.test_client()
    assert new.post("/signin", data={"email": owner.email, "password": NEW_PASSWORD}).status_code == 303
    assert signed_in(new)

    # The link worked once; now it shows the "does not work" page and changes nothing.
    again = client.post(path, data={"password": "yet another passphrase"})
    assert again.status_code == 400
    assert "This reset link does not work" in again.get_data(as_text=True)
    assert client.get(path).status_code == 400
    fresh = app.test_client()
    assert fresh.post("/signin", data={"email": owner.email, "password": NEW_PASSWORD}).status_code == 303


def test_expired_reset_link_shows_the_invalid_page_and_changes_nothing(client, app, owner, outbox):
    request_reset(client, owner.email)
    path = reset_link(outbox, owner.email)
    with app.app_context():
        db.session.execute(update(PasswordReset).values(expires_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    assert "This reset link does not work" in client.get(path).get_data(as_text=True)
    response = client.post(path, data={"password": NEW_PASSWORD})
    assert response.status_code == 400
    assert "Ask for a new link" in response.get_data(as_text=True)
    assert app.test_client().post("/signin", data={"email": owner.email, "password": PASSWORD}).status_code == 303


def test_made_up_reset_link_shows_the_invalid_page(client):
    response = client.get("/reset-password/not-a-real-token")
    assert response.status_code == 400
    assert "This reset link does not work" in response.get_data(as_text=True)


def test_reset_link_expires_after_an_hour(client, app, owner, outbox):
    request_reset(client, owner.email)
    with app.app_context():
        reset = db.session.execute(select(PasswordReset).join(User).where(User.email == owner.email)).scalar_one()
        assert timedelta(minutes=59) < reset.expires_at - utcnow() <= timedelta(minutes=60)


def test_too_short_new_password_is_refused_and_the_link_keeps_working(client, app, owner, outbox):
    request_reset(client, owner.email)
    path = reset_link(outbox, owner.email)
    response = client.post(path, data={"password": "short"})
    assert response.status_code == 422
    assert (
        field_error(response.get_data(as_text=True), "password") == "Field must be between 10 and 256 characters long."
    )
    assert app.test_client().post("/signin", data={"email": owner.email, "password": PASSWORD}).status_code == 303
    assert client.post(path, data={"password": NEW_PASSWORD}).status_code == 303


def test_using_one_reset_link_voids_the_others_sent_earlier(client, app, owner, outbox):
    request_reset(client, owner.email)
    earlier = reset_link(outbox, owner.email)
    request_reset(client, owner.email)
    later = reset_link(outbox, owner.email)
    assert earlier != later
    assert client.post(later, data={"password": NEW_PASSWORD}).status_code == 303
    response = client.post(earlier, data={"password": "an attackers passphrase"})
    assert response.status_code == 400
    assert app.test_client().post("/signin", data={"email": owner.email, "password": NEW_PASSWORD}).status_code == 303


def test_reset_tokens_are_stored_only_as_hashes(client, app, owner, outbox):
    request_reset(client, owner.email)
    token = reset_link(outbox, owner.email).rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 bits, URL-safe base64
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM password_resets")).all()
        assert rows
        assert all(token not in str(value) for row in rows for value in row)
        assert (
            db.session.execute(
                select(PasswordReset).where(PasswordReset.token_hash == hash_token(token))
            ).scalar_one_or_none()
            is not None
        )


def test_password_reset_is_written_to_the_audit_log(client, app, owner, outbox):
    client.environ_base["REMOTE_ADDR"] = "192.0.2.55"
    request_reset(client, owner.email)
    client.post(reset_link(outbox, owner.email), data={"password": NEW_PASSWORD})
    with app.app_context():
        event = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "user.password_reset", AuditEvent.actor_label == owner.email)
        ).scalar_one()
        assert event.ip == "192.0.2.55"


def test_suggested_tenant_id_skips_ids_already_taken(client):
    assert (
        client.post("/signup", data=sign_up_data(company_name="Orbit Labs", tenant_id="orbit_labs")).status_code == 303
    )
    response = client.get("/signup/suggest-id", query_string={"company_name": "ORBIT labs"}, headers=HTMX)
    assert '<code data-testid="suggested-tenant-id">orbit_labs_2</code>' in response.get_data(as_text=True)


def test_the_database_refuses_a_tenant_id_differing_only_in_case(app):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        db.session.add(
            Tenant(tenant_id="casecheck", company_name="One", contact_email="a@example.com", metadata_json={})
        )
        db.session.commit()
        db.session.add(
            Tenant(tenant_id="CaseCheck", company_name="Two", contact_email="b@example.com", metadata_json={})
        )
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_a_late_answer_to_a_request_sent_before_sign_up_does_not_sign_the_person_out(app):
    # The sign-up page fires an htmx suggestion while the person types; its answer can come
    # back after the sign-up's. It must not set the old anonymous cookie again.
    browser = app.test_client()
    browser.get("/signup")  # an anonymous session with a CSRF token
    anonymous_cookie = browser.get_cookie("session").value
    assert browser.post("/signup", data=sign_up_data()).status_code == 303

    late = app.test_client()
    late.set_cookie("session", anonymous_cookie)
    response = late.get("/signup/suggest-id", query_string={"company_name": "Acme"}, headers=HTMX)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert signed_in(browser)


def test_a_sign_in_from_a_new_kind_of_device_is_told_to_the_person_and_logged(client, app, owner, outbox):
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
    newer_firefox = firefox.replace("133.0", "134.0")
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Version/18.1 Safari/604.1"

    def sign_in_with(agent):
        browser = app.test_client()
        browser.post("/signin", data={"email": owner.email, "password": PASSWORD}, headers={"User-Agent": agent})
        assert signed_in(browser)

    sign_in_with(firefox)  # the first sign-in ever: nothing to compare with
    sign_in_with(newer_firefox)  # the same browser, updated: not new
    assert [m.subject for m in outbox(owner.email)] == []
    sign_in_with(iphone)
    [notice] = outbox(owner.email)
    assert notice.subject == "Security: someone signed in from a new device"
    assert "Device: Safari on iPhone" in notice.text_body
    with app.app_context():
        assert db.session.query(AuditEvent).filter_by(action="user.sign_in_new_device").count() >= 1
