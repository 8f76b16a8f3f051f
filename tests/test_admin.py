"""The operator console: tenants, suspension and activation, the outbox."""

import html
import re

import pytest

from portal.extensions import db
from portal.models import SUSPENSION_REASONS, AuditEvent, EmailMessage, Membership, Tenant
from tests.conftest import unique

ADMIN_GETS = [
    "/admin",
    "/admin/tenants",
    "/admin/tenants?q=a&status=active&page=2",
    "/admin/tenants/{tenant_id}",
    "/admin/tenants/no_such_tenant",
    "/admin/outbox",
    "/admin/outbox/{message_id}",
    "/admin/outbox/{message_id}/html",
]
ADMIN_POSTS = ["/admin/tenants/{tenant_id}/suspend", "/admin/tenants/{tenant_id}/activate"]


def tenant_row(app, tenant_id: str) -> Tenant:
    with app.app_context():
        return db.session.get(Tenant, tenant_id)


def listed_ids(page: str) -> list[str]:
    return re.findall(r'data-testid="tenant-row" data-tenant-id="([^"]+)"', page)


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Console Co")


@pytest.fixture
def some_email(app, tenant):
    """An email in the outbox, so the message URLs point at something real."""
    from portal.infra.transactions import commit
    from portal.mail import send_email

    with app.test_request_context():
        message = send_email(
            "someone@example.com",
            "Hello",
            "tenant_suspended",
            tenant=tenant,
            tenant_obj=db.session.get(Tenant, tenant.tenant_id),
        )
        commit()
        return message.id


# --- who may enter ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_tenant_users_get_not_found_on_every_admin_url(client, tenant, make_user, login, app, some_email, role):
    login(client, make_user(tenant, role=role))
    for url in ADMIN_GETS:
        response = client.get(url.format(tenant_id=tenant.tenant_id, message_id=some_email))
        assert response.status_code == 404, url
        assert "Page not found" in response.get_data(as_text=True)
    for url in ADMIN_POSTS:
        response = client.post(url.format(tenant_id=tenant.tenant_id), data={"reason": "terms_violation"})
        assert response.status_code == 404, url
    assert tenant_row(app, tenant.tenant_id).status == "active"
    # And the console is not advertised to them.
    assert "Operator console" not in client.get("/overview").get_data(as_text=True)


def test_signed_in_user_without_an_account_gets_not_found(client, tenant, make_user, login, app, some_email):
    member = make_user(tenant, role="viewer")
    login(client, member)
    with app.app_context():
        db.session.query(Membership).filter_by(id=member.membership.id).delete()
        db.session.commit()
    for url in ADMIN_GETS:
        assert client.get(url.format(tenant_id=tenant.tenant_id, message_id=some_email)).status_code == 404, url


def test_anonymous_visitor_is_sent_to_sign_in(client, tenant, some_email):
    for url in ADMIN_GETS:
        response = client.get(url.format(tenant_id=tenant.tenant_id, message_id=some_email))
        assert response.status_code == 302, url
        assert "/signin" in response.headers["Location"]
    for url in ADMIN_POSTS:
        response = client.post(url.format(tenant_id=tenant.tenant_id), data={"reason": "terms_violation"})
        assert response.status_code == 302
        assert "/signin" in response.headers["Location"]


def test_operator_reaches_the_console_from_the_start_page(operator_client):
    response = operator_client.get("/admin")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/admin/tenants")
    # An operator with no tenant of their own lands in the console, not on "no account".
    response = operator_client.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/tenants")
    assert "Operator console" in operator_client.get("/admin/tenants").get_data(as_text=True)


# --- tenants list ----------------------------------------------------------------------


def test_search_finds_tenants_by_name_or_id_ignoring_case(operator_client, make_tenant):
    acme = make_tenant(company_name="Acme Widgets")
    globex = make_tenant(company_name="Globex Corporation")
    initech = make_tenant(company_name="Initech")

    page = operator_client.get("/admin/tenants?q=aCMe").get_data(as_text=True)
    assert listed_ids(page) == [acme.tenant_id]
    assert "Acme Widgets" in page

    page = operator_client.get(f"/admin/tenants?q={globex.tenant_id.upper()}").get_data(as_text=True)
    assert listed_ids(page) == [globex.tenant_id]

    page = operator_client.get(f"/admin/tenants?q={initech.tenant_id[-5:]}").get_data(as_text=True)
    assert listed_ids(page) == [initech.tenant_id]

    page = operator_client.get("/admin/tenants?q=  corporation  ").get_data(as_text=True)
    assert listed_ids(page) == [globex.tenant_id]


