"""The Billing pages through HTTP: plan cards, the exact plan-change preview and what confirming it
issues, scheduled downgrades, cancel and resume, invoices (list, filter, pages, CSV, detail, PDF),
roles, other tenants, suspended tenants, and the plan choice at sign-up."""

import csv
import html
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, func, select

from portal.access import SYSTEM
from portal.billing import invoices as invoice_service
from portal.billing import subscriptions
from portal.billing.display import day
from portal.billing.money import format_money
from portal.billing.periods import add_interval
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Invoice, InvoiceLine, Plan, PlanVersion, Subscription, Tenant, User, utcnow
from tests.conftest import HTMX, PASSWORD, field_error

# --- reading the pages -------------------------------------------------------------------


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="flash flash-\w+" role="status">(.*?)</li>', page)]


def shown(page: str, testid: str) -> str:
    """The text of the element with this data-testid, tags stripped, spaces collapsed."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', page, flags=re.S)
    assert match, f"nothing with data-testid={testid!r} on the page"
    text = re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", " ", match.group(2)))
    return " ".join(html.unescape(text).split())


def quote_of(page: str) -> str:
    return html.unescape(re.search(r'name="quote" type="hidden" value="([^"]+)"', page).group(1))


def preview_instant(page: str) -> datetime:
    """The instant the preview page says its figures were calculated at."""
    time_of_day = re.search(r"\(now, (\d\d:\d\d:\d\d) UTC\)", page).group(1)
    return datetime.strptime(f"{shown(page, 'effective-date')} {time_of_day}", "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC)


def invoice_rows(page: str) -> list[tuple[str, str, str]]:
    """(number, total, status) of each invoice row, in page order."""
    rows = re.findall(r'<tr data-testid="invoice-row" data-number="([^"]+)">(.*?)</tr>', page, flags=re.S)
    return [(number, shown(row, "invoice-total"), shown(row, "invoice-status")) for number, row in rows]


# --- the state behind them ---------------------------------------------------------------


def subscription_state(app, tenant) -> dict:
    with app.app_context():
        sub = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        if sub is None:
            return {}
        return {
            "plan": sub.plan_version.key,
            "status": sub.status,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "scheduled": sub.scheduled_plan_version.key if sub.scheduled_plan_version else None,
            "period_start": sub.current_period_start,
            "period_end": sub.current_period_end,
            "trial_end": sub.trial_end,
            "cancel_reason": sub.cancel_reason,
            "cancel_feedback": sub.cancel_feedback,
        }


def invoice_count(app, tenant) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.tenant_id == tenant.tenant_id))


def newest_invoice(app, tenant) -> dict:
    with app.app_context():
        invoice = db.session.execute(
            invoice_service.for_tenant(db.session.get(Tenant, tenant.tenant_id)).limit(1)
        ).scalar_one()
        return {
            "id": invoice.id,
            "number": invoice.number,
            "total": invoice.total,
            "issued_at": invoice.issued_at,
            "kind": invoice.kind,
            "lines": [(line.type, line.description, line.amount) for line in invoice.lines],
        }


class Clock:
    """The billing core's clock, shifted: subscriptions can start in the past and previews be old."""

    def __init__(self):
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(subscriptions, "utcnow", clock.now)
    return clock


@pytest.fixture
def tenant(make_tenant, clock):
    """A Starter tenant ten days into its first period (its $49 invoice issued then)."""
    clock.offset = -timedelta(days=10)
    tenant = make_tenant(company_name="Billing Co")
    clock.offset = timedelta(0)
    return tenant


@pytest.fixture
def team(tenant, make_user):
    return {role: make_user(tenant, role=role) for role in ("owner", "admin", "developer", "viewer")}


def upgrade_via_page(client, plan_key: str = "enterprise") -> str:
    page = client.get(f"/billing/change/{plan_key}").get_data(as_text=True)
    response = client.post(f"/billing/change/{plan_key}", data={"quote": quote_of(page)})
    assert response.status_code == 303 and response.headers["Location"] == "/billing"
    return client.get("/billing").get_data(as_text=True)


