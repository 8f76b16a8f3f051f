"""Invitations: sending, resending, revoking and accepting them, through HTTP."""

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from portal.extensions import db
from portal.models import EmailMessage, Invitation, Membership, Tenant, User, utcnow
from portal.security import hash_token
from portal.timezones import format_in
from tests.conftest import HTMX, PASSWORD, field_error, link_in, make_app, unique

NEW_PASSWORD = "the invitees own passphrase"


def problem(page: str) -> str:
    """The sentence an unusable invitation page gives as the reason."""
    match = re.search(r'<p data-testid="invitation-problem">(.*?)</p>', page, flags=re.S)
    return html.unescape(" ".join(match.group(1).split())) if match else ""


def invitation_row(app, tenant, email: str) -> Invitation | None:
    with app.app_context():
        return db.session.execute(
            select(Invitation).where(Invitation.tenant_id == tenant.tenant_id, Invitation.email == email)
        ).scalar_one_or_none()


def invitation_link(outbox, email: str) -> str:
    """The accept link of the newest invitation email to ``email``."""
    return link_in(outbox(email)[0].text_body, "/invite/")


def membership_of(app, tenant, email: str) -> Membership | None:
    with app.app_context():
        return db.session.execute(
            select(Membership).join(User).where(Membership.tenant_id == tenant.tenant_id, User.email == email)
        ).scalar_one_or_none()


def set_expiry(app, invitation_id: str, when) -> None:
    with app.app_context():
        db.session.execute(update(Invitation).where(Invitation.id == invitation_id).values(expires_at=when))
        db.session.commit()


def team_page(client) -> str:
    response = client.get("/team")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Inviting Co")


@pytest.fixture
def owner_client(client, tenant, make_user, login):
    login(client, make_user(tenant, role="owner"))
    return client


def invite(client, email: str, role: str = "developer", **extra):
    return client.post("/team/invitations", data={"email": email, "role": role, **extra})


def sent(client, outbox, email: str, role: str = "developer") -> str:
    """Invite ``email`` and return the emailed accept link."""
    response = invite(client, email, role)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return invitation_link(outbox, email)


# --- inviting --------------------------------------------------------------------------


@pytest.mark.parametrize("inviter_role", ["owner", "admin"])
@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_owner_and_admin_can_invite_with_any_role_but_owner(
    client, app, tenant, make_user, login, outbox, inviter_role, role
):
    inviter = make_user(tenant, role=inviter_role, name="Ina Inviter")
    login(client, inviter)
    email = f"{unique('new')}@example.com"
    response = invite(client, email.upper(), role)
    assert response.status_code == 303
    assert response.headers["Location"] == "/team"

    page = team_page(client)
    assert f"Invitation sent to {email}." in page
    row = re.search(rf'<tr data-testid="invitation-row" data-email="{re.escape(email)}">(.*?)</tr>', page, flags=re.S)
    assert row and f"<td>{role}</td>" in row.group(1) and "pending" in row.group(1)

    [message] = outbox(email)
    assert message.subject == "You are invited to join Inviting Co"
    assert f"invited you to join Inviting Co as {role}" in message.text_body
    # Named as a person, not as an email address.
    name = "Ina Inviter" if inviter_role != "owner" else inviter.user.name  # the owner is the tenant's own
    assert name and f"{name} invited you to join Inviting Co as {role}" in message.text_body
    assert inviter.email not in message.text_body
    assert "/invite/" in message.html_body
    saved = invitation_row(app, tenant, email)
    assert (saved.role, saved.status) == (role, "pending")


def test_the_invitation_expiry_reads_in_the_inviters_timezone(client, app, tenant, make_user, login, outbox):
    inviter = make_user(tenant, role="admin", name="Ina Inviter")
    with app.app_context():
        db.session.get(User, inviter.user.id).timezone = "Europe/Berlin"
        db.session.commit()
    login(client, inviter)
    invite(client, "berlin@example.com")
    saved = invitation_row(app, tenant, "berlin@example.com")
    [message] = outbox("berlin@example.com")
    shown = format_in(saved.expires_at, "Europe/Berlin")
    assert shown.endswith(("CET", "CEST")) and shown in message.text_body and shown in message.html_body