def test_search_with_no_match_says_so(operator_client, make_tenant):
    make_tenant(company_name="Visible Co")
    page = operator_client.get("/admin/tenants?q=zzz_nothing").get_data(as_text=True)
    assert listed_ids(page) == []
    assert "No tenants match “zzz_nothing”." in page


def test_search_treats_percent_and_underscore_literally(operator_client, make_tenant):
    make_tenant(company_name="Plain Co")
    make_tenant(company_name="Hundred Percent")
    discount = make_tenant(company_name="100% Discount")
    page = operator_client.get("/admin/tenants?q=100%").get_data(as_text=True)
    assert listed_ids(page) == [discount.tenant_id]
    page = operator_client.get("/admin/tenants?q=%").get_data(as_text=True)
    assert listed_ids(page) == [discount.tenant_id]


def test_status_filter_shows_only_that_status(operator_client, make_tenant):
    active = make_tenant(company_name="Active One")
    suspended = make_tenant(company_name="Suspended One", status="suspended")
    cancelled = make_tenant(company_name="Cancelled One", status="cancelled")

    assert listed_ids(operator_client.get("/admin/tenants?status=suspended").get_data(as_text=True)) == [
        suspended.tenant_id
    ]
    assert listed_ids(operator_client.get("/admin/tenants?status=cancelled").get_data(as_text=True)) == [
        cancelled.tenant_id
    ]
    page = operator_client.get("/admin/tenants?status=active").get_data(as_text=True)
    assert listed_ids(page) == [active.tenant_id]
    assert '<option value="active" selected>' in page
    page = operator_client.get("/admin/tenants?status=suspended&q=active").get_data(as_text=True)
    assert listed_ids(page) == []
    assert "No tenants match “active” with status suspended." in page
    # An unknown status is ignored rather than an error.
    page = operator_client.get("/admin/tenants?status=bogus").get_data(as_text=True)
    assert sorted(listed_ids(page)) == sorted([active.tenant_id, suspended.tenant_id, cancelled.tenant_id])


def test_tenants_list_is_paginated_by_twenty(operator_client, make_tenant, app):
    # Faster than the factory (which hashes an owner password per tenant).
    marker = unique("bulk")
    with app.test_request_context():
        from portal.access import SYSTEM
        from portal.tenants.services import create_tenant

        for index in range(25):
            create_tenant(SYSTEM, f"{marker}_{index:02d}", f"Bulk {marker} {index:02d}", "bulk@example.com")
        db.session.commit()

    first = operator_client.get(f"/admin/tenants?q={marker}").get_data(as_text=True)
    assert len(listed_ids(first)) == 20
    assert "Page 1 of 2 · 25 tenants" in first
    assert f'href="/admin/tenants?q={marker}&amp;page=2"' in first

    second = operator_client.get(f"/admin/tenants?q={marker}&page=2").get_data(as_text=True)
    assert len(listed_ids(second)) == 5
    assert "Page 2 of 2 · 25 tenants" in second
    assert f'href="/admin/tenants?q={marker}&amp;page=1"' in second
    assert set(listed_ids(first)) | set(listed_ids(second)) == {f"{marker}_{i:02d}" for i in range(25)}

    # Without a search every tenant is counted too.
    assert "· 25 tenants" in operator_client.get("/admin/tenants").get_data(as_text=True)
    # Past the end: an empty page, not an error.
    assert listed_ids(operator_client.get(f"/admin/tenants?q={marker}&page=9").get_data(as_text=True)) == []
    assert operator_client.get("/admin/tenants?page=abc").status_code == 200