# --- the page and roles ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_sees_plan_period_next_invoice_and_cards_but_only_billing_managers_get_buttons(
    client, app, tenant, team, login, role
):
    login(client, team[role])
    page = client.get("/billing").get_data(as_text=True)
    state = subscription_state(app, tenant)

    assert "<h1>Billing</h1>" in page
    assert 'aria-current="page">Billing</a>' in page
    assert shown(page, "current-plan") == "Starter"
    assert shown(page, "subscription-status") == "active"
    assert shown(page, "current-period") == f"{day(state['period_start'])} – {day(state['period_end'])}"
    assert shown(page, "next-invoice").startswith(f"{day(state['period_end'])} · $49.00 for Starter")
    cards = dict(re.findall(r'data-plan="(\w+)".*?data-testid="plan-price">([^<]+)<', page, flags=re.S))
    assert cards == {"starter": "$49.00 / month", "professional": "$499.00 / month", "enterprise": "$1,999.00 / month"}
    assert re.search(r'data-plan="starter" aria-current="true"', page)
    assert "14-day free trial for new subscribers" in page
    assert "1,000 pipeline runs a month" in page
    assert invoice_rows(page) == [(invoice_rows(page)[0][0], "$49.00", "open")]

    manager = role in ("owner", "admin")
    assert ('href="/billing/change/enterprise"' in page) == manager
    assert ('id="cancel-form"' in page) == manager
    assert ("can see the plan and the invoices but not change" in page) == (not manager)


def test_billing_sits_between_credentials_and_settings_in_the_navigation(client, team, login):
    login(client, team["viewer"])
    nav = client.get("/overview").get_data(as_text=True)
    labels = re.findall(r'<li><a href="/[\w-]*"[^>]*>([^<]+)</a></li>', nav)
    assert labels[labels.index("Credentials") + 1 : labels.index("Credentials") + 3] == ["Billing", "Settings"]


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_members_without_billing_rights_cannot_preview_change_cancel_resume_or_keep_a_plan(
    client, app, tenant, team, login, role
):
    tenant = tenant
    login(client, team[role])
    before, invoices_before = subscription_state(app, tenant), invoice_count(app, tenant)

    assert client.get("/billing/change/enterprise").status_code == 403
    for url, data in [
        ("/billing/change/enterprise", {"quote": "x"}),
        ("/billing/cancel", {"when": "now"}),
        ("/billing/resume", {}),
        ("/billing/scheduled-change/cancel", {}),
    ]:
        response = client.post(url, data=data)
        assert response.status_code == 403, url
        assert "Your role does not allow this." in response.get_data(as_text=True)
    assert subscription_state(app, tenant) == before
    assert invoice_count(app, tenant) == invoices_before


# --- changing plan -----------------------------------------------------------------------


def test_owner_upgrade_preview_shows_the_exact_figures_and_confirming_issues_that_invoice(
    client, app, tenant, team, login
):
    tenant = tenant
    login(client, team["owner"])
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    at = preview_instant(page)
    with app.app_context():
        expected = subscriptions.preview_change(
            subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id)), "enterprise", at=at
        )
        expected_lines = [(line.type, line.description, line.amount) for line in expected.lines]

    # Ten days into a 30/31-day period: most of Starter is credited, most of Enterprise charged.
    assert expected.immediate and expected.direction == "upgrade" and len(expected.lines) == 2
    assert shown(page, "preview-credit") == format_money(-expected.credit, "USD")
    assert shown(page, "preview-charge") == format_money(expected.charge, "USD")
    assert shown(page, "preview-total") == format_money(expected.total, "USD")
    assert 0 < expected.credit < 4900 and expected.total < 199900
    assert shown(page, "effective-date") == day(at)
    shown_lines = re.findall(r'<tr data-testid="preview-line"><td>([^<]+)</td><td[^>]*>([^<]+)</td>', page)
    assert [(html.unescape(d), a) for d, a in shown_lines] == [
        (description, format_money(amount, "USD")) for _type, description, amount in expected_lines
    ]
    assert "Confirm upgrade to Enterprise" in page

    response = client.post("/billing/change/enterprise", data={"quote": quote_of(page)})
    assert response.status_code == 303 and response.headers["Location"] == "/billing"
    invoice = newest_invoice(app, tenant)
    assert invoice["kind"] == "proration"
    assert invoice["total"] == expected.total
    assert invoice["lines"] == expected_lines
    assert invoice["issued_at"] == at

    billing = client.get("/billing").get_data(as_text=True)
    assert flashes(billing) == [
        f"Upgraded to Enterprise. Invoice {invoice['number']} for {format_money(expected.total, 'USD')} issued."
    ]
    assert shown(billing, "current-plan") == "Enterprise"
    assert re.search(r'data-plan="enterprise" aria-current="true"', billing)
    assert invoice_rows(billing)[0] == (invoice["number"], format_money(expected.total, "USD"), "open")
    assert subscription_state(app, tenant)["plan"] == "enterprise"


