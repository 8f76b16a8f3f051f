"""The team page: roles, removal, leaving, ownership transfer, the tenant switcher,
other tenants' objects, suspended tenants and the audit trail, through HTTP."""

import html
import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Invitation, Membership, Tenant, User
from tests.conftest import HTMX, PASSWORD, field_error, link_in, signed_in


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="flash flash-\w+" role="status">(.*?)</li>', page)]


def roles(app, tenant) -> dict[str, str]:
    """email -> role of everyone in the tenant, straight from the database."""
    with app.app_context():
        rows = db.session.execute(
            select(User.email, Membership.role).join(Membership).where(Membership.tenant_id == tenant.tenant_id)
        ).all()
        return dict(rows)


def invitation_state(app, invitation_id: str) -> tuple[str, str, int]:
    with app.app_context():
        invitation = db.session.get(Invitation, invitation_id)
        return invitation.status, invitation.token_hash, invitation.send_count


def shown_roles(page: str) -> dict[str, str]:
    """email -> role as the members table shows it."""
    return dict(
        re.findall(
            r'<tr data-testid="member-row" data-email="([^"]+)">.*?<td data-testid="member-role">([^<]+)</td>',
            page,
            re.S,
        )
    )


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Team Co")


@pytest.fixture
def team(tenant, make_user):
    """An owner, an admin, a developer and a viewer in one tenant."""
    return {
        role: make_user(tenant, role=role, name=f"{role.title()} Person")
        for role in ("owner", "admin", "developer", "viewer")
    }


def make_invitation(client, app, tenant, email: str) -> str:
    assert client.post("/team/invitations", data={"email": email, "role": "viewer"}).status_code == 303
    with app.app_context():
        return db.session.execute(
            select(Invitation.id).where(Invitation.tenant_id == tenant.tenant_id, Invitation.email == email)
        ).scalar_one()


# --- the page --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_sees_the_members_and_their_roles(client, team, login, role):
    login(client, team[role])
    page = client.get("/team").get_data(as_text=True)
    assert shown_roles(page) == {member.email: r for r, member in team.items()}
    managing = role in ("owner", "admin")
    assert ("Invite someone" in page) == managing
    assert ("Pending invitations" in page) == managing
    assert ("Change role" in page) == managing
    assert ("Transfer ownership" in page) == (role == "owner")
    assert ("Leave this account" in page) == (role != "owner")


def test_htmx_team_page_request_with_boost_gets_the_whole_page(client, team, login):
    login(client, team["admin"])
    page = client.get("/team", headers={**HTMX, "HX-Boosted": "true"}).get_data(as_text=True)
    assert "<header" in page and "<h1>Team</h1>" in page


# --- who may manage the team -----------------------------------------------------------


def team_posts(team, invitation_id: str) -> dict[str, tuple[str, dict]]:
    developer = team["developer"].membership.id
    return {
        "invite": ("/team/invitations", {"email": "sneaky@example.com", "role": "admin"}),
        "resend": (f"/team/invitations/{invitation_id}/resend", {}),
        "revoke": (f"/team/invitations/{invitation_id}/revoke", {}),
        "change role": (f"/team/members/{developer}/role", {"role": "admin"}),
        "remove": (f"/team/members/{developer}/remove", {}),
        "transfer": ("/team/transfer", {"new_owner": developer, "password": PASSWORD}),
    }


@pytest.mark.parametrize("role", ["developer", "viewer"])
@pytest.mark.parametrize("action", ["invite", "resend", "revoke", "change role", "remove", "transfer"])
def test_developer_and_viewer_cannot_manage_the_team(client, app, tenant, team, login, outbox, role, action):
    owner = app.test_client()
    login(owner, team["owner"])
    invitation_id = make_invitation(owner, app, tenant, "pending@example.com")
    before_roles, before_invitation = roles(app, tenant), invitation_state(app, invitation_id)

    login(client, team[role])
    path, data = team_posts(team, invitation_id)[action]
    response = client.post(path, data=data)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Not allowed" in page and "Your role does not allow this." in page

    assert roles(app, tenant) == before_roles
    assert invitation_state(app, invitation_id) == before_invitation
    assert outbox("sneaky@example.com") == []
    assert len(outbox("pending@example.com")) == 1