def test_htmx_search_returns_only_the_table_fragment(operator_client, make_tenant):
    tenant = make_tenant(company_name="Fragment Co")
    response = operator_client.get("/admin/tenants?q=fragment", headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<div id="tenants-table">')
    assert "<html" not in page and 'role="search"' not in page
    assert listed_ids(page) == [tenant.tenant_id]
    assert "HX-Request" in response.headers["Vary"]


def test_tenants_list_shows_plan_status_and_member_count(operator_client, tenant, make_user):
    make_user(tenant, role="admin")
    make_user(tenant, role="viewer")
    page = operator_client.get(f"/admin/tenants?q={tenant.tenant_id}").get_data(as_text=True)
    row = re.search(rf'data-tenant-id="{tenant.tenant_id}">(.*?)</tr>', page, flags=re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
    assert cells[:5] == [tenant.tenant_id, "Console Co", "starter", "active", "3"]


# --- tenant detail ---------------------------------------------------------------------


def test_tenant_detail_shows_members_and_status(operator_client, tenant, make_user):
    owner = make_user(tenant, role="owner")
    admin = make_user(tenant, role="admin", name="Ada Admin")
    response = operator_client.get(f"/admin/tenants/{tenant.tenant_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<h1>Console Co</h1>" in page
    assert '<span class="badge badge-active">active</span>' in page
    assert f"<td>{owner.email}</td><td>owner</td>" in page
    assert f"<td>Ada Admin</td><td>{admin.email}</td><td>admin</td>" in page
    assert "tenant.created" in page


def test_unknown_tenant_detail_is_not_found(operator_client):
    response = operator_client.get("/admin/tenants/nobody_here")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)
    assert (
        operator_client.post("/admin/tenants/nobody_here/suspend", data={"reason": "admin_request"}).status_code == 404
    )


# --- suspend and activate --------------------------------------------------------------


@pytest.mark.parametrize("reason", list(SUSPENSION_REASONS))
def test_suspend_with_reason_note_and_notify_emails_the_contact(
    operator_client, tenant, make_user, login, app, outbox, reason
):
    viewer = make_user(tenant, role="viewer")
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/suspend",
        data={"reason": reason, "note": "  Call us on 555-0100.  ", "notify": "y"},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/tenants/{tenant.tenant_id}")
    page = html.unescape(operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True))
    assert "Console Co is suspended." in page
    assert f"{SUSPENSION_REASONS[reason]} — Call us on 555-0100." in page
    assert '<span class="badge badge-suspended">suspended</span>' in page

    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.status, saved.suspension_reason, saved.suspension_note) == (
        "suspended",
        reason,
        "Call us on 555-0100.",
    )
    assert saved.suspended_at is not None

    [email] = outbox(tenant.contact_email)
    assert email.subject == "Your account Console Co has been suspended"
    assert f"Reason: {SUSPENSION_REASONS[reason]}" in email.text_body
    assert "Note: Call us on 555-0100." in email.text_body
    assert email.status == "outbox"

    # The tenant's users see why, on every page, and can still sign in.
    user_client = app.test_client()
    login(user_client, viewer)
    banner = html.unescape(user_client.get("/overview").get_data(as_text=True))
    assert 'data-testid="suspended-banner"' in banner
    assert f"This account is suspended: {SUSPENSION_REASONS[reason]}." in banner
    assert "Call us on 555-0100." in banner


def test_suspend_without_notify_sends_no_email(operator_client, tenant, app, outbox):
    response = operator_client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "terms_violation"})
    assert response.status_code == 303
    assert tenant_row(app, tenant.tenant_id).status == "suspended"
    assert tenant_row(app, tenant.tenant_id).suspension_note is None
    assert outbox(tenant.contact_email) == []
    with app.app_context():
        # Only the first invoice's email, from when the tenant was made.
        assert [m.subject for m in db.session.query(EmailMessage)] == [
            m.subject for m in outbox(tenant.contact_email, invoices=True)
        ]


@pytest.mark.parametrize("reason", ["", "fraud", "PAYMENT_FAILED"])
def test_invalid_reason_is_refused_and_nothing_changes(operator_client, tenant, app, outbox, reason):
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": reason, "note": "kept note", "notify": "y"}
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Not a valid choice." in page or "This field is required." in page
    assert "kept note" in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.status, saved.suspension_reason) == ("active", None)
    assert outbox(tenant.contact_email) == []


def test_too_long_note_is_refused(operator_client, tenant, app):
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "admin_request", "note": "x" * 1001}
    )
    assert response.status_code == 422
    assert "Field cannot be longer than 1000 characters." in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).status == "active"