def test_a_preview_confirmed_minutes_later_still_charges_exactly_what_it_showed(
    client, app, tenant, team, login, clock
):
    tenant = tenant
    login(client, team["owner"])
    clock.offset = -timedelta(minutes=10)
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    clock.offset = timedelta(0)
    with app.app_context():
        sub = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        now_total = subscriptions.preview_change(sub, "enterprise").total
    previewed = shown(page, "preview-total")
    assert previewed != format_money(now_total, "USD")  # ten minutes of Enterprise cost something

    client.post("/billing/change/enterprise", data={"quote": quote_of(page)})
    assert format_money(newest_invoice(app, tenant)["total"], "USD") == previewed


@pytest.mark.parametrize("age_minutes, quote", [(31, None), (0, "forged.quote.value"), (0, "")])
def test_an_expired_or_forged_quote_changes_nothing_and_shows_the_figures_again(
    client, app, tenant, team, login, clock, age_minutes, quote
):
    tenant = tenant
    login(client, team["owner"])
    clock.offset = -timedelta(minutes=age_minutes)
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    clock.offset = timedelta(0)
    invoices_before = invoice_count(app, tenant)

    response = client.post("/billing/change/enterprise", data={"quote": quote_of(page) if quote is None else quote})
    assert response.status_code == 303 and response.headers["Location"] == "/billing/change/enterprise"
    again = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert "These are the figures as of now: check them and confirm again." in flashes(again)[0]
    assert subscription_state(app, tenant)["plan"] == "starter"
    assert invoice_count(app, tenant) == invoices_before


def test_a_quote_for_one_plan_cannot_confirm_another(client, app, tenant, team, login):
    tenant = tenant
    login(client, team["owner"])
    professional = client.get("/billing/change/professional").get_data(as_text=True)
    response = client.post("/billing/change/enterprise", data={"quote": quote_of(professional)})
    assert response.headers["Location"] == "/billing/change/enterprise"
    assert subscription_state(app, tenant)["plan"] == "starter"


def test_the_downgrade_preview_says_what_is_lost(client, app, tenant, team, login):
    login(client, team["owner"])
    upgrade_via_page(client, "professional")
    period_end = subscription_state(app, tenant)["period_end"]
    page = html.unescape(client.get("/billing/change/starter").get_data(as_text=True))
    assert shown(page, "what-is-lost").startswith(
        f"From {day(period_end)} you will have less: Pipeline runs a month 5,000 → 1,000, "
        "Concurrent pipelines 15 → 5, Storage 500 GB → 50 GB."
    )
    assert page.count('class="quota-lost"') == 3
    # An upgrade loses nothing, so it says nothing of the kind (the comparison is still there).
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert 'data-testid="what-is-lost"' not in page and 'data-testid="quota-changes"' in page


def test_downgrade_is_scheduled_for_the_period_end_and_can_be_kept_back(client, app, tenant, team, login):
    tenant = tenant
    login(client, team["owner"])
    upgrade_via_page(client, "enterprise")
    invoices_before = invoice_count(app, tenant)
    period_end = subscription_state(app, tenant)["period_end"]

    page = client.get("/billing/change/starter").get_data(as_text=True)
    assert shown(page, "effective-date") == day(period_end)
    assert "(scheduled, at the end of the current period)" in page
    assert shown(page, "preview-total") == "$0.00"
    assert "You keep Enterprise until then." in page
    assert "Schedule downgrade to Starter" in page
    client.post("/billing/change/starter", data={"quote": quote_of(page)})

    billing = client.get("/billing").get_data(as_text=True)
    assert flashes(billing) == [
        f"Downgrade to Starter scheduled for {day(period_end)}. You keep Enterprise until then."
    ]
    assert shown(billing, "current-plan") == "Enterprise"
    assert shown(billing, "scheduled-change").startswith(f"Your plan changes to Starter on {day(period_end)}.")
    assert shown(billing, "scheduled-note") == f"Starts on {day(period_end)}"
    assert shown(billing, "next-invoice").startswith(f"{day(period_end)} · $49.00 for Starter")
    assert subscription_state(app, tenant)["scheduled"] == "starter"
    assert invoice_count(app, tenant) == invoices_before

    response = client.post("/billing/scheduled-change/cancel")
    assert response.status_code == 303
    billing = client.get("/billing").get_data(as_text=True)
    assert flashes(billing) == ["You stay on Enterprise; the change to Starter is cancelled."]
    assert 'data-testid="scheduled-change"' not in billing
    assert shown(billing, "next-invoice").startswith(f"{day(period_end)} · $1,999.00 for Enterprise")
    assert subscription_state(app, tenant)["scheduled"] is None

    client.post("/billing/scheduled-change/cancel")
    assert flashes(client.get("/billing").get_data(as_text=True)) == ["There is no scheduled plan change to cancel."]