def test_admin_cannot_transfer_ownership(client, app, tenant, team, login):
    login(client, team["admin"])
    response = client.post("/team/transfer", data={"new_owner": team["admin"].membership.id, "password": PASSWORD})
    assert response.status_code == 403
    assert roles(app, tenant)[team["owner"].email] == "owner"
    assert roles(app, tenant)[team["admin"].email] == "admin"


def test_signed_out_visitor_cannot_post_to_the_team(client, app, tenant, team):
    response = client.post(f"/team/members/{team['viewer'].membership.id}/remove")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin")
    assert team["viewer"].email in roles(app, tenant)


# --- roles -----------------------------------------------------------------------------


@pytest.mark.parametrize("manager", ["owner", "admin"])
def test_owner_and_admin_can_change_a_members_role(client, app, tenant, team, login, manager):
    login(client, team[manager])
    response = client.post(f"/team/members/{team['developer'].membership.id}/role", data={"role": "viewer"})
    assert response.status_code == 303
    page = client.get("/team").get_data(as_text=True)
    assert "Developer Person is now viewer." in flashes(page)
    assert shown_roles(page)[team["developer"].email] == "viewer"
    assert roles(app, tenant)[team["developer"].email] == "viewer"


def test_changed_role_takes_effect_on_the_members_next_request(client, app, tenant, team, login):
    viewer = app.test_client()
    login(viewer, team["viewer"])
    assert viewer.post("/team/invitations", data={"email": "a@example.com", "role": "viewer"}).status_code == 403
    login(client, team["owner"])
    client.post(f"/team/members/{team['viewer'].membership.id}/role", data={"role": "admin"})
    assert viewer.post("/team/invitations", data={"email": "a@example.com", "role": "viewer"}).status_code == 303


def test_owners_role_cannot_be_changed(client, app, tenant, team, login):
    login(client, team["admin"])
    response = client.post(f"/team/members/{team['owner'].membership.id}/role", data={"role": "viewer"})
    assert response.status_code == 303
    assert "The owner's role cannot be changed. Transfer ownership instead." in flashes(
        client.get("/team").get_data(as_text=True)
    )
    assert roles(app, tenant)[team["owner"].email] == "owner"


@pytest.mark.parametrize("role", ["owner", "root", ""])
def test_role_can_only_be_one_of_the_listed_ones(client, app, tenant, team, login, role):
    login(client, team["owner"])
    before = roles(app, tenant)
    client.post(f"/team/members/{team['developer'].membership.id}/role", data={"role": role})
    assert "Choose one of the listed roles." in flashes(client.get("/team").get_data(as_text=True))
    assert roles(app, tenant) == before
    with app.app_context():
        owners = db.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == tenant.tenant_id, Membership.role == "owner")
        )
        assert owners == 1


# --- removing and leaving --------------------------------------------------------------


@pytest.mark.parametrize("manager", ["owner", "admin"])
def test_removing_a_member_signs_them_out_at_once(client, app, tenant, team, login, manager):
    member_browser = app.test_client()
    login(member_browser, team["developer"])
    assert signed_in(member_browser)

    login(client, team[manager])
    response = client.post(f"/team/members/{team['developer'].membership.id}/remove")
    assert response.status_code == 303
    page = client.get("/team").get_data(as_text=True)
    assert "Developer Person was removed from the account." in flashes(page)
    assert team["developer"].email not in shown_roles(page)
    assert team["developer"].email not in roles(app, tenant)

    response = member_browser.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin")
    assert member_browser.get("/team").status_code == 302


def test_removed_member_can_no_longer_sign_in_to_the_account(client, app, tenant, team, login):
    login(client, team["owner"])
    client.post(f"/team/members/{team['viewer'].membership.id}/remove")
    browser = app.test_client()
    login(browser, team["viewer"])
    response = browser.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"] == "/no-account"
    assert browser.get("/team").status_code == 302