def test_suspending_an_already_suspended_tenant_says_so(operator_client, tenant, app, outbox):
    url = f"/admin/tenants/{tenant.tenant_id}/suspend"
    operator_client.post(url, data={"reason": "payment_failed", "note": "first"})
    response = operator_client.post(url, data={"reason": "terms_violation", "note": "second", "notify": "y"})
    assert response.status_code == 303
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert f"Tenant {tenant.tenant_id} is already suspended." in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.suspension_reason, saved.suspension_note) == ("payment_failed", "first")
    assert outbox(tenant.contact_email) == []


def test_cancelled_tenant_cannot_be_suspended(operator_client, make_tenant, app):
    tenant = make_tenant(status="cancelled")
    operator_client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "payment_failed"})
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert "A cancelled tenant cannot be suspended." in page
    assert tenant_row(app, tenant.tenant_id).status == "cancelled"


def test_activate_lifts_the_suspension_and_the_banner(operator_client, tenant, make_user, login, app):
    owner = make_user(tenant, role="owner")
    operator_client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "payment_failed", "note": "pay"})
    user_client = app.test_client()
    login(user_client, owner)
    assert "This account is suspended: Payment failed." in user_client.get("/overview").get_data(as_text=True)
    # While suspended, changes outside billing are refused on the server.
    response = user_client.post(
        "/team/invitations", data={"email": "x@example.com", "role": "viewer", "expires_in_days": 7}
    )
    assert response.status_code == 403
    assert "Your account is suspended (Payment failed)" in response.get_data(as_text=True)

    response = operator_client.post(f"/admin/tenants/{tenant.tenant_id}/activate")
    assert response.status_code == 303
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert "Console Co is active again." in page
    assert '<span class="badge badge-active">active</span>' in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.status, saved.suspension_reason, saved.suspension_note, saved.suspended_at) == (
        "active",
        None,
        None,
        None,
    )

    page = user_client.get("/overview").get_data(as_text=True)
    assert "suspended-banner" not in page
    response = user_client.post(
        "/team/invitations", data={"email": "x@example.com", "role": "viewer", "expires_in_days": 7}
    )
    assert response.status_code == 303


def test_activation_emails_the_customer_unless_the_operator_unticks_it(operator_client, tenant, app, outbox):
    operator_client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "admin_request"})
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert re.search(r'<input[^>]*checked[^>]*name="notify"|<input[^>]*name="notify"[^>]*checked', page)
    response = operator_client.post(f"/admin/tenants/{tenant.tenant_id}/activate", data={"notify": "y"})
    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{tenant.contact_email} was emailed." in page
    [message] = [m for m in outbox(tenant.contact_email) if "active again" in m.subject]
    assert "is active again" in message.text_body
    # The branded frame: the product's name on top, the greeting, the reason it came.
    assert ">Portal</a>" in message.html_body and "Sent by the Portal" in message.html_body


def test_activating_an_active_tenant_says_so(operator_client, tenant, app):
    response = operator_client.post(f"/admin/tenants/{tenant.tenant_id}/activate")
    assert response.status_code == 303
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert f"Tenant {tenant.tenant_id} is not suspended." in page
    assert tenant_row(app, tenant.tenant_id).status == "active"


def test_suspension_and_activation_appear_in_the_tenants_activity_log(
    operator_client, tenant, make_user, login, app, make_operator
):
    operator = make_operator()
    client = app.test_client()
    login(client, operator)
    client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "admin_request", "notify": "y"})
    client.post(f"/admin/tenants/{tenant.tenant_id}/activate")
    with app.app_context():
        events = (
            db.session.query(AuditEvent)
            .filter(AuditEvent.tenant_id == tenant.tenant_id, AuditEvent.action.like("tenant.%"))
            .order_by(AuditEvent.id)
            .all()
        )
        assert [(e.action, e.actor_label) for e in events[-2:]] == [
            ("tenant.suspended", operator.email),
            ("tenant.activated", operator.email),
        ]
        assert events[-2].details["reason"] == "admin_request"
    user_client = app.test_client()
    login(user_client, make_user(tenant, role="viewer"))
    page = user_client.get("/activity").get_data(as_text=True)
    assert "tenant.suspended" in page and "tenant.activated" in page


# --- outbox ----------------------------------------------------------------------------


