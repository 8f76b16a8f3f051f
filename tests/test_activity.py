"""Activity: the tenant's own audit log, who did what, when and from where."""

import re
from datetime import UTC, datetime

import pytest

from portal import audit
from portal.access import Actor
from portal.extensions import db
from portal.models import AuditEvent, Tenant


def rows(page: str) -> list[str]:
    """The audit rows of a rendered activity page, as their text cells joined by '|'."""
    found = re.findall(r'<tr data-testid="audit-row" data-action="[^"]*">(.*?)</tr>', page, flags=re.S)
    return [
        "|".join(
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        )
        for row in found
    ]


def add_events(app, tenant, count: int, action: str = "test.event", actor: Actor | None = None) -> None:
    with app.test_request_context():
        for index in range(count):
            audit.record(
                actor or Actor(user=None, label="script"),
                action,
                db.session.get(Tenant, tenant.tenant_id),
                "thing",
                str(index),
                n=index,
            )
        db.session.commit()


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Audited Co")


def test_change_shows_who_what_when_and_from_which_address(client, tenant, make_user, login):
    admin = make_user(tenant, role="admin")
    client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    login(client, admin)
    before = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    client.post("/settings", data={"company_name": "Renamed Co", "contact_email": tenant.contact_email})
    client.post("/team/invitations", data={"email": "newbie@example.com", "role": "viewer", "expires_in_days": 7})

    response = client.get("/activity")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Creating the account also started its subscription and issued its first invoice.
    [invited, updated, *billing, created] = rows(page)
    assert sorted(row.split("|")[2] for row in billing) == ["Invoice issued", "Subscription started"]
    assert invited.split("|")[1:] == [admin.email, "Invitation sent", invited.split("|")[3], "203.0.113.7"]
    assert "newbie@example.com" in invited
    assert updated.split("|")[1:3] == [admin.email, "Company profile changed"]
    assert "Renamed Co" in updated and updated.endswith("203.0.113.7")
    when = datetime.strptime(updated.split("|")[0], "%b %d, %Y, %H:%M:%S UTC")  # no timezone chosen or reported
    assert abs((when - before).total_seconds()) < 60
    # The account was created by the test factory, with no address.
    assert created.split("|")[1:3] == ["system", "Account created"]
    assert created.endswith("—")


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_can_read_the_activity_log(client, tenant, make_user, login, role):
    login(client, make_user(tenant, role=role))
    response = client.get("/activity")
    assert response.status_code == 200
    assert "Account created" in response.get_data(as_text=True)


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/activity")
    assert response.status_code == 302
    assert "/signin" in response.headers["Location"]


def test_another_tenants_events_never_appear(client, tenant, make_tenant, make_user, login, app):
    other = make_tenant(company_name="Neighbour Co")
    neighbour = make_user(other, role="owner")
    neighbour_client = app.test_client()
    login(neighbour_client, neighbour)
    neighbour_client.post(
        "/settings", data={"company_name": "Neighbour Secret Rename", "contact_email": other.contact_email}
    )
    add_events(app, other, 3, action="neighbour.private")
    # An event that belongs to no tenant (a password reset) is nobody's business either.
    with app.test_request_context():
        audit.record(Actor(user=None, label="nobody@example.com"), "user.password_reset", None, "user", "usr_x")
        db.session.commit()

    login(client, make_user(tenant, role="owner"))
    page = client.get("/activity").get_data(as_text=True)
    assert "Neighbour" not in page
    assert "neighbour.private" not in page
    assert other.tenant_id not in page
    assert "user.password_reset" not in page
    # This tenant's own history only: its creation, subscription and first invoice.
    assert sorted(row.split("|")[2] for row in rows(page)) == [
        "Account created",
        "Invoice issued",
        "Subscription started",
    ]
    # Asking for a later page does not widen the filter.
    assert "neighbour.private" not in client.get("/activity?page=2").get_data(as_text=True)