def test_owner_cannot_be_removed(client, app, tenant, team, login):
    login(client, team["admin"])
    client.post(f"/team/members/{team['owner'].membership.id}/remove")
    assert "The owner cannot be removed. Transfer ownership first." in flashes(
        client.get("/team").get_data(as_text=True)
    )
    assert roles(app, tenant)[team["owner"].email] == "owner"


def test_admin_is_told_to_leave_rather_than_remove_themselves(client, app, tenant, team, login):
    login(client, team["admin"])
    client.post(f"/team/members/{team['admin'].membership.id}/remove")
    assert "Use “Leave account” to remove yourself." in flashes(client.get("/team").get_data(as_text=True))
    assert roles(app, tenant)[team["admin"].email] == "admin"


def test_owner_cannot_leave(client, app, tenant, team, login):
    login(client, team["owner"])
    response = client.post("/team/leave")
    assert response.status_code == 303
    assert response.headers["Location"] == "/team"
    assert "The owner cannot leave. Transfer ownership to another member first." in flashes(
        client.get("/team").get_data(as_text=True)
    )
    assert roles(app, tenant)[team["owner"].email] == "owner"


@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_member_can_leave(client, app, tenant, team, login, role):
    login(client, team[role])
    response = client.post("/team/leave")
    assert response.status_code == 303
    assert team[role].email not in roles(app, tenant)
    response = client.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"] == "/no-account"
    page = client.get("/no-account").get_data(as_text=True)
    assert "You left Team Co." in flashes(page)


def test_member_in_two_accounts_who_leaves_one_lands_in_the_other(client, app, tenant, make_tenant, team, login):
    other = make_tenant(company_name="Other Co")
    person = team["developer"]
    with app.app_context():
        db.session.add(Membership(tenant_id=other.tenant_id, user_id=person.user.id, role="viewer"))
        db.session.commit()
    login(client, person)
    client.post("/switch-tenant", data={"tenant_id": tenant.tenant_id})
    client.post("/team/leave")
    page = client.get("/overview").get_data(as_text=True)
    assert "<h1>Other Co</h1>" in page
    assert person.email in roles(app, other)


# --- ownership transfer ----------------------------------------------------------------


def test_transfer_ownership_with_the_right_password(client, app, tenant, team, login):
    login(client, team["owner"])
    response = client.post("/team/transfer", data={"new_owner": team["developer"].membership.id, "password": PASSWORD})
    assert response.status_code == 303
    page = client.get("/team").get_data(as_text=True)
    assert "Developer Person is now the owner. You are an admin." in flashes(page)
    assert shown_roles(page)[team["owner"].email] == "admin"
    assert shown_roles(page)[team["developer"].email] == "owner"
    assert "Transfer ownership" not in page

    after = roles(app, tenant)
    assert list(after.values()).count("owner") == 1
    assert after[team["developer"].email] == "owner"
    assert after[team["owner"].email] == "admin"

    # The new owner holds every owner power; the old one no longer does.
    new_owner = app.test_client()
    login(new_owner, team["developer"])
    assert "Transfer ownership" in new_owner.get("/team").get_data(as_text=True)
    assert (
        client.post("/team/transfer", data={"new_owner": team["admin"].membership.id, "password": PASSWORD}).status_code
        == 403
    )