def test_outbox_lists_emails_and_shows_their_text(operator_client, tenant, outbox):
    operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/suspend",
        data={"reason": "terms_violation", "note": "See clause 4.", "notify": "y"},
    )
    [email] = outbox(tenant.contact_email)

    page = operator_client.get("/admin/outbox").get_data(as_text=True)
    assert f'data-testid="outbox-row" data-to="{tenant.contact_email}"' in page
    assert "Your account Console Co has been suspended" in page
    assert f'href="/admin/outbox/{email.id}"' in page

    message = operator_client.get(f"/admin/outbox/{email.id}")
    assert message.status_code == 200
    text = message.get_data(as_text=True)
    assert "Reason: Terms of service violation" in text
    assert "Note: See clause 4." in text
    assert f"To {tenant.contact_email}" in text
    assert f'href="/admin/outbox/{email.id}/html"' in text


def test_outbox_can_be_filtered_by_recipient(operator_client, tenant, make_tenant, some_email):
    other = make_tenant(company_name="Other Co")
    operator_client.post(f"/admin/tenants/{other.tenant_id}/suspend", data={"reason": "payment_failed", "notify": "y"})
    page = operator_client.get(f"/admin/outbox?to={other.contact_email.upper()}").get_data(as_text=True)
    assert f'data-to="{other.contact_email}"' in page
    assert 'data-to="someone@example.com"' not in page
    assert "No emails yet." in operator_client.get("/admin/outbox?to=nobody@example.com").get_data(as_text=True)


def test_empty_outbox_says_so(operator_client):
    assert "No emails yet." in operator_client.get("/admin/outbox").get_data(as_text=True)


def test_email_html_view_is_sandboxed(operator_client, some_email):
    response = operator_client.get(f"/admin/outbox/{some_email}/html")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert csp.split(";")[0].strip() == "sandbox"
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "has been suspended" in response.get_data(as_text=True)


def test_unknown_outbox_message_is_not_found(operator_client):
    assert operator_client.get("/admin/outbox/msg_nope").status_code == 404
    assert operator_client.get("/admin/outbox/msg_nope/html").status_code == 404


def test_outbox_filter_finds_a_contact_email_typed_with_capitals(operator_client, tenant, make_user, login, app):
    owner_client = app.test_client()
    login(owner_client, make_user(tenant, role="owner"))
    owner_client.post("/settings", data={"company_name": "Console Co", "contact_email": "Billing@Console.example"})
    operator_client.post(f"/admin/tenants/{tenant.tenant_id}/suspend", data={"reason": "payment_failed", "notify": "y"})
    page = operator_client.get("/admin/outbox?to=Billing@Console.example").get_data(as_text=True)
    assert "Your account Console Co has been suspended" in page


# --- the outbox and live links --------------------------------------------------------------


def _queued_reset_email(app, email: str) -> str:
    """A reset email as it sits before any delivery: committed, its job not run."""
    from portal.auth.services import request_password_reset

    with app.test_request_context():
        request_password_reset(email)
        db.session.commit()  # not transactions.commit(): the delivery job must not run
        return (
            db.session.query(EmailMessage)
            .filter_by(to=email)
            .filter(EmailMessage.subject.not_like("Invoice INV-%"))
            .one()
            .id
        )


def test_embedded_outbox_is_the_delivery_channel_and_says_its_links_are_live(app, operator_client, make_tenant):
    message_id = _queued_reset_email(app, f"owner-{make_tenant().tenant_id}@example.com")
    assert 'data-testid="outbox-live-links"' in operator_client.get("/admin/outbox").get_data(as_text=True)
    page = operator_client.get(f"/admin/outbox/{message_id}").get_data(as_text=True)
    assert "/reset-password/" in page and "[[secret" not in page


def test_with_smtp_the_operator_sees_no_live_reset_link(app, operator_client, make_tenant, monkeypatch):
    message_id = _queued_reset_email(app, f"owner-{make_tenant().tenant_id}@example.com")
    # Production sends by SMTP: then even a message still waiting to go out shows no link.
    monkeypatch.setitem(app.config, "MAIL_SERVER", "smtp.example.com")
    assert 'data-testid="outbox-redacted"' in operator_client.get("/admin/outbox").get_data(as_text=True)
    for path in (f"/admin/outbox/{message_id}", f"/admin/outbox/{message_id}/html"):
        page = operator_client.get(path).get_data(as_text=True)
        assert "/reset-password/" not in page and "[link removed after delivery]" in page