def test_choosing_the_current_plan_says_so_and_changes_nothing(client, app, tenant, team, login):
    login(client, team["owner"])
    response = client.get("/billing/change/starter")
    assert response.status_code == 303 and response.headers["Location"] == "/billing"
    assert flashes(client.get("/billing").get_data(as_text=True)) == ["You are already on the Starter plan."]
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    client.post("/billing/change/starter", data={"quote": quote_of(page)})
    assert flashes(client.get("/billing").get_data(as_text=True)) == ["You are already on the Starter plan."]
    assert subscription_state(app, tenant)["plan"] == "starter"


@pytest.mark.parametrize("plan_key", ["gold", "legacy", "STARTER", "x" * 300])
def test_a_plan_that_is_not_offered_is_a_404_page(client, app, tenant, team, login, plan_key):
    with app.app_context():
        db.session.add(
            Plan(
                key="legacy",
                name="Legacy",
                public=False,
                versions=[PlanVersion(version=1, price=100, quotas={}, rate_limits={}, features=[])],
            )
        )
        commit()
    login(client, team["owner"])
    assert client.get(f"/billing/change/{plan_key}").status_code == 404
    assert client.post(f"/billing/change/{plan_key}", data={"quote": "x"}).status_code == 404
    assert subscription_state(app, tenant)["plan"] == "starter"


def test_upgrading_while_a_cancellation_is_pending_withdraws_it(client, app, tenant, team, login):
    tenant = tenant
    login(client, team["owner"])
    client.post("/billing/cancel", data={"when": "period_end"})
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert "Confirming this change withdraws the cancellation" in page
    client.post("/billing/change/enterprise", data={"quote": quote_of(page)})
    billing = client.get("/billing").get_data(as_text=True)
    assert flashes(billing)[0].endswith("Your subscription no longer ends at the end of this period.")
    assert subscription_state(app, tenant)["cancel_at_period_end"] is False
    assert 'data-testid="pending-cancellation"' not in billing


def test_changing_plan_during_the_trial_is_free_and_keeps_the_trial(client, app):
    data = sign_up_data(plan="professional")
    client.post("/signup", data=data)
    tenant = SimpleNamespace(tenant_id=data["tenant_id"])
    trial_end = subscription_state(app, tenant)["trial_end"]
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    assert shown(page, "change-summary").startswith(f"You are in your free trial until {day(trial_end)}.")
    assert (shown(page, "preview-credit"), shown(page, "preview-charge"), shown(page, "preview-total")) == (
        "$0.00",
        "$0.00",
        "$0.00",
    )
    assert "Switch to Enterprise" in page
    client.post("/billing/change/enterprise", data={"quote": quote_of(page)})
    billing = client.get("/billing").get_data(as_text=True)
    assert flashes(billing) == [
        f"Switched to Enterprise. Your free trial continues until {day(trial_end)}; nothing is charged until then."
    ]
    state = subscription_state(app, tenant)
    assert (state["plan"], state["status"], state["trial_end"]) == ("enterprise", "trialing", trial_end)
    assert invoice_count(app, tenant) == 0


# --- cancel and resume -------------------------------------------------------------------