def test_transfer_with_a_wrong_password_is_refused_and_changes_nothing(client, app, tenant, team, login):
    login(client, team["owner"])
    before = roles(app, tenant)
    response = client.post("/team/transfer", data={"new_owner": team["admin"].membership.id, "password": "wrong one"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "password") == "That password is not correct."
    assert roles(app, tenant) == before


def test_transfer_without_a_password_is_refused(client, app, tenant, team, login):
    login(client, team["owner"])
    before = roles(app, tenant)
    response = client.post(
        "/team/transfer", data={"new_owner": team["admin"].membership.id, "password": ""}, headers=HTMX
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.strip().startswith('<form method="post" action="/team/transfer" id="transfer-form"')
    assert field_error(page, "password") == "This field is required."
    assert roles(app, tenant) == before


def test_owner_cannot_transfer_to_themselves(client, app, tenant, team, login):
    login(client, team["owner"])
    response = client.post("/team/transfer", data={"new_owner": team["owner"].membership.id, "password": PASSWORD})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "new_owner")
    assert roles(app, tenant)[team["owner"].email] == "owner"


def test_transfer_form_offers_only_the_other_members(client, tenant, team, login):
    login(client, team["owner"])
    page = client.get("/team").get_data(as_text=True)
    options = re.findall(
        r'<option value="(mem_[^"]+)"', re.search(r'<select id="new_owner".*?</select>', page, re.S).group(0)
    )
    assert set(options) == {team[r].membership.id for r in ("admin", "developer", "viewer")}


# --- tenant switcher -------------------------------------------------------------------


@pytest.fixture
def two_accounts(app, tenant, make_tenant, team):
    """The team's developer is also an admin of a second account."""
    second = make_tenant(company_name="Second Co")
    with app.app_context():
        db.session.add(Membership(tenant_id=second.tenant_id, user_id=team["developer"].user.id, role="admin"))
        db.session.commit()
    return second


def test_person_in_two_accounts_switches_between_them(client, tenant, team, two_accounts, login):
    login(client, team["developer"])
    page = client.get("/overview").get_data(as_text=True)
    assert 'aria-label="Switch account"' in page
    assert "Team Co</option>" in page and "Second Co</option>" in page

    response = client.post("/switch-tenant", data={"tenant_id": two_accounts.tenant_id})
    assert response.status_code == 303
    page = client.get("/overview").get_data(as_text=True)
    assert "<h1>Second Co</h1>" in page
    assert "you are <strong>admin</strong>" in page
    assert team["owner"].email not in client.get("/team").get_data(as_text=True)

    client.post("/switch-tenant", data={"tenant_id": tenant.tenant_id})
    page = client.get("/overview").get_data(as_text=True)
    assert "<h1>Team Co</h1>" in page and "you are <strong>developer</strong>" in page


def test_switching_to_an_account_one_is_not_in_is_refused(client, make_tenant, tenant, team, two_accounts, login):
    stranger = make_tenant(company_name="Stranger Co")
    login(client, team["developer"])
    client.post("/switch-tenant", data={"tenant_id": tenant.tenant_id})
    response = client.post("/switch-tenant", data={"tenant_id": stranger.tenant_id})
    assert response.status_code == 303
    page = client.get("/overview").get_data(as_text=True)
    assert "You are not a member of that account." in flashes(page)
    assert "<h1>Team Co</h1>" in page
    assert "Stranger Co" not in page


def test_person_in_one_account_sees_no_switcher(client, team, login):
    login(client, team["viewer"])
    assert 'aria-label="Switch account"' not in client.get("/overview").get_data(as_text=True)


def test_role_in_one_account_gives_nothing_in_the_other(client, app, tenant, team, two_accounts, login):
    # Admin in Second Co, only developer in Team Co: managing Team Co's team is refused.
    login(client, team["developer"])
    client.post("/switch-tenant", data={"tenant_id": tenant.tenant_id})
    response = client.post(f"/team/members/{team['viewer'].membership.id}/role", data={"role": "admin"})
    assert response.status_code == 403
    assert roles(app, tenant)[team["viewer"].email] == "viewer"


# --- another tenant's objects ----------------------------------------------------------


@pytest.fixture
def other_tenant(app, make_tenant, make_user, login, outbox):
    """Tenant B with an owner, a developer and a pending invitation; returns what A must not touch."""
    tenant_b = make_tenant(company_name="Bystander Co")
    owner_b = make_user(tenant_b, role="owner")
    developer_b = make_user(tenant_b, role="developer")
    browser = app.test_client()
    login(browser, owner_b)
    invitation_id = make_invitation(browser, app, tenant_b, "b-invitee@example.com")
    return {"tenant": tenant_b, "owner": owner_b, "developer": developer_b, "invitation_id": invitation_id}


def cross_tenant_posts(b) -> dict[str, tuple[str, dict]]:
    developer = b["developer"].membership.id
    return {
        "resend invitation": (f"/team/invitations/{b['invitation_id']}/resend", {}),
        "revoke invitation": (f"/team/invitations/{b['invitation_id']}/revoke", {}),
        "change role": (f"/team/members/{developer}/role", {"role": "admin"}),
        "remove member": (f"/team/members/{developer}/remove", {}),
        "remove owner": (f"/team/members/{b['owner'].membership.id}/remove", {}),
        "transfer to": ("/team/transfer", {"new_owner": developer, "password": PASSWORD}),
    }


@pytest.mark.parametrize(
    "action", ["resend invitation", "revoke invitation", "change role", "remove member", "remove owner", "transfer to"]
)
def test_another_tenants_ids_are_not_found_and_nothing_changes_there(
    client, app, tenant, team, login, outbox, other_tenant, action
):
    b = other_tenant
    before_b, before_a = roles(app, b["tenant"]), roles(app, tenant)
    before_invitation = invitation_state(app, b["invitation_id"])
    b_browser = app.test_client()
    login(b_browser, b["developer"])

    # The transfer is the owner's; everything else an admin of A may do in A.
    login(client, team["owner" if action == "transfer to" else "admin"])
    path, data = cross_tenant_posts(b)[action]
    response = client.post(path, data=data)
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)

    assert roles(app, b["tenant"]) == before_b
    assert roles(app, tenant) == before_a
    assert invitation_state(app, b["invitation_id"]) == before_invitation
    assert len(outbox("b-invitee@example.com")) == 1
    assert signed_in(b_browser)