def test_more_than_fifty_events_are_split_into_pages_newest_first(client, tenant, make_user, login, app):
    add_events(app, tenant, 60)  # plus the "tenant.created" from the factory: 61 in all
    login(client, make_user(tenant, role="viewer"))

    first = client.get("/activity").get_data(as_text=True)
    assert len(rows(first)) == 50
    assert "Page 1 of 2" in first
    assert 'href="/activity?page=2"' in first
    assert "Newer" not in first
    assert "N: 59" in rows(first)[0]

    second = client.get("/activity?page=2").get_data(as_text=True)
    second_rows = rows(second)
    assert len(second_rows) == 13  # 60 events + the account's creation, subscription and first invoice
    assert "Page 2 of 2" in second
    assert 'href="/activity?page=1"' in second
    assert "Older" not in second
    assert "Account created" in second_rows[-1]
    # No event is on both pages, and none is missing.
    assert len(set(rows(first)) | set(second_rows)) == 63


@pytest.mark.parametrize("page", ["0", "-3", "abc", ""])
def test_nonsense_page_number_shows_the_first_page(client, tenant, make_user, login, page):
    login(client, make_user(tenant, role="viewer"))
    response = client.get(f"/activity?page={page}")
    assert response.status_code == 200
    assert "Page 1 of 1" in response.get_data(as_text=True)


def test_empty_log_says_nothing_has_happened_yet(client, tenant, make_user, login, app):
    viewer = make_user(tenant, role="viewer")
    with app.app_context():
        db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id).delete()
        db.session.commit()
    login(client, viewer)
    page = client.get("/activity").get_data(as_text=True)
    assert "Nothing has happened yet." in page
    assert "<table>" not in page


def test_htmx_request_gets_only_the_events_fragment(client, tenant, make_user, login):
    login(client, make_user(tenant, role="viewer"))
    response = client.get("/activity", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<div id="events">')
    assert "<html" not in page
    assert 'data-action="tenant.created"' in page and "Account created" in page
    # A boosted navigation (a plain link click under hx-boost) wants the whole page.
    boosted = client.get("/activity", headers={"HX-Request": "true", "HX-Boosted": "true"}).get_data(as_text=True)
    assert "<html" in boosted


def test_event_details_are_escaped(client, tenant, make_user, login, app):
    add_events(app, tenant, 1, actor=Actor(user=None, label="<b>mallory</b>"))
    with app.test_request_context():
        audit.record(
            Actor(user=None, label="x"),
            "test.xss",
            db.session.get(Tenant, tenant.tenant_id),
            note="<script>alert(1)</script>",
        )
        db.session.commit()
    login(client, make_user(tenant, role="viewer"))
    page = client.get("/activity").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>mallory</b>" not in page


def test_a_page_past_the_last_says_so_instead_of_claiming_an_empty_log(client, tenant, make_user, login):
    login(client, make_user(tenant, role="viewer"))
    page = client.get("/activity?page=999").get_data(as_text=True)
    assert "There is no page 999." in page
    assert "Nothing has happened yet." not in page


def test_entries_read_as_sentences_with_money_and_changes_spelled_out(client, tenant, make_user, login, app):
    with app.test_request_context():
        row = db.session.get(Tenant, tenant.tenant_id)
        someone = Actor(user=None, label="owner@example.com")
        audit.record(someone, "subscription.cancel_scheduled", row, "subscription", "sub_1", reason="too_expensive")
        audit.record(
            someone,
            "tenant.updated",
            row,
            "tenant",
            row.tenant_id,
            changes={"company_name": {"from": "Audited Co", "to": "Audited Co Ltd"}},
        )
        audit.record(someone, "credit.granted", row, "credit_grant", "cg_1", amount=49900, currency="USD", reason="")
        audit.record(someone, "meter.recalibrated", row, "meter", "m_1", dry_run=True)
        db.session.commit()
    login(client, make_user(tenant, role="viewer"))
    page = client.get("/activity").get_data(as_text=True)
    shown = {row.split("|")[2]: row.split("|")[3] for row in rows(page)}
    assert shown["Cancellation scheduled for the end of the period"] == "Reason: too_expensive"
    assert shown["Company profile changed"] == "Changes: Company name: Audited Co → Audited Co Ltd"
    assert shown["Credit granted"] == "Amount: $499.00"
    assert shown["Meter: recalibrated"] == "Dry run: yes"  # an action without a name of its own
    text = re.sub(r"<[^>]+>", " ", page)
    for debug in ("subscription.cancel_scheduled", "{'", "49900", "&#39;from&#39;"):
        assert debug not in text
