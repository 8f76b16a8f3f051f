"""The person's own account page: change password, change email, and the signed-in sessions."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from portal.access import Actor
from portal.auth import services
from portal.auth.user_agents import describe
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.models import AuditEvent, EmailChange, EmailMessage, User, UserSession, utcnow
from portal.security import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, hash_token
from tests.conftest import HTMX, PASSWORD, field_error, link_in, signed_in

NEW_PASSWORD = "a brand new passphrase"
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


@pytest.fixture
def person(make_tenant, make_user):
    return make_user(make_tenant(company_name="Account Co"), role="owner")


@pytest.fixture
def browser(app, login):
    """browser(member, user_agent, ip) -> a test client signed in as that person from that device."""

    def open_one(who, user_agent: str = FIREFOX_WINDOWS, ip: str = "198.51.100.7", password: str = PASSWORD):
        client = app.test_client()
        client.environ_base.update(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)
        login(client, who, password)
        return client

    return open_one


def can_sign_in(app, email: str, password: str) -> bool:
    return app.test_client().post("/signin", data={"email": email, "password": password}).status_code == 303


def sign_in_email(app, member) -> str:
    with app.app_context():
        return db.session.get(User, member.user.id).email


def subjects(outbox, address: str) -> list[str]:
    return [message.subject for message in outbox(address)]


def session_rows(page: str) -> list[dict]:
    """The sessions the account page lists, as a person reads them."""
    rows = re.findall(
        r'<li data-testid="session-row" data-session-id="([^"]+)"( data-current="true")?>(.*?)</li>', page, flags=re.S
    )
    return [
        {
            "id": session_id,
            "current": bool(current),
            "device": re.search(r'data-testid="session-device">([^<]+)<', body).group(1),
            "text": re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip(),
        }
        for session_id, current, body in rows
    ]


def flashes(page: str) -> list[str]:
    return re.findall(r'<li class="flash flash-\w+" role="status">([^<]*)</li>', page)


def audit_actions(app, user_id: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.execute(
                select(AuditEvent.action).where(AuditEvent.target_id == user_id).order_by(AuditEvent.created_at)
            ).scalars()
        )


# --- change password -------------------------------------------------------------------


def change_password(client, current=PASSWORD, new=NEW_PASSWORD, again=None, headers=None):
    data = {"current_password": current, "new_password": new, "new_password_confirm": new if again is None else again}
    return client.post("/account/password", data=data, headers=headers or {})


def test_changing_the_password_signs_out_other_browsers_but_keeps_this_one(app, person, browser, outbox):
    laptop = browser(person)
    phone = browser(person, SAFARI_IPHONE, "203.0.113.9")
    stolen_copy = app.test_client()
    stolen_copy.set_cookie("session", laptop.get_cookie("session").value)
    assert signed_in(stolen_copy)

    response = change_password(laptop)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    page = laptop.get("/account").get_data(as_text=True)
    assert flashes(page) == ["Your password is changed. Every other browser and device is signed out."]

    assert signed_in(laptop)
    assert not signed_in(phone)
    # A copy of this browser's cookie taken before the change is worthless now, too.
    assert not signed_in(stolen_copy)
    assert [row["device"] for row in session_rows(laptop.get("/account").get_data(as_text=True))] == [
        "Firefox on Windows"
    ]

    assert not can_sign_in(app, person.email, PASSWORD)
    assert can_sign_in(app, person.email, NEW_PASSWORD)
    [notice] = [m for m in outbox(person.email) if m.subject == "Security: your password was changed"]
    assert "198.51.100.7" in notice.text_body
    assert "user.password_changed" in audit_actions(app, person.user.id)


def test_a_wrong_current_password_is_refused_beside_its_field_and_changes_nothing(app, person, browser, outbox):
    laptop = browser(person)
    phone = browser(person, SAFARI_IPHONE)
    response = change_password(laptop, current="not my password")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "current_password") == "That password is not correct."
    assert "not my password" not in page and NEW_PASSWORD not in page
    assert signed_in(laptop) and signed_in(phone)
    assert can_sign_in(app, person.email, PASSWORD)
    assert not can_sign_in(app, person.email, NEW_PASSWORD)
    assert "Security: your password was changed" not in subjects(outbox, person.email)


def test_new_passwords_that_differ_or_are_too_short_are_refused_beside_their_fields(app, person, browser):
    laptop = browser(person)
    mismatch = change_password(laptop, again="a brand new passphrasE")
    assert mismatch.status_code == 422
    assert field_error(mismatch.get_data(as_text=True), "new_password_confirm") == (
        "The two new passwords are not the same."
    )
    short = change_password(laptop, new="short")
    assert field_error(short.get_data(as_text=True), "new_password") == (
        f"Field must be between {PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH} characters long."
    )
    assert can_sign_in(app, person.email, PASSWORD)


def test_the_new_password_is_checked_by_the_password_rules_and_shown_beside_its_field(app, person):
    with app.test_request_context():
        user = db.session.get(User, person.user.id)
        with pytest.raises(ValidationFailed) as refused:
            services.change_password(Actor(user=user), user, PASSWORD, "x" * 7)
        assert refused.value.field == "new_password"
        with pytest.raises(ValidationFailed) as wrong:
            services.change_password(Actor(user=user), user, "wrong", NEW_PASSWORD)
        assert wrong.value.field == "current_password"
        db.session.rollback()


def test_htmx_password_change_with_errors_gets_only_the_form_back(person, browser):
    laptop = browser(person)
    response = change_password(laptop, current="nope", headers=HTMX)
    assert response.status_code == 200
    page = response.get_data(as_text=True).strip()
    assert page.startswith('<form method="post" action="/account/password" id="password-form"')
    assert page.endswith("</form>")
    assert field_error(page, "current_password") == "That password is not correct."


def test_htmx_password_change_that_succeeds_sends_the_browser_back_to_the_account_page(person, browser):
    laptop = browser(person)
    response = change_password(laptop, headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/account"
    assert signed_in(laptop)


def test_changing_the_password_spends_reset_links_sent_before(app, client, person, browser, outbox):
    client.post("/forgot-password", data={"email": person.email})
    reset = link_in(outbox(person.email)[0].text_body, "/reset-password/")
    change_password(browser(person))
    response = client.post(reset, data={"password": "an attackers passphrase"})
    assert response.status_code == 400
    assert "This reset link does not work" in response.get_data(as_text=True)
    assert can_sign_in(app, person.email, NEW_PASSWORD)


# --- change email ----------------------------------------------------------------------


def request_email_change(client, new_email: str, password: str = PASSWORD, headers=None):
    return client.post("/account/email", data={"new_email": new_email, "password": password}, headers=headers or {})


def confirmation_link(outbox, new_email: str) -> str:
    message = outbox(new_email)[0]
    assert message.subject == "Confirm your new sign-in email"
    return link_in(message.text_body, "/account/email/confirm/")


def test_asking_for_a_new_email_sends_a_link_to_it_tells_the_old_one_and_changes_nothing_yet(
    app, person, browser, outbox
):
    laptop = browser(person)
    response = request_email_change(laptop, "New.Address@Example.com")
    assert response.status_code == 303
    page = laptop.get("/account").get_data(as_text=True)
    assert flashes(page) == ["We sent a link to new.address@example.com. Your sign-in email changes when you open it."]
    assert "A change to <strong>new.address@example.com</strong> is waiting" in page

    link = confirmation_link(outbox, "new.address@example.com")
    assert link.startswith("/account/email/confirm/")
    [notice] = outbox(person.email)
    assert notice.subject == "Security: a change of your sign-in email was requested"
    assert "new.address@example.com" in notice.text_body
    assert "/account/email/confirm/" not in notice.text_body  # the old address never gets the link

    assert sign_in_email(app, person) == person.email
    assert can_sign_in(app, person.email, PASSWORD)
    assert not can_sign_in(app, "new.address@example.com", PASSWORD)
    assert "user.email_change_requested" in audit_actions(app, person.user.id)


def test_following_the_link_changes_the_sign_in_email_and_tells_the_old_address(app, person, browser, outbox):
    request_email_change(browser(person), "moved@example.com")
    link = confirmation_link(outbox, "moved@example.com")

    # The link works in any browser, signed in or not: it is what proves the new address.
    stranger_browser = app.test_client()
    page = stranger_browser.get(link)
    assert page.status_code == 200
    assert "Confirm your new sign-in email" in page.get_data(as_text=True)
    assert sign_in_email(app, person) == person.email  # opening it changes nothing; the button does

    response = stranger_browser.post(link)
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin"
    assert flashes(stranger_browser.get("/signin").get_data(as_text=True)) == [
        "Your sign-in email is now moved@example.com."
    ]
    assert sign_in_email(app, person) == "moved@example.com"
    assert can_sign_in(app, "moved@example.com", PASSWORD)
    assert not can_sign_in(app, person.email, PASSWORD)

    changed = [m for m in outbox(person.email) if m.subject == "Security: your sign-in email was changed"]
    assert len(changed) == 1
    assert "Old email: " + person.email in changed[0].text_body
    assert "New email: moved@example.com" in changed[0].text_body

    # Used once; the second time it says so and changes nothing.
    again = stranger_browser.post(link)
    assert again.status_code == 400
    assert "This confirmation link does not work" in again.get_data(as_text=True)
    assert stranger_browser.get(link).status_code == 400


def test_confirming_while_signed_in_returns_to_the_account_page_showing_the_new_email(app, person, browser, outbox):
    laptop = browser(person)
    request_email_change(laptop, "here@example.com")
    response = laptop.post(confirmation_link(outbox, "here@example.com"))
    assert response.headers["Location"] == "/account"
    page = laptop.get("/account").get_data(as_text=True)
    assert '<strong data-testid="current-email">here@example.com</strong>' in page
    assert "is waiting" not in page
    assert signed_in(laptop)


def test_an_expired_confirmation_link_shows_a_clear_page_and_changes_nothing(app, person, browser, outbox):
    request_email_change(browser(person), "late@example.com")
    link = confirmation_link(outbox, "late@example.com")
    with app.app_context():
        db.session.execute(update(EmailChange).values(expires_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    page = app.test_client().get(link)
    assert page.status_code == 400
    assert "This confirmation link does not work" in page.get_data(as_text=True)
    assert app.test_client().post(link).status_code == 400
    assert sign_in_email(app, person) == person.email


def test_confirmation_links_last_a_day(app, person, browser):
    request_email_change(browser(person), "day@example.com")
    with app.app_context():
        change = db.session.execute(select(EmailChange).where(EmailChange.user_id == person.user.id)).scalar_one()
        assert timedelta(hours=23, minutes=59) < change.expires_at - utcnow() <= timedelta(hours=24)


def test_a_made_up_confirmation_link_shows_the_invalid_page(client):
    response = client.get("/account/email/confirm/not-a-real-token")
    assert response.status_code == 400
    assert "This confirmation link does not work" in response.get_data(as_text=True)


def test_an_address_used_by_another_account_is_refused(app, person, browser, outbox, make_user, make_tenant):
    other = make_user(make_tenant(), role="viewer", email="taken@example.com")
    response = request_email_change(browser(person), "TAKEN@example.com")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "new_email") == (
        "This address is already used by another account."
    )
    assert outbox(other.email) == []
    assert outbox(person.email) == []


def test_an_address_taken_after_the_request_is_refused_when_confirming(
    app, person, browser, outbox, make_user, make_tenant
):
    request_email_change(browser(person), "contested@example.com")
    link = confirmation_link(outbox, "contested@example.com")
    make_user(make_tenant(), role="viewer", email="contested@example.com")

    response = app.test_client().post(link)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "Another account now uses this address, so your sign-in email was not changed." in page
    assert sign_in_email(app, person) == person.email
    assert "Security: your sign-in email was changed" not in subjects(outbox, person.email)


def test_the_current_address_in_any_case_is_refused(person, browser, outbox):
    response = request_email_change(browser(person), person.email.upper())
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "new_email") == "That is already your sign-in email."
    assert outbox(person.email) == []


def test_a_wrong_password_is_refused_and_no_link_is_sent(app, person, browser, outbox):
    response = request_email_change(browser(person), "nolink@example.com", password="not my password")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "password") == "That password is not correct."
    assert 'value="nolink@example.com"' in page  # what was typed stays
    assert outbox("nolink@example.com") == []
    assert outbox(person.email) == []


def test_a_malformed_address_is_refused_beside_its_field(person, browser):
    response = request_email_change(browser(person), "not-an-email")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "new_email") == "Invalid email address."


def test_htmx_email_change_with_errors_gets_only_the_form_back(person, browser):
    response = request_email_change(browser(person), "x@example.com", password="wrong", headers=HTMX)
    assert response.status_code == 200
    page = response.get_data(as_text=True).strip()
    assert page.startswith('<form method="post" action="/account/email" id="email-form"')
    assert field_error(page, "password") == "That password is not correct."


def test_a_newer_request_replaces_the_older_link(app, person, browser, outbox):
    laptop = browser(person)
    request_email_change(laptop, "typo@exmaple.com")
    mistyped = confirmation_link(outbox, "typo@exmaple.com")
    request_email_change(laptop, "right@example.com")
    assert app.test_client().post(mistyped).status_code == 400
    assert app.test_client().post(confirmation_link(outbox, "right@example.com")).status_code == 303
    assert sign_in_email(app, person) == "right@example.com"


def test_changing_the_password_cancels_a_pending_email_change(app, person, browser, outbox):
    laptop = browser(person)
    request_email_change(laptop, "pending@example.com")
    link = confirmation_link(outbox, "pending@example.com")
    change_password(laptop)
    assert app.test_client().post(link).status_code == 400
    assert sign_in_email(app, person) == person.email


def test_the_confirmation_link_is_kept_neither_in_the_database_nor_in_the_stored_email(app, person, browser, outbox):
    request_email_change(browser(person), "sealed@example.com")
    token = confirmation_link(outbox, "sealed@example.com").rsplit("/", 1)[1]
    assert len(token) >= 22
    with app.app_context():
        for table in ("email_changes", "email_messages"):
            rows = db.session.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608 - fixed names
            assert all(token not in str(value) for row in rows for value in row), table
        assert db.session.execute(
            select(EmailChange).where(EmailChange.token_hash == hash_token(token))
        ).scalar_one_or_none()
        stored = db.session.execute(select(EmailMessage).where(EmailMessage.to == "sealed@example.com")).scalar_one()
        assert "[[secret:0]]" in stored.text_body and stored.sealed_secrets


# --- sessions --------------------------------------------------------------------------


def test_the_sessions_list_names_each_browser_in_plain_words_and_marks_this_one(person, browser):
    laptop = browser(person, FIREFOX_WINDOWS, "198.51.100.7")
    browser(person, SAFARI_IPHONE, "203.0.113.9")
    rows = session_rows(laptop.get("/account").get_data(as_text=True))
    assert [(row["device"], row["current"]) for row in rows] == [
        ("Firefox on Windows", True),
        ("Safari on iPhone", False),
    ]
    assert "This browser" in rows[0]["text"] and "IP 198.51.100.7" in rows[0]["text"]
    assert "This browser" not in rows[1]["text"]
    assert "IP 203.0.113.9" in rows[1]["text"] and "signed in" in rows[1]["text"] and "last seen" in rows[1]["text"]


def test_signing_out_one_session_ends_exactly_that_one(app, person, browser, outbox):
    laptop = browser(person, FIREFOX_WINDOWS)
    phone = browser(person, SAFARI_IPHONE)
    tablet = browser(person, CHROME_ANDROID)
    phone_row = next(r for r in session_rows(laptop.get("/account").get_data(as_text=True)) if "iPhone" in r["device"])

    response = laptop.post(f"/account/sessions/{phone_row['id']}/sign-out")
    assert response.status_code == 303
    assert response.headers["Location"] == "/account#account-sessions"
    page = laptop.get("/account").get_data(as_text=True)
    assert flashes(page) == ["Safari on iPhone is signed out."]
    assert [row["device"] for row in session_rows(page)] == ["Firefox on Windows", "Chrome on Android"]

    assert not signed_in(phone)
    assert phone.get("/overview").headers["Location"].startswith("/signin")
    assert signed_in(laptop) and signed_in(tablet)
    assert "user.sessions_ended" in audit_actions(app, person.user.id)
    # One session picked from the list: recorded, but no email about it (only the two
    # sign-ins from devices never seen before were told, newest first).
    assert subjects(outbox, person.email) == ["Security: someone signed in from a new device"] * 2


def test_signing_out_all_other_sessions_keeps_only_this_browser(app, person, browser, outbox):
    laptop = browser(person, FIREFOX_WINDOWS)
    others = [browser(person, SAFARI_IPHONE), browser(person, CHROME_ANDROID)]
    assert "Sign out all other sessions" in laptop.get("/account").get_data(as_text=True)

    response = laptop.post("/account/sessions/sign-out-others")
    assert response.status_code == 303
    page = laptop.get("/account").get_data(as_text=True)
    assert flashes(page) == ["Signed out 2 other sessions."]
    assert [row["device"] for row in session_rows(page)] == ["Firefox on Windows"]
    assert "No other browser or device is signed in." in page
    assert "Sign out all other sessions" not in page

    assert signed_in(laptop)
    assert not any(signed_in(other) for other in others)
    assert subjects(outbox, person.email) == [
        "Security: your other sessions were signed out",
        *["Security: someone signed in from a new device"] * 2,
    ]

    laptop.post("/account/sessions/sign-out-others")
    assert flashes(laptop.get("/account").get_data(as_text=True)) == ["No other browser or device was signed in."]


def test_another_persons_session_id_is_not_found_and_stays_signed_in(app, person, browser, make_user, make_tenant):
    stranger = make_user(make_tenant(), role="admin")
    stranger_browser = browser(stranger)
    with app.app_context():
        stranger_session = db.session.execute(
            select(UserSession.id).where(UserSession.user_id == stranger.user.id)
        ).scalar_one()
    laptop = browser(person)
    response = laptop.post(f"/account/sessions/{stranger_session}/sign-out")
    assert response.status_code == 404
    assert signed_in(stranger_browser)
    assert laptop.post("/account/sessions/ses_doesnotexist/sign-out").status_code == 404
    assert laptop.post(f"/account/sessions/{'x' * 300}/sign-out").status_code == 404


def test_this_browser_is_not_signed_out_from_the_list(person, browser):
    laptop = browser(person)
    [row] = session_rows(laptop.get("/account").get_data(as_text=True))
    assert row["current"]
    response = laptop.post(f"/account/sessions/{row['id']}/sign-out")
    assert response.status_code == 303
    assert flashes(laptop.get("/account").get_data(as_text=True)) == [
        "That is this browser: use Sign out at the top of the page."
    ]
    assert signed_in(laptop)


def test_last_seen_is_refreshed_when_a_session_is_used_but_not_on_every_request(app, person, browser):
    laptop = browser(person)

    def set_last_seen(ago: timedelta):
        with app.app_context():
            db.session.execute(
                update(UserSession).where(UserSession.user_id == person.user.id).values(last_seen_at=utcnow() - ago)
            )
            db.session.commit()

    def last_seen():
        with app.app_context():
            return db.session.execute(
                select(UserSession.last_seen_at).where(UserSession.user_id == person.user.id)
            ).scalar_one()

    set_last_seen(timedelta(hours=3))
    laptop.get("/overview")
    assert utcnow() - last_seen() < timedelta(minutes=1)

    set_last_seen(timedelta(minutes=1))
    before = last_seen()
    laptop.get("/overview")
    assert last_seen() == before


def test_the_account_page_and_its_actions_need_a_signed_in_person(client):
    for path in ("/account/password", "/account/email", "/account/sessions/sign-out-others"):
        response = client.post(path, data={})
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/signin")


@pytest.mark.parametrize(
    ("user_agent", "described"),
    [
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (SAFARI_IPHONE, "Safari on iPhone"),
        (CHROME_ANDROID, "Chrome on Android"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on macOS",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
            "Safari/537.36",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1",
            "Safari on iPad",
        ),
        ("curl/8.5.0", "curl"),
        ("", "Unknown browser"),
        (None, "Unknown browser"),
    ],
)
def test_user_agents_are_described_in_plain_words(user_agent, described):
    assert describe(user_agent) == described