def test_cancel_at_period_end_then_resume(client, app, tenant, team, login):
    tenant = tenant
    login(client, team["admin"])
    period_end = subscription_state(app, tenant)["period_end"]
    response = client.post(
        "/billing/cancel", data={"reason": "too_expensive", "feedback": "Great, but pricey.", "when": "period_end"}
    )
    assert response.status_code == 303
    page = client.get("/billing").get_data(as_text=True)
    assert flashes(page) == [
        f"Your subscription will end on {day(period_end)}. Until then everything keeps working, and you can resume it."
    ]
    assert shown(page, "pending-cancellation").startswith(
        f"Your subscription is cancelled and ends on {day(period_end)}."
    )
    assert shown(page, "next-invoice") == f"None: the subscription ends on {day(period_end)}."
    assert 'id="cancel-form"' not in page
    state = subscription_state(app, tenant)
    assert (state["status"], state["cancel_at_period_end"], state["cancel_reason"], state["cancel_feedback"]) == (
        "active",
        True,
        "too_expensive",
        "Great, but pricey.",
    )

    client.post("/billing/resume")
    page = client.get("/billing").get_data(as_text=True)
    assert flashes(page) == [f"Your Starter subscription continues; it renews on {day(period_end)}."]
    assert 'data-testid="pending-cancellation"' not in page
    assert shown(page, "next-invoice").startswith(f"{day(period_end)} · $49.00")
    assert subscription_state(app, tenant)["cancel_at_period_end"] is False

    client.post("/billing/resume")
    assert flashes(client.get("/billing").get_data(as_text=True)) == [
        "The subscription is not set to cancel, so there is nothing to resume."
    ]


def test_immediate_cancel_ends_the_subscription_and_a_plan_can_be_chosen_again(client, app, tenant, team, login):
    tenant = tenant
    login(client, team["owner"])
    client.post("/billing/cancel", data={"reason": "", "feedback": "", "when": "now"})
    page = client.get("/billing").get_data(as_text=True)
    assert flashes(page) == ["Your subscription has ended. No further invoices will be issued."]
    assert shown(page, "subscription-status") == "canceled"
    assert shown(page, "ended-on") == f"Ended on {day(utcnow())}"
    assert 'id="cancel-form"' not in page and 'data-testid="next-invoice"' not in page
    assert subscription_state(app, tenant)["status"] == "canceled"

    # Subscribing again: Professional starts with its trial, nothing charged.
    assert 'href="/billing/change/professional">Subscribe' in page
    preview = client.get("/billing/change/professional").get_data(as_text=True)
    assert "<h1>Subscribe to Professional</h1>" in preview
    assert shown(preview, "preview-total") == "$0.00"
    invoices_before = invoice_count(app, tenant)
    client.post("/billing/change/professional", data={"quote": quote_of(preview)})
    page = client.get("/billing").get_data(as_text=True)
    state = subscription_state(app, tenant)
    assert flashes(page) == [
        f"Your 14-day Professional trial has started. It ends on {day(state['trial_end'])}; "
        "the first invoice comes then."
    ]
    assert (state["plan"], state["status"]) == ("professional", "trialing")
    assert shown(page, "trial-end") == f"Free trial until {day(state['trial_end'])}"
    assert invoice_count(app, tenant) == invoices_before


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"reason": "bored", "when": "now"}, "reason", "Choose one of the listed reasons."),
        (
            {"reason": "other", "feedback": "x" * 2001, "when": "now"},
            "feedback",
            "Keep the feedback under 2,000 characters.",
        ),
        ({"when": "tomorrow"}, "when", "Choose when the subscription ends."),
        (
            {"reason": "other", "feedback": "a\x00b", "when": "now"},
            "feedback",
            "Remove the NUL character from the feedback; it cannot be stored.",
        ),
    ],
)
def test_a_bad_cancel_form_says_why_beside_the_field_and_cancels_nothing(
    client, app, tenant, team, login, data, field, message
):
    tenant = tenant
    login(client, team["owner"])
    response = client.post("/billing/cancel", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, field) == message
    assert '<details class="confirm" open>' in page  # the form stays open with what was typed
    assert subscription_state(app, tenant)["status"] == "active"
    assert subscription_state(app, tenant)["cancel_at_period_end"] is False