def test_invitation_expires_in_7_days_by_default(owner_client, app, tenant, outbox):
    before = utcnow()
    invite(owner_client, "later@example.com")
    saved = invitation_row(app, tenant, "later@example.com")
    assert before + timedelta(days=7) <= saved.expires_at <= utcnow() + timedelta(days=7)
    # In the one date format, with the zone named (the inviter chose none: UTC).
    assert format_in(saved.expires_at, None) in outbox("later@example.com")[0].text_body
    assert format_in(saved.expires_at, None).endswith(" UTC")
    # The form offers 7 as well.
    assert re.search(r'id="expires_in_days"[^>]*value="7"', team_page(owner_client))


def test_invitation_expiry_can_be_chosen(owner_client, app, tenant, outbox):
    invite(owner_client, "soon@example.com", expires_in_days=2)
    saved = invitation_row(app, tenant, "soon@example.com")
    assert timedelta(days=1, hours=23) < saved.expires_at - utcnow() <= timedelta(days=2)


@pytest.mark.parametrize("days", ["0", "31", "-1", "soon"])
def test_expiry_outside_1_to_30_days_is_refused(owner_client, app, tenant, outbox, days):
    response = invite(owner_client, "bad-expiry@example.com", expires_in_days=days)
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "expires_in_days")
    assert invitation_row(app, tenant, "bad-expiry@example.com") is None
    assert outbox("bad-expiry@example.com") == []


@pytest.mark.parametrize("role", ["owner", "superuser", ""])
def test_inviting_as_owner_or_an_unknown_role_is_refused_and_sends_nothing(owner_client, app, tenant, outbox, role):
    response = invite(owner_client, "wannabe@example.com", role)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "role") == "Not a valid choice."
    assert 'value="wannabe@example.com"' in page
    assert invitation_row(app, tenant, "wannabe@example.com") is None
    assert outbox("wannabe@example.com") == []


def test_invalid_email_is_refused_beside_the_field(owner_client, app, tenant):
    response = invite(owner_client, "not an email")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "email") == "Invalid email address."
    with app.app_context():
        assert db.session.query(Invitation).filter_by(tenant_id=tenant.tenant_id).count() == 0


def test_htmx_invite_with_errors_gets_only_the_invite_form(owner_client):
    response = owner_client.post("/team/invitations", data={"email": "x", "role": "owner"}, headers=HTMX)
    assert response.status_code == 200
    page = response.get_data(as_text=True).strip()
    assert page.startswith('<form method="post" action="/team/invitations" id="invite-form"')
    assert page.endswith("</form>")
    assert "<header" not in page and "Members" not in page
    assert field_error(page, "role") == "Not a valid choice."


def test_htmx_invite_that_succeeds_redirects_to_the_team_page(owner_client, outbox):
    response = owner_client.post("/team/invitations", data={"email": "hx@example.com", "role": "viewer"}, headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/team"
    assert len(outbox("hx@example.com")) == 1


def test_inviting_an_existing_member_says_so_and_sends_nothing(owner_client, app, tenant, make_user, outbox):
    member = make_user(tenant, role="viewer")
    response = invite(owner_client, member.email.upper())
    assert response.status_code == 422
    assert (
        field_error(response.get_data(as_text=True), "email") == f"{member.email} is already a member of this account."
    )
    assert invitation_row(app, tenant, member.email) is None
    assert outbox(member.email) == []


def test_inviting_an_email_with_a_pending_invitation_says_resend_instead(owner_client, app, tenant, outbox):
    sent(owner_client, outbox, "twice@example.com", "viewer")
    response = invite(owner_client, "Twice@Example.com", "admin")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "email") == (
        "twice@example.com already has a pending invitation. Resend it instead."
    )
    assert invitation_row(app, tenant, "twice@example.com").role == "viewer"
    assert len(outbox("twice@example.com")) == 1


def test_someone_in_another_account_can_be_invited(owner_client, app, tenant, make_tenant, make_user, outbox):
    elsewhere = make_user(make_tenant(), role="developer")
    assert invite(owner_client, elsewhere.email).status_code == 303
    assert invitation_row(app, tenant, elsewhere.email).status == "pending"


def test_invitation_tokens_are_stored_only_as_hashes(owner_client, app, tenant, outbox):
    token = sent(owner_client, outbox, "hashed@example.com").rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 bits, URL-safe base64
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM invitations")).all()
        assert rows
        assert all(token not in str(value) for row in rows for value in row)
    assert invitation_row(app, tenant, "hashed@example.com").token_hash == hash_token(token)
    # Nor does the team page show it.
    assert token not in team_page(owner_client)


# --- resend and revoke -----------------------------------------------------------------