def test_another_tenants_members_and_invitations_never_show(client, team, login, other_tenant):
    login(client, team["owner"])
    page = client.get("/team").get_data(as_text=True)
    assert other_tenant["developer"].email not in page
    assert other_tenant["owner"].email not in page
    assert "b-invitee@example.com" not in page
    assert other_tenant["invitation_id"] not in page


# --- suspended tenant ------------------------------------------------------------------


@pytest.fixture
def suspended(app, tenant, team):
    with app.app_context():
        row = db.session.get(Tenant, tenant.tenant_id)
        row.status, row.suspension_reason = "suspended", "payment_failed"
        row.suspension_note = "Card declined on the March invoice."
        db.session.commit()
    return tenant


def test_suspended_tenants_users_see_why_and_can_still_read_pages(client, team, suspended, login):
    login(client, team["owner"])
    for path in ("/overview", "/team", "/settings", "/activity"):
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        assert "This account is suspended: Payment failed." in page
        assert "Card declined on the March invoice." in page


def test_suspended_tenants_pages_offer_only_what_still_works(client, app, tenant, team, suspended, login):
    login(client, team["owner"])
    pages = {
        path: client.get(path).get_data(as_text=True) for path in ("/team", "/api-keys", "/credentials", "/settings")
    }
    # Buttons that would only end on "Not allowed" are not shown...
    assert "Send invitation" not in pages["/team"]
    assert "Change role" not in pages["/team"] and ">Remove<" not in pages["/team"]
    assert "Transfer ownership" not in pages["/team"]
    assert "Create key" not in pages["/api-keys"]
    assert "Add a credential" not in pages["/credentials"]
    assert "Delete this account" not in pages["/settings"] and "Save settings" not in pages["/settings"]
    assert "can be changed again once the account is reactivated" in pages["/settings"]
    # ...while reading still works, and billing (the way out of a suspension) keeps its buttons.
    assert "<h2>Members</h2>" in pages["/team"] and "<h2>Pending invitations</h2>" in pages["/team"]
    assert "Cancel subscription" in client.get("/billing").get_data(as_text=True)