def test_a_tenant_without_a_subscription_sees_the_empty_state_and_can_subscribe(client, app, tenant, team, login):
    tenant = tenant
    with app.app_context():
        ids = select(Invoice.id).where(Invoice.tenant_id == tenant.tenant_id)
        db.session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(ids)))
        db.session.execute(delete(Invoice).where(Invoice.tenant_id == tenant.tenant_id))
        db.session.execute(delete(Subscription).where(Subscription.tenant_id == tenant.tenant_id))
        commit()
    login(client, team["owner"])
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "no-subscription").startswith("This account has no subscription yet.")
    assert shown(page, "no-invoices") == "No invoices yet."
    assert 'href="/billing/change/starter">Subscribe' in page

    preview = client.get("/billing/change/starter").get_data(as_text=True)
    assert shown(preview, "preview-total") == "$49.00"
    client.post("/billing/change/starter", data={"quote": quote_of(preview)})
    invoice = newest_invoice(app, tenant)
    assert flashes(client.get("/billing").get_data(as_text=True)) == [
        f"Subscribed to Starter. Invoice {invoice['number']} for $49.00 issued."
    ]
    assert subscription_state(app, tenant)["status"] == "active"


def test_a_suspended_tenant_can_still_open_billing_and_act_there(client, app, make_tenant, make_user, login):
    tenant = make_tenant(status="suspended")
    owner = make_user(tenant, role="owner")
    login(client, owner)
    page = client.get("/billing").get_data(as_text=True)
    assert 'data-testid="suspended-banner"' in page and shown(page, "current-plan") == "Starter"
    assert client.post("/billing/cancel", data={"when": "period_end"}).status_code == 303
    assert subscription_state(app, tenant)["cancel_at_period_end"] is True
    assert client.get("/billing/invoices").status_code == 200


# --- invoices ----------------------------------------------------------------------------


@pytest.fixture
def many_invoices(app, tenant):
    """24 months of renewals: 25 invoices, the oldest paid by bank transfer, one voided."""
    with app.app_context():
        sub = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        subscriptions.renew(sub, add_interval(sub.billing_anchor, "month", 24))
        rows = db.session.execute(invoice_service.for_tenant(sub.tenant)).scalars().all()
        for invoice in rows[-5:]:
            invoice_service.mark_paid(SYSTEM, invoice, f"bank-{invoice.number}", utcnow())
        invoice_service.void(SYSTEM, rows[0], "Issued by mistake", utcnow())
        commit()
        return [(invoice.id, invoice.number, invoice.status) for invoice in rows]


def test_invoice_list_is_newest_first_twenty_a_page(client, team, login, many_invoices):
    login(client, team["viewer"])
    first = client.get("/billing/invoices").get_data(as_text=True)
    assert len(many_invoices) == 25
    assert [number for number, _total, _status in invoice_rows(first)] == [n for _i, n, _s in many_invoices[:20]]
    assert shown(first, "page-info") == "Page 1 of 2 · 25 invoices"
    assert 'href="/billing/invoices?page=2" rel="next"' in first
    second = client.get("/billing/invoices?page=2").get_data(as_text=True)
    assert [number for number, _t, _s in invoice_rows(second)] == [n for _i, n, _s in many_invoices[20:]]
    assert 'href="/billing/invoices?page=1" rel="prev"' in second and 'rel="next"' not in second
    for page in ("3", "99999999999999999999999"):
        beyond = client.get(f"/billing/invoices?page={page}").get_data(as_text=True)
        assert "There is no page" in shown(beyond, "no-such-page")
    assert len(invoice_rows(client.get("/billing/invoices?page=abc").get_data(as_text=True))) == 20


def test_invoice_list_filters_by_status_and_says_so_for_an_unknown_one(client, team, login, many_invoices):
    login(client, team["owner"])
    paid = client.get("/billing/invoices?status=paid").get_data(as_text=True)
    assert [(n, s) for n, _t, s in invoice_rows(paid)] == [(n, "paid") for _i, n, s in many_invoices if s == "paid"]
    assert 'href="/billing/invoices.csv?status=paid"' in paid
    assert '<option value="paid" selected>' in paid
    void = client.get("/billing/invoices?status=void").get_data(as_text=True)
    assert [n for n, _t, _s in invoice_rows(void)] == [many_invoices[0][1]]
    assert (
        shown(client.get("/billing/invoices?status=uncollectible").get_data(as_text=True), "no-invoices")
        == "No uncollectible invoices."
    )
    unknown = client.get("/billing/invoices?status=bogus").get_data(as_text=True)
    assert shown(unknown, "filter-complaint") == "There is no invoice status “bogus”; showing all invoices."
    assert len(invoice_rows(unknown)) == 20


