"""The plan cards' monthly/yearly switch and changing to a yearly plan from the Billing page."""

import re
from datetime import timedelta

import pytest

from portal.billing import subscriptions
from portal.models import utcnow
from tests.conftest import HTMX
from tests.test_billing_pages import newest_invoice, quote_of, shown, subscription_state


@pytest.fixture
def tenant(make_tenant, monkeypatch):
    """A Starter tenant ten days into its first month (its $49 invoice issued then)."""
    monkeypatch.setattr(subscriptions, "utcnow", lambda: utcnow() - timedelta(days=10))
    tenant = make_tenant(company_name="Yearly Co")
    monkeypatch.setattr(subscriptions, "utcnow", utcnow)
    return tenant


@pytest.fixture
def team(tenant, make_user):
    return {role: make_user(tenant, role=role) for role in ("owner", "viewer")}


def cards(page: str) -> list[tuple[str, str]]:
    """(plan key, price) of each plan card, in page order."""
    found = re.findall(r'data-testid="plan-card" data-plan="([^"]+)".*?data-testid="plan-price">([^<]+)<', page, re.S)
    return [(key, price.strip()) for key, price in found]


def test_the_cards_show_monthly_plans_and_the_switch_reaches_the_yearly_ones_without_javascript(
    client, tenant, team, login
):
    login(client, team["viewer"])
    page = client.get("/billing").get_data(as_text=True)
    assert cards(page) == [
        ("starter", "$49.00 / month"),
        ("professional", "$499.00 / month"),
        ("enterprise", "$1,999.00 / month"),
    ]
    assert 'href="/billing?interval=year#plans"' in page
    assert re.search(r'data-interval="month"\s+class=""\s+aria-current="true"', page)

    yearly = client.get("/billing?interval=year").get_data(as_text=True)
    assert cards(yearly) == [
        ("starter_yearly", "$490.00 / year"),
        ("professional_yearly", "$4,990.00 / year"),
        ("enterprise_yearly", "$19,990.00 / year"),
    ]
    assert "12,000 pipeline runs a year" in yearly
    assert "two months free" in shown(yearly, "interval-note")
    # An interval that does not exist shows the monthly cards, never an error.
    assert cards(client.get("/billing?interval=fortnight").get_data(as_text=True))[0][0] == "starter"


def test_htmx_swaps_only_the_plan_cards(client, tenant, team, login):
    login(client, team["owner"])
    response = client.get("/billing?interval=year", headers=HTMX)
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<section id="plans">' in fragment
    assert "<html" not in fragment and 'data-testid="subscription"' not in fragment
    assert [key for key, _ in cards(fragment)] == ["starter_yearly", "professional_yearly", "enterprise_yearly"]


def test_owner_switches_starter_to_yearly_and_pays_the_year_less_the_unused_month(client, app, tenant, team, login):
    login(client, team["owner"])
    yearly = client.get("/billing?interval=year").get_data(as_text=True)
    assert 'href="/billing/change/starter_yearly"' in yearly

    preview = client.get("/billing/change/starter_yearly").get_data(as_text=True)
    assert "Pipeline runs" in shown(preview, "quota-changes") and "12,000 a year" in preview
    response = client.post("/billing/change/starter_yearly", data={"quote": quote_of(preview)})
    assert response.status_code == 303

    state = subscription_state(app, tenant)
    assert state["plan"] == "starter_yearly"
    assert (state["period_end"] - state["period_start"]).days in (365, 366)
    invoice = newest_invoice(app, tenant)
    (plan_type, _, plan_amount), (credit_type, credit_text, credit) = invoice["lines"]
    assert (plan_type, plan_amount, credit_type) == ("plan", 49000, "proration")
    # Ten days into a $49 month: about two thirds of it comes back.
    assert credit_text.startswith("Unused time on Starter") and -4900 < credit < -3000
    assert invoice["total"] == 49000 + credit
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "current-plan") == "Starter (yearly)"
    # The cards open on the plan's own interval.
    assert cards(page)[0] == ("starter_yearly", "$490.00 / year")
