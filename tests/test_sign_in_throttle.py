"""Sign-in throttling: per address (Flask-Limiter) and per account from any number of addresses."""

from datetime import timedelta

import pytest

from portal.auth import throttle
from portal.extensions import db
from portal.models import SignInThrottle, utcnow
from tests.conftest import PASSWORD, form_error, link_in, make_app, signed_in

HELD = "Too many failed sign-ins for this account"


def attempt(client, email: str, password: str, ip: str):
    return client.post("/signin", data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def app(database_url):
    # No per-address limit here (tests/test_auth.py covers it): only the per-account rule stops these.
    return make_app(database_url, SIGNIN_ACCOUNT_MAX_FAILURES=5)


@pytest.fixture
def user(make_tenant, make_user):
    return make_user(make_tenant(company_name="Held Co"), role="owner")


def test_wrong_passwords_from_many_addresses_hold_the_account_and_email_its_owner(app, client, user, outbox):
    for n in range(4):
        response = attempt(client, user.email, "not the password", f"10.0.0.{n}")
        assert response.status_code == 422
        assert form_error(response.get_data(as_text=True)) == "Email or password is not correct."
    fifth = attempt(client, user.email, "not the password", "10.0.0.99")
    assert fifth.status_code == 429
    assert HELD in form_error(fifth.get_data(as_text=True))

    # Held: even the right password, from a fresh address, does not get in.
    right = attempt(client, user.email, PASSWORD, "10.0.1.1")
    assert right.status_code == 429 and not signed_in(client)

    [notice] = [m for m in outbox(user.email) if "paused" in m.subject]
    assert "Nobody got in" in notice.text_body
    # The reset link in it lifts the hold: the right person is never locked out for good.
    reset = link_in(notice.text_body, "/reset-password/")
    assert client.post(reset, data={"password": "a fresh lantern passphrase"}).status_code == 303
    assert attempt(client, user.email, "a fresh lantern passphrase", "10.0.2.1").status_code == 303
    assert signed_in(client)


def test_a_hold_ends_by_itself_and_the_right_password_then_works(app, client, user):
    for n in range(5):
        attempt(client, user.email, "not the password", f"10.0.0.{n}")
    assert attempt(client, user.email, PASSWORD, "10.0.0.7").status_code == 429
    with app.app_context():
        row = db.session.get(SignInThrottle, throttle.key_for(user.email))
        row.held_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert attempt(client, user.email, PASSWORD, "10.0.0.8").status_code == 303
    with app.app_context():
        assert db.session.get(SignInThrottle, throttle.key_for(user.email)) is None


def test_guessing_on_after_a_hold_holds_again_for_twice_as_long(app, client, user):
    for n in range(5):
        attempt(client, user.email, "not the password", f"10.0.0.{n}")
    with app.app_context():
        row = db.session.get(SignInThrottle, throttle.key_for(user.email))
        first = row.held_until - row.last_failed_at
        row.held_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert attempt(client, user.email, "still not it", "10.0.0.50").status_code == 429
    with app.app_context():
        row = db.session.get(SignInThrottle, throttle.key_for(user.email))
        assert row.held_until - row.last_failed_at == 2 * first == timedelta(minutes=30)


def test_an_unknown_email_is_held_the_same_way_so_holds_reveal_no_account(app, client, outbox):
    for n in range(4):
        assert attempt(client, "nobody@example.com", "not the password", f"10.0.0.{n}").status_code == 422
    response = attempt(client, "nobody@example.com", "not the password", "10.0.0.9")
    assert response.status_code == 429 and HELD in form_error(response.get_data(as_text=True))
    assert outbox("nobody@example.com") == []


def test_a_good_sign_in_clears_the_count(app, client, user):
    for n in range(4):
        attempt(client, user.email, "not the password", f"10.0.0.{n}")
    assert attempt(client, user.email, PASSWORD, "10.0.0.5").status_code == 303
    client.post("/signout")
    for n in range(4):
        assert attempt(client, user.email, "not the password", f"10.0.3.{n}").status_code == 422