def test_invoice_filter_over_htmx_returns_only_the_table(client, team, login, many_invoices):
    login(client, team["owner"])
    response = client.get("/billing/invoices?status=paid", headers=HTMX)
    fragment = response.get_data(as_text=True)
    assert fragment.startswith('<div id="invoices-table">')
    assert "<header" not in fragment and len(invoice_rows(fragment)) == 5
    assert "HX-Request" in response.headers["Vary"]


def test_invoice_csv_exports_the_filtered_list(client, team, login, many_invoices):
    tenant_id = team["owner"].membership.tenant_id
    login(client, team["developer"])
    response = client.get("/billing/invoices.csv?status=paid")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="invoices-{tenant_id}-paid.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(row["number"], row["status"], row["total"]) for row in rows] == [
        (number, "paid", "49.00") for _i, number, status in many_invoices if status == "paid"
    ]

    everything = list(csv.DictReader(io.StringIO(client.get("/billing/invoices.csv").get_data(as_text=True))))
    assert [row["number"] for row in everything] == [number for _i, number, _s in many_invoices]
    bad = client.get("/billing/invoices.csv?status=bogus")
    assert bad.status_code == 400
    assert (
        "There is no invoice status “bogus”. Use one of open, overdue, failed, paid, void, uncollectible."
        in html.unescape(bad.get_data(as_text=True))
    )


def test_invoice_detail_shows_seller_buyer_lines_totals_and_payment(
    client, app, tenant, team, login, many_invoices, monkeypatch
):
    monkeypatch.setitem(app.config, "BILLING_SELLER_NAME", "Pipelines Billing GmbH")
    login(client, team["viewer"])
    invoice_id, number, _status = many_invoices[-1]  # the first invoice, paid by bank transfer
    page = client.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True)
    assert f"<h1>Invoice {number}</h1>" in page
    assert shown(page, "invoice-status") == "paid"
    assert "Pipelines Billing GmbH" in shown(page, "seller")
    assert (
        shown(page, "buyer")
        == f"Billed to Billing Co owner-{tenant.tenant_id}@example.com Account ID {tenant.tenant_id}"
    )
    line = re.search(r'<tr data-testid="invoice-line">(.*?)</tr>', page, flags=re.S).group(1)
    cells = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
        for c in re.findall(r"<td[^>]*>(.*?)</td>", line, re.S)
    ]
    assert cells[0].startswith("Starter plan (monthly), ") and cells[1:] == ["1", "$49.00", "$49.00"]
    assert (
        shown(page, "subtotal"),
        shown(page, "credits"),
        shown(page, "total"),
        shown(page, "paid"),
        shown(page, "amount-due"),
    ) == ("$49.00", "$0.00", "$49.00", "$49.00", "$0.00")
    assert shown(page, "payment-reference") == f"bank-{number}"

    void_page = client.get(f"/billing/invoices/{many_invoices[0][0]}").get_data(as_text=True)
    assert shown(void_page, "invoice-status") == "void"
    assert "Issued by mistake" in shown(void_page, "void-reason")