def test_resend_makes_the_old_link_stop_working_and_the_new_one_work(owner_client, app, tenant, outbox):
    old_link = sent(owner_client, outbox, "resend@example.com", "admin")
    invitation = invitation_row(app, tenant, "resend@example.com")
    response = owner_client.post(f"/team/invitations/{invitation.id}/resend")
    assert response.status_code == 303
    page = team_page(owner_client)
    assert "A new invitation link was sent to resend@example.com." in page
    assert "2×" in page

    assert len(outbox("resend@example.com")) == 2
    new_link = invitation_link(outbox, "resend@example.com")
    assert new_link != old_link

    invitee = app.test_client()
    response = invitee.get(old_link)
    assert response.status_code == 404
    assert problem(response.get_data(as_text=True)) == (
        "This invitation link is not valid. It may have been replaced by a newer one."
    )
    assert invitee.post(old_link, data={"name": "R", "password": NEW_PASSWORD}).status_code == 404
    assert membership_of(app, tenant, "resend@example.com") is None

    response = invitee.post(new_link, data={"name": "Rea Sent", "password": NEW_PASSWORD})
    assert response.status_code == 303
    assert membership_of(app, tenant, "resend@example.com").role == "admin"


def test_resending_an_expired_invitation_gives_a_working_link_for_another_7_days(owner_client, app, tenant, outbox):
    sent(owner_client, outbox, "stale@example.com")
    invitation = invitation_row(app, tenant, "stale@example.com")
    set_expiry(app, invitation.id, utcnow() - timedelta(days=1))
    assert "expired" in team_page(owner_client)

    owner_client.post(f"/team/invitations/{invitation.id}/resend")
    assert invitation_row(app, tenant, "stale@example.com").expires_at > utcnow() + timedelta(days=6, hours=23)
    response = app.test_client().post(
        invitation_link(outbox, "stale@example.com"), data={"name": "", "password": NEW_PASSWORD}
    )
    assert response.status_code == 303


def test_revoked_invitation_link_shows_a_clear_revoked_page(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "revoked@example.com")
    invitation = invitation_row(app, tenant, "revoked@example.com")
    response = owner_client.post(f"/team/invitations/{invitation.id}/revoke")
    assert response.status_code == 303
    page = team_page(owner_client)
    assert "The invitation to revoked@example.com was revoked." in page
    assert '<tr data-testid="invitation-row" data-email="revoked@example.com">' not in page
    assert invitation_row(app, tenant, "revoked@example.com").status == "revoked"

    invitee = app.test_client()
    response = invitee.get(link)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This invitation cannot be used" in page
    assert problem(page) == "This invitation was revoked."
    response = invitee.post(link, data={"name": "Rev", "password": NEW_PASSWORD})
    assert problem(response.get_data(as_text=True)) == "This invitation was revoked."
    with app.app_context():
        assert db.session.query(User).filter_by(email="revoked@example.com").count() == 0


def test_revoked_invitation_cannot_be_resent_or_revoked_again(owner_client, app, tenant, outbox):
    sent(owner_client, outbox, "gone@example.com")
    invitation = invitation_row(app, tenant, "gone@example.com")
    owner_client.post(f"/team/invitations/{invitation.id}/revoke")
    owner_client.post(f"/team/invitations/{invitation.id}/resend")
    assert "This invitation is revoked and cannot be resent." in team_page(owner_client)
    owner_client.post(f"/team/invitations/{invitation.id}/revoke")
    assert "This invitation is already revoked." in team_page(owner_client)
    assert len(outbox("gone@example.com")) == 1


def test_unknown_invitation_id_is_not_found(owner_client):
    assert owner_client.post("/team/invitations/inv_doesnotexist/resend").status_code == 404
    assert owner_client.post("/team/invitations/inv_doesnotexist/revoke").status_code == 404


# --- links that cannot be used ---------------------------------------------------------


def test_expired_invitation_link_shows_a_clear_expired_page(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "late@example.com")
    set_expiry(app, invitation_row(app, tenant, "late@example.com").id, utcnow() - timedelta(minutes=1))
    invitee = app.test_client()
    response = invitee.get(link)
    assert response.status_code == 410
    assert problem(response.get_data(as_text=True)) == (
        "This invitation has expired. Ask the account's admin to send a new one."
    )
    response = invitee.post(link, data={"name": "Late", "password": NEW_PASSWORD})
    assert response.status_code == 410
    assert membership_of(app, tenant, "late@example.com") is None


