"""A company's team, as people use it in a real browser: sign up, invite, join, change role, remove."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def sign_up(page, company: str, tenant_id: str, name: str, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Company name").fill(company)
    page.get_by_label("Account ID").fill(tenant_id)
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()


def member_row(page, email: str):
    return page.locator(f'[data-testid="member-row"][data-email="{email}"]')


def test_invited_member_joins_gets_new_role_and_is_signed_out_when_removed(live_server, open_browser):
    suffix = uuid.uuid4().hex[:8]
    company = f"Birchwood {suffix}"
    owner_email = f"olivia-{suffix}@birchwood.example"
    invitee_email = f"ivan-{suffix}@birchwood.example"

    # The owner signs up and lands on a whole overview page (not one pasted into the form).
    owner, owner_console = open_browser()
    sign_up(owner, company, f"birchwood_{suffix}", "Olivia Owner", owner_email)
    expect(owner).to_have_url(re.compile(r"/overview$"))
    expect(owner.locator(".flash-success")).to_have_text(f"Welcome! Your account {company} is ready.")
    expect(owner.get_by_role("heading", level=1)).to_have_text(company)
    expect(owner.locator("header.site")).to_have_count(1)
    expect(owner.locator("main")).to_contain_text("you are owner")

    # The owner invites a developer from the team page.
    owner.get_by_role("link", name="Team", exact=True).click()
    expect(owner).to_have_url(re.compile(r"/team$"))
    invite_form = owner.locator("#invite-form")
    invite_form.get_by_label("Email").fill(invitee_email)
    invite_form.get_by_label("Role").select_option("developer")
    invite_form.get_by_role("button", name="Send invitation").click()
    expect(owner.locator(".flash-success")).to_have_text(f"Invitation sent to {invitee_email}.")
    invitation = owner.locator(f'[data-testid="invitation-row"][data-email="{invitee_email}"]')
    expect(invitation).to_contain_text("developer")
    expect(invitation).to_contain_text("pending")

    # The invitee opens the emailed link in their own browser and creates an account.
    link = live_server.link_in_latest_email(invitee_email, "/invite/")
    member, member_console = open_browser()
    member.goto(link)
    expect(member.get_by_role("heading", level=1)).to_have_text(f"Join {company}")
    expect(member.locator("article")).to_contain_text(f"You are invited as developer ({invitee_email})")
    member.get_by_label("Your name").fill("Ivan Invitee")
    member.get_by_label("Choose a password").fill("ivan's own long passphrase")
    member.get_by_role("button", name="Create account and join").click()
    expect(member).to_have_url(re.compile(r"/overview$"))
    expect(member.locator(".flash-success")).to_have_text(f"Welcome to {company}.")
    expect(member.locator("main")).to_contain_text("you are developer")
    expect(member.get_by_test_id("signed-in-as")).to_have_text(invitee_email)

    # The owner sees the new member, no longer a pending invitation.
    owner.reload()
    expect(member_row(owner, invitee_email).get_by_test_id("member-role")).to_have_text("developer")
    expect(member_row(owner, invitee_email)).to_contain_text("Ivan Invitee")
    expect(owner.locator("#invitations")).to_contain_text("No pending invitations")
    save_screenshot(owner, "team-page.png")

    # The owner makes the member a viewer; the member's next page says so.
    member_row(owner, invitee_email).get_by_label(f"Role for {invitee_email}").select_option("viewer")
    member_row(owner, invitee_email).get_by_role("button", name="Change role").click()
    expect(owner.locator(".flash-success")).to_have_text("Ivan Invitee is now viewer.")
    expect(member_row(owner, invitee_email).get_by_test_id("member-role")).to_have_text("viewer")
    member.get_by_role("link", name="Overview", exact=True).click()
    expect(member.locator("main")).to_contain_text("you are viewer")

    # The owner removes the member, confirming in the disclosure.
    row = member_row(owner, invitee_email)
    row.locator("details.confirm summary", has_text="Remove").click()
    row.get_by_role("button", name="Yes, remove").click()
    expect(owner.locator(".flash-success")).to_have_text("Ivan Invitee was removed from the account.")
    expect(member_row(owner, invitee_email)).to_have_count(0)
    expect(member_row(owner, owner_email).get_by_test_id("member-role")).to_have_text("owner")

    # The removed member's very next navigation lands on sign-in: the session is gone.
    member.get_by_role("link", name="Team", exact=True).click()
    expect(member).to_have_url(re.compile(r"/signin\?next=%2Fteam$"))
    expect(member.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(member.locator(".flash-info")).to_have_text("Please sign in to continue.")
    expect(member.get_by_test_id("signed-in-as")).to_have_count(0)
    expect(member.get_by_role("link", name="Team", exact=True)).to_have_count(0)

    assert owner_console.csp_violations == []
    assert member_console.csp_violations == []