def test_invoice_pdf_downloads_with_its_number_inside(client, app, tenant, team, login, monkeypatch):
    from pypdf import PdfReader

    monkeypatch.setitem(app.config, "BILLING_SELLER_NAME", "Pipelines Billing GmbH")
    login(client, team["developer"])
    invoice = newest_invoice(app, tenant)
    response = client.get(f"/billing/invoices/{invoice['id']}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{invoice["number"]}.pdf"'
    assert response.data.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert invoice["number"] in text and "Pipelines Billing GmbH" in text
    # The link on the detail page is a plain download, not an htmx navigation.
    detail = client.get(f"/billing/invoices/{invoice['id']}").get_data(as_text=True)
    assert f'href="/billing/invoices/{invoice["id"]}.pdf" download hx-boost="false"' in detail


def test_another_tenants_invoices_are_not_found_nor_listed(client, app, team, login, make_tenant):
    other = make_tenant(company_name="Other Co")
    theirs = newest_invoice(app, other)
    login(client, team["owner"])
    for url in (
        f"/billing/invoices/{theirs['id']}",
        f"/billing/invoices/{theirs['id']}.pdf",
        "/billing/invoices/inv_doesnotexist",
        "/billing/invoices/" + "x" * 500,
        "/billing/invoices/inv_%00x",
        "/billing/invoices/inv_%00x.pdf",
    ):
        assert client.get(url).status_code == 404, url
    assert theirs["number"] not in client.get("/billing/invoices").get_data(as_text=True)
    assert theirs["number"] not in client.get("/billing/invoices.csv").get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(client):
    for url in ("/billing", "/billing/invoices", "/billing/invoices.csv", "/billing/change/enterprise"):
        response = client.get(url)
        assert response.status_code == 302 and "/signin" in response.headers["Location"], url


# --- overview ----------------------------------------------------------------------------


def test_overview_shows_the_plan_its_status_and_the_next_invoice_date(client, app, tenant, team, login):
    login(client, team["viewer"])
    page = client.get("/overview").get_data(as_text=True)
    period_end = subscription_state(app, tenant)["period_end"]
    assert shown(page, "overview-plan") == "Starter"
    assert shown(page, "overview-subscription-status") == "active"
    assert shown(page, "overview-next-invoice") == f"Next invoice {day(period_end)}"


# --- plan choice at sign-up --------------------------------------------------------------


def sign_up_data(**overrides) -> dict:
    suffix = uuid.uuid4().hex[:8]
    data = {
        "company_name": "Plan Chooser",
        "tenant_id": f"chooser_{suffix}",
        "name": "Pat",
        "email": f"pat-{suffix}@chooser.example",
        "password": PASSWORD,
    }
    data.update(overrides)
    return data


def test_sign_up_offers_the_public_plans_with_prices_and_the_trial(client):
    page = client.get("/signup").get_data(as_text=True)
    choices = re.findall(
        r'<input( checked)? id="plan-\d" name="plan" type="radio" value="(\w+)"> ([^<]+)</label>', page
    )
    assert [(bool(checked), value, label.strip()) for checked, value, label in choices] == [
        (True, "starter", "Starter: $49.00 / month"),
        (False, "starter_yearly", "Starter (yearly): $490.00 / year"),
        (False, "professional", "Professional: $499.00 / month, 14-day free trial first"),
        (False, "professional_yearly", "Professional (yearly): $4,990.00 / year, 14-day free trial first"),
        (False, "enterprise", "Enterprise: $1,999.00 / month"),
        (False, "enterprise_yearly", "Enterprise (yearly): $19,990.00 / year"),
    ]


def test_sign_up_without_a_plan_choice_starts_starter_and_issues_its_first_invoice(client, app):
    data = sign_up_data()
    assert client.post("/signup", data=data).status_code == 303
    tenant = SimpleNamespace(tenant_id=data["tenant_id"])
    assert subscription_state(app, tenant)["plan"] == "starter"
    assert newest_invoice(app, tenant)["total"] == 4900


def test_sign_up_on_professional_starts_its_14_day_trial(client, app):
    data = sign_up_data(plan="professional")
    assert client.post("/signup", data=data).status_code == 303
    tenant = SimpleNamespace(tenant_id=data["tenant_id"])
    state = subscription_state(app, tenant)
    assert (state["plan"], state["status"]) == ("professional", "trialing")
    assert state["trial_end"] - state["period_start"] == timedelta(days=14)
    assert invoice_count(app, tenant) == 0
    overview = client.get("/overview").get_data(as_text=True)
    assert shown(overview, "overview-plan") == "Professional"
    assert shown(overview, "overview-subscription-status") == "trialing"


@pytest.mark.parametrize("plan", ["gold", "legacy", ""])
def test_sign_up_with_a_plan_not_offered_is_a_field_error_and_creates_nothing(client, app, plan):
    with app.app_context():
        db.session.add(
            Plan(
                key="legacy",
                name="Legacy",
                public=False,
                versions=[PlanVersion(version=1, price=100, quotas={}, rate_limits={}, features=[])],
            )
        )
        commit()
    data = sign_up_data(plan=plan)
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "plan") == "Choose one of the plans listed."
    assert f'value="{data["company_name"]}"' in page  # what was typed is kept
    with app.app_context():
        assert db.session.get(Tenant, data["tenant_id"]) is None
        assert db.session.scalar(select(func.count()).select_from(User).where(User.email == data["email"])) == 0