def test_used_invitation_link_shows_a_clear_page(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "once@example.com")
    first = app.test_client()
    assert first.post(link, data={"name": "Once", "password": NEW_PASSWORD}).status_code == 303
    second = app.test_client()
    response = second.get(link)
    assert response.status_code == 409
    assert problem(response.get_data(as_text=True)) == "This invitation has already been used. Sign in to continue."
    response = second.post(link, data={"name": "Twice", "password": "someone elses password"})
    assert response.status_code == 409
    # The account made with the link keeps its own password.
    assert (
        app.test_client().post("/signin", data={"email": "once@example.com", "password": NEW_PASSWORD}).status_code
        == 303
    )


def test_made_up_invitation_link_shows_a_clear_page(client):
    response = client.get("/invite/" + "x" * 43)
    assert response.status_code == 404
    assert problem(response.get_data(as_text=True)).startswith("This invitation link is not valid.")


def test_invitation_to_a_deleted_account_cannot_be_used(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "toolate@example.com")
    owner_client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id})
    response = app.test_client().get(link)
    assert response.status_code == 409
    assert problem(response.get_data(as_text=True)) == "This account no longer exists."


# --- accepting -------------------------------------------------------------------------


def test_new_person_sets_name_and_password_and_joins_with_the_invited_role(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "newbie@example.com", "viewer")
    invitee = app.test_client()
    page = invitee.get(link).get_data(as_text=True)
    assert "Join Inviting Co" in page
    assert "You are invited as <strong>viewer</strong> (newbie@example.com)." in page
    assert "Create account and join" in page

    response = invitee.post(link, data={"name": "Nina Newbie", "password": NEW_PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/overview"
    overview = invitee.get("/overview").get_data(as_text=True)
    assert "Welcome to Inviting Co." in overview
    assert "you are <strong>viewer</strong>" in overview

    membership = membership_of(app, tenant, "newbie@example.com")
    assert membership.role == "viewer"
    with app.app_context():
        invitation = db.session.execute(select(Invitation).where(Invitation.email == "newbie@example.com")).scalar_one()
        assert invitation.status == "accepted"
        assert invitation.accepted_by_id == membership.user_id
        assert db.session.get(User, membership.user_id).name == "Nina Newbie"
    page = team_page(owner_client)
    assert '<tr data-testid="invitation-row" data-email="newbie@example.com">' not in page
    assert '<tr data-testid="member-row" data-email="newbie@example.com">' in page
    assert "Nina Newbie" in page


def test_new_person_with_a_too_short_password_is_asked_again_and_nothing_is_created(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "shorty@example.com")
    invitee = app.test_client()
    response = invitee.post(link, data={"name": "Shorty", "password": "short"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "password") == "Field must be between 10 and 256 characters long."
    assert 'value="Shorty"' in page
    assert invitation_row(app, tenant, "shorty@example.com").status == "pending"
    with app.app_context():
        assert db.session.query(User).filter_by(email="shorty@example.com").count() == 0
    assert invitee.post(link, data={"name": "Shorty", "password": NEW_PASSWORD}).status_code == 303


def test_existing_user_must_sign_in_and_then_joins(owner_client, app, tenant, make_tenant, make_user, outbox):
    home = make_tenant(company_name="Home Co")
    person = make_user(home, role="developer")
    link = sent(owner_client, outbox, person.email, "admin")

    browser = app.test_client()
    page = browser.get(link).get_data(as_text=True)
    assert "You already have an account with this email." in page
    sign_in_url = re.search(r'<a href="([^"]+)" role="button">Sign in to accept</a>', page).group(1)
    assert sign_in_url == f"/signin?next={link}"

    response = browser.post(sign_in_url, data={"email": person.email, "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == link
    page = browser.get(link).get_data(as_text=True)
    assert f"You are signed in as {person.email}." in page
    assert "Join Inviting Co</button>" in page

    response = browser.post(link)
    assert response.status_code == 303
    overview = browser.get("/overview").get_data(as_text=True)
    assert "Welcome to Inviting Co." in overview
    assert "you are <strong>admin</strong>" in overview
    assert membership_of(app, tenant, person.email).role == "admin"
    assert membership_of(app, home, person.email).role == "developer"
    assert invitation_row(app, tenant, person.email).status == "accepted"


def test_existing_user_cannot_be_taken_over_by_posting_a_new_password_to_the_link(
    owner_client, app, tenant, make_tenant, make_user, outbox
):
    person = make_user(make_tenant(), role="viewer")
    link = sent(owner_client, outbox, person.email)
    stranger = app.test_client()
    response = stranger.post(link, data={"name": "Mallory", "password": "mallorys passphrase"})
    assert "Sign in to accept" in response.get_data(as_text=True)
    assert stranger.get("/overview").status_code != 200
    assert membership_of(app, tenant, person.email) is None
    assert invitation_row(app, tenant, person.email).status == "pending"
    assert (
        app.test_client().post("/signin", data={"email": person.email, "password": "mallorys passphrase"}).status_code
        == 422
    )


def test_signed_in_person_with_another_email_cannot_accept(
    owner_client, app, tenant, make_tenant, make_user, login, outbox
):
    link = sent(owner_client, outbox, "intended@example.com")
    someone_else = make_user(make_tenant(), role="developer")
    browser = app.test_client()
    login(browser, someone_else)

    response = browser.get(link)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert f"You are signed in as {someone_else.email}, but this invitation is for" in problem(page)
    assert "intended@example.com" in problem(page)

    response = browser.post(link)
    assert response.status_code == 403
    assert invitation_row(app, tenant, "intended@example.com").status == "pending"
    assert membership_of(app, tenant, someone_else.email) is None
    with app.app_context():
        assert db.session.query(User).filter_by(email="intended@example.com").count() == 0


def test_accepting_is_recorded_in_the_activity_log(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "logged@example.com", "developer")
    invitee = app.test_client()
    invitee.environ_base["REMOTE_ADDR"] = "203.0.113.99"
    invitee.post(link, data={"name": "Logan", "password": NEW_PASSWORD})
    page = invitee.get("/activity").get_data(as_text=True)
    row = re.search(r'<tr data-testid="audit-row" data-action="member.joined">(.*?)</tr>', page, flags=re.S).group(1)
    assert "logged@example.com" in row and "203.0.113.99" in row and "developer" in row


# --- CSRF ------------------------------------------------------------------------------


def test_invite_without_a_csrf_token_is_refused_with_a_friendly_page_and_changes_nothing(
    database_url, app, tenant, make_user
):
    csrf_app = make_app(database_url, WTF_CSRF_ENABLED=True)
    owner = make_user(tenant, role="owner")
    browser = csrf_app.test_client()
    page = browser.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert (
        browser.post("/signin", data={"email": owner.email, "password": PASSWORD, "csrf_token": token}).status_code
        == 303
    )

    response = browser.post("/team/invitations", data={"email": "forged@example.com", "role": "admin"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Your form expired or was sent from elsewhere. Reload the page and try again." in page
    assert '<header class="site">' in page
    assert invitation_row(app, tenant, "forged@example.com") is None
    with app.app_context():
        assert db.session.query(EmailMessage).filter_by(to="forged@example.com").count() == 0


def test_invitation_to_a_suspended_account_waits_for_reactivation(owner_client, app, tenant, outbox):
    link = sent(owner_client, outbox, "patient@example.com")
    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.tenant_id == tenant.tenant_id).values(status="suspended"))
        db.session.commit()
    invitee = app.test_client()
    response = invitee.post(link, data={"name": "Patient", "password": NEW_PASSWORD})
    assert response.status_code == 409
    assert "This account is suspended at the moment." in problem(response.get_data(as_text=True))
    assert membership_of(app, tenant, "patient@example.com") is None
    with app.app_context():
        db.session.execute(update(Tenant).where(Tenant.tenant_id == tenant.tenant_id).values(status="active"))
        db.session.commit()
    assert invitee.post(link, data={"name": "Patient", "password": NEW_PASSWORD}).status_code == 303
    assert membership_of(app, tenant, "patient@example.com").role == "developer"


def test_an_expired_invitation_does_not_block_inviting_the_same_email_again(owner_client, app, tenant, outbox):
    old_link = sent(owner_client, outbox, "again@example.com")
    old = invitation_row(app, tenant, "again@example.com")
    set_expiry(app, old.id, utcnow() - timedelta(minutes=1))
    new_link = sent(owner_client, outbox, "again@example.com", role="viewer")
    assert new_link != old_link
    page = team_page(owner_client)
    assert page.count('data-email="again@example.com"') == 1
    invitee = app.test_client()
    assert invitee.get(old_link).status_code == 410  # the superseded link reads as expired
    assert invitee.post(new_link, data={"name": "Again", "password": NEW_PASSWORD}).status_code == 303
    assert membership_of(app, tenant, "again@example.com").role == "viewer"
