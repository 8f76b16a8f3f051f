"""Times in the viewer's timezone: chosen on the account page, else reported by the browser,
else UTC; the instants themselves (billing periods above all) stay UTC whatever is shown."""

import pytest

from portal.access import SYSTEM
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Membership, Subscription, User
from portal.tenants.services import create_tenant
from tests.billing_engine_support import run_billing, utc
from tests.conftest import _create_user, unique
from tests.test_billing_pages import shown

# Jan 31 03:30 UTC is still Jan 30 in New York; the anchor keeps 03:30 UTC on every month end,
# which New York reads as 22:30 EST before March 14, 2027 and 23:30 EDT after it.
SIGNED_UP = utc(2027, 1, 31, 3, 30)


@pytest.fixture
def customer(app):
    """A Starter tenant that signed up at SIGNED_UP, and its owner's email."""
    with app.test_request_context():
        owner = _create_user(f"{unique('tz')}@example.com")
        tenant = create_tenant(SYSTEM, unique("tz"), "Zoned Co", owner.email, subscribed_at=SIGNED_UP)
        db.session.add(Membership(tenant_id=tenant.tenant_id, user_id=owner.id, role="owner"))
        commit()
        return {"tenant_id": tenant.tenant_id, "email": owner.email}


def choose_timezone(app, email: str, name: str | None) -> None:
    with app.app_context():
        db.session.execute(db.select(User).filter_by(email=email)).scalar_one().timezone = name
        commit()


def period_end(app, tenant_id: str):
    with app.app_context():
        return (
            db.session.execute(db.select(Subscription).filter_by(tenant_id=tenant_id)).scalar_one().current_period_end
        )


def test_the_billing_page_reads_in_the_viewers_timezone_across_a_dst_change(app, client, login, customer):
    login(client, customer["email"])
    assert shown(client.get("/billing").get_data(as_text=True), "current-period") == "Jan 31, 2027 – Feb 28, 2027"

    choose_timezone(app, customer["email"], "America/New_York")
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "current-period") == "Jan 30, 2027 – Feb 27, 2027"
    assert shown(page, "viewer-timezone") == "times in America/New_York"

    with app.test_request_context():
        assert run_billing(utc(2027, 2, 28, 4)).errors == []
    # Month end to month end on the anchor, in UTC, though New York moved to summer time between.
    assert period_end(app, customer["tenant_id"]) == utc(2027, 3, 31, 3, 30)
    assert shown(client.get("/billing").get_data(as_text=True), "current-period") == "Feb 27, 2027 – Mar 30, 2027"


def test_the_operator_console_shows_the_dst_shift_in_the_operators_own_timezone(
    app, client, login, customer, make_operator
):
    operator = make_operator()
    choose_timezone(app, operator.email, "America/New_York")
    with app.test_request_context():
        run_billing(utc(2027, 2, 28, 4))
    login(client, operator)
    page = client.get(f"/admin/tenants/{customer['tenant_id']}").get_data(as_text=True)
    assert shown(page, "subscription-period") == "Feb 27, 2027, 22:30 EST – Mar 30, 2027, 23:30 EDT"

    choose_timezone(app, operator.email, "Europe/Berlin")
    page = client.get(f"/admin/tenants/{customer['tenant_id']}").get_data(as_text=True)
    assert shown(page, "subscription-period") == "Feb 28, 2027, 04:30 CET – Mar 31, 2027, 05:30 CEST"


def test_without_a_choice_the_browsers_timezone_is_used_and_a_bogus_one_falls_back_to_utc(app, client, login, customer):
    login(client, customer["email"])
    client.set_cookie("tz", "Asia/Tokyo")
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "viewer-timezone") == "times in Asia/Tokyo"
    assert shown(page, "current-period") == "Jan 31, 2027 – Feb 28, 2027"  # 12:30 JST, same days

    choose_timezone(app, customer["email"], "America/New_York")  # a choice beats the browser
    assert shown(client.get("/billing").get_data(as_text=True), "viewer-timezone") == "times in America/New_York"

    choose_timezone(app, customer["email"], None)
    for bogus in ("Mars/Olympus_Mons", "../../etc/passwd", "x" * 500):
        client.set_cookie("tz", bogus)
        assert shown(client.get("/billing").get_data(as_text=True), "viewer-timezone") == "times in UTC"


def test_the_account_page_saves_a_timezone_refuses_an_unknown_one_and_can_go_back_to_automatic(
    app, client, login, customer
):
    assert client.get("/account").status_code == 302  # signed out: to the sign-in page
    login(client, customer["email"])
    page = client.get("/account").get_data(as_text=True)
    assert 'value="Pacific/Auckland"' in page and "Automatic: your browser" in page

    response = client.post("/account", data={"timezone": "Pacific/Auckland"})
    assert response.status_code == 303
    page = client.get("/account").get_data(as_text=True)
    assert "Times are now shown in Pacific/Auckland." in page
    assert shown(page, "timezone-now").startswith("Times are shown in Pacific/Auckland;")

    response = client.post("/account", data={"timezone": "Atlantis/Capital"})
    assert response.status_code == 422
    assert "is not a timezone" in response.get_data(as_text=True)
    with app.app_context():
        assert (
            db.session.execute(db.select(User.timezone).filter_by(email=customer["email"])).scalar()
            == "Pacific/Auckland"
        )

    assert client.post("/account", data={"timezone": ""}).status_code == 303
    with app.app_context():
        assert db.session.execute(db.select(User.timezone).filter_by(email=customer["email"])).scalar() is None