@pytest.mark.parametrize(
    "action", ["invite", "resend", "revoke", "change role", "remove", "leave", "transfer", "settings", "delete"]
)
def test_suspended_tenant_cannot_change_team_or_settings(client, app, tenant, team, login, outbox, action):
    owner_browser = app.test_client()
    login(owner_browser, team["owner"])
    invitation_id = make_invitation(owner_browser, app, tenant, "before-suspension@example.com")
    with app.app_context():
        row = db.session.get(Tenant, tenant.tenant_id)
        row.status, row.suspension_reason = "suspended", "terms_violation"
        db.session.commit()
    before_roles, before_invitation = roles(app, tenant), invitation_state(app, invitation_id)

    login(client, team["admin"] if action == "leave" else team["owner"])
    posts = team_posts(team, invitation_id)
    posts["leave"] = ("/team/leave", {})
    posts["settings"] = ("/settings", {"company_name": "Renamed While Suspended", "contact_email": "x@example.com"})
    posts["delete"] = ("/settings/delete", {"confirm_tenant_id": tenant.tenant_id})
    path, data = posts[action]
    response = client.post(path, data=data)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Your account is suspended (Terms of service violation)." in page

    assert roles(app, tenant) == before_roles
    assert invitation_state(app, invitation_id) == before_invitation
    with app.app_context():
        row = db.session.get(Tenant, tenant.tenant_id)
        assert (row.status, row.company_name) == ("suspended", "Team Co")
    assert outbox("sneaky@example.com") == []


def test_suspended_tenants_users_can_still_sign_in_and_out(client, team, suspended, login):
    login(client, team["viewer"])
    assert signed_in(client)
    assert client.post("/signout").status_code == 303
    assert not signed_in(client)


# --- audit -----------------------------------------------------------------------------


def audit_rows(page: str) -> list[tuple[str, str, str, str]]:
    """(action, who, details, from) for each row of the activity page, newest first."""
    rows = []
    for action, body in re.findall(r'<tr data-testid="audit-row" data-action="([^"]+)">(.*?)</tr>', page, re.S):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
            for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)
        ]
        rows.append((action, cells[1], cells[3], cells[4]))
    return rows


def test_every_team_change_shows_on_the_activity_page_with_who_and_from_where(client, app, tenant, team, login, outbox):
    owner_ip, invitee_ip, leaver_ip = "198.51.100.10", "198.51.100.20", "198.51.100.30"
    client.environ_base["REMOTE_ADDR"] = owner_ip
    login(client, team["owner"])

    revoked_id = make_invitation(client, app, tenant, "revoke-me@example.com")
    client.post(f"/team/invitations/{revoked_id}/revoke")
    joining_id = make_invitation(client, app, tenant, "joins@example.com")
    client.post(f"/team/invitations/{joining_id}/resend")
    invitee = app.test_client()
    invitee.environ_base["REMOTE_ADDR"] = invitee_ip
    invitee.post(
        link_in(outbox("joins@example.com")[0].text_body, "/invite/"),
        data={"name": "Joiner", "password": "joiners passphrase"},
    )
    client.post(f"/team/members/{team['developer'].membership.id}/role", data={"role": "admin"})
    client.post(f"/team/members/{team['viewer'].membership.id}/remove")
    leaver = app.test_client()
    leaver.environ_base["REMOTE_ADDR"] = leaver_ip
    login(leaver, team["admin"])
    leaver.post("/team/leave")
    client.post("/team/transfer", data={"new_owner": team["developer"].membership.id, "password": PASSWORD})

    rows = audit_rows(client.get("/activity").get_data(as_text=True))
    owner = team["owner"].email
    expected = [
        ("ownership.transferred", owner, team["developer"].email, owner_ip),
        ("member.left", team["admin"].email, team["admin"].email, leaver_ip),
        ("member.removed", owner, team["viewer"].email, owner_ip),
        ("member.role_changed", owner, "To: admin", owner_ip),
        ("member.joined", "joins@example.com", "Role: viewer", invitee_ip),
        ("invitation.resent", owner, "joins@example.com", owner_ip),
        ("invitation.created", owner, "joins@example.com", owner_ip),
        ("invitation.revoked", owner, "revoke-me@example.com", owner_ip),
        ("invitation.created", owner, "revoke-me@example.com", owner_ip),
    ]
    assert len(rows) >= len(expected)
    for (action, who, detail, ip), row in zip(expected, rows, strict=False):
        assert row[0] == action
        assert row[1] == who, row
        assert detail in row[2], row
        assert row[3] == ip, row
