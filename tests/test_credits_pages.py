"""Credits in the browser pages: the operator grants and deducts on the tenant's console page
(with a confirmation step and clear errors); every member sees the balance and ledger on the
Billing page, only their own tenant's."""

import html
import re

import pytest
from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import credits
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import AuditEvent, CreditEntry
from tests.conftest import field_error, form_error


def shown(page: str, testid: str) -> str:
    match = re.search(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', page, flags=re.S)
    assert match, f"nothing with data-testid={testid!r} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(2))).split())


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="flash flash-\w+" role="status">(.*?)</li>', page)]


def entries_of(app, tenant) -> list[tuple[str, int]]:
    with app.app_context():
        return [
            (e.kind, e.amount)
            for e in db.session.execute(
                select(CreditEntry).where(CreditEntry.tenant_id == tenant.tenant_id).order_by(CreditEntry.created_at)
            ).scalars()
        ]


def give(app, tenant, amount, **kwargs):
    with app.test_request_context():
        credits.grant(SYSTEM, tenant, amount, **kwargs)
        commit()


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Credited Co")


# --- operator console ----------------------------------------------------------------------


def test_operator_grants_credit_after_confirming_and_sees_it_in_the_ledger(app, operator_client, tenant):
    detail = f"/admin/tenants/{tenant.tenant_id}"
    page = operator_client.get(detail).get_data(as_text=True)
    assert shown(page, "credit-balance") == "$0.00"
    assert "No credit yet" in page

    form = {
        "grant-amount": "25.50",
        "grant-currency": "USD",
        "grant-expires_at": "2099-12-31T23:59",
        "grant-reason": "Outage on May 3",
    }
    review = operator_client.post(f"{detail}/credits/grant", data=form)
    assert review.status_code == 200
    page = review.get_data(as_text=True)
    assert shown(page, "credit-confirm-summary") == (
        f"Grant $25.50 of credit to Credited Co ({tenant.tenant_id}), expiring Dec 31, 2099, 23:59 UTC."
    )
    assert entries_of(app, tenant) == []  # nothing happens before the confirmation

    confirmed = operator_client.post(f"{detail}/credits/grant", data={**form, "grant-confirmed": "yes"})
    assert confirmed.status_code == 303
    page = operator_client.get(detail).get_data(as_text=True)
    assert flashes(page) == ["$25.50 of credit granted to Credited Co."]
    assert shown(page, "credit-balance") == "$25.50"
    assert "Outage on May 3" in shown(page, "credit-ledger")
    assert entries_of(app, tenant) == [("grant", 2550)]
    with app.app_context():
        event = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "credit.granted", AuditEvent.tenant_id == tenant.tenant_id)
        ).scalar_one()
        assert event.actor_label.startswith("op_")


def test_operator_deducts_credit_after_confirming(app, operator_client, tenant):
    give(app, tenant, 5000)
    detail = f"/admin/tenants/{tenant.tenant_id}"
    form = {"deduct-amount": "12", "deduct-currency": "USD", "deduct-reason": "Duplicate grant"}
    page = operator_client.post(f"{detail}/credits/deduct", data=form).get_data(as_text=True)
    assert "Deduct $12.00 of credit from Credited Co" in shown(page, "credit-confirm-summary")
    response = operator_client.post(f"{detail}/credits/deduct", data={**form, "deduct-confirmed": "yes"})
    assert response.status_code == 303
    page = operator_client.get(detail).get_data(as_text=True)
    assert shown(page, "credit-balance") == "$38.00"
    assert shown(page, "credit-used") == "$12.00"
    assert entries_of(app, tenant) == [("grant", 5000), ("deduction", -1200)]


@pytest.mark.parametrize(
    "amount, message",
    [
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("1.001", "two decimal places"),
        ("abc", "Not a valid decimal"),
        ("", "Enter an amount"),
    ],
)
def test_a_bad_amount_is_shown_beside_the_field_and_changes_nothing(app, operator_client, tenant, amount, message):
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/credits/grant",
        data={"grant-amount": amount, "grant-currency": "USD", "grant-reason": "x", "grant-confirmed": "yes"},
    )
    assert response.status_code == 422
    assert message in field_error(response.get_data(as_text=True), "grant-amount")
    assert entries_of(app, tenant) == []


def test_a_grant_expiring_in_the_past_or_without_a_reason_is_refused(app, operator_client, tenant):
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/credits/grant",
        data={
            "grant-amount": "5",
            "grant-currency": "USD",
            "grant-expires_at": "2001-01-01T00:00",
            "grant-reason": "",
            "grant-confirmed": "yes",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert field_error(page, "grant-expires_at") == "Choose a moment in the future."
    assert field_error(page, "grant-reason") == "Say why (it is kept in the ledger)."
    assert entries_of(app, tenant) == []


def test_deducting_more_than_the_balance_says_what_the_balance_is_and_changes_nothing(app, operator_client, tenant):
    give(app, tenant, 1000)
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/credits/deduct",
        data={"deduct-amount": "10.01", "deduct-currency": "USD", "deduct-reason": "Oops", "deduct-confirmed": "yes"},
    )
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "deduct-amount") == (
        "Cannot deduct $10.01: the credit balance is only $10.00."
    )
    assert entries_of(app, tenant) == [("grant", 1000)]


def test_a_bad_currency_is_refused(app, operator_client, tenant):
    response = operator_client.post(
        f"/admin/tenants/{tenant.tenant_id}/credits/grant",
        data={"grant-amount": "5", "grant-currency": "1$%", "grant-reason": "x", "grant-confirmed": "yes"},
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "three-letter" in field_error(page, "grant-currency") or "three-letter" in form_error(page)
    assert entries_of(app, tenant) == []


def test_tenant_members_cannot_reach_the_operator_credit_actions(app, client, tenant, make_user, login):
    owner = make_user(tenant=tenant, role="owner")
    login(client, owner)
    response = client.post(
        f"/admin/tenants/{tenant.tenant_id}/credits/grant",
        data={"grant-amount": "5", "grant-currency": "USD", "grant-reason": "free money", "grant-confirmed": "yes"},
    )
    assert response.status_code == 404
    assert entries_of(app, tenant) == []


def test_the_console_ledger_paginates(app, operator_client, tenant):
    for amount in range(1, 23):
        give(app, tenant, amount)
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}").get_data(as_text=True)
    assert page.count('data-testid="credit-entry"') == 20
    assert shown(page, "credit-page-info") == "Page 1 of 2 · 22 entries"
    page = operator_client.get(f"/admin/tenants/{tenant.tenant_id}?credit_page=2").get_data(as_text=True)
    assert page.count('data-testid="credit-entry"') == 2


# --- portal billing page -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "viewer"])
def test_every_member_sees_the_credit_balance_and_ledger_on_the_billing_page(
    app, client, tenant, make_user, login, role
):
    give(app, tenant, 2000, reason="Welcome credit")
    login(client, make_user(tenant=tenant, role=role))
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "credit-balance") == "$20.00"
    assert shown(page, "credit-granted") == "$20.00"
    assert "Welcome credit" in shown(page, "credit-ledger")


def test_the_billing_page_has_an_empty_state_without_credit(client, tenant, make_user, login):
    login(client, make_user(tenant=tenant, role="viewer"))
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "credit-balance") == "$0.00"
    assert "No credit yet" in shown(page, "no-credit")


def test_the_credits_page_paginates_the_whole_ledger(app, client, tenant, make_user, login):
    for amount in range(1, 26):
        give(app, tenant, amount)
    login(client, make_user(tenant=tenant, role="developer"))
    page = client.get("/billing").get_data(as_text=True)
    assert page.count('data-testid="credit-entry"') == 5
    assert 'href="/billing/credits"' in page
    page = client.get("/billing/credits").get_data(as_text=True)
    assert page.count('data-testid="credit-entry"') == 20
    assert shown(page, "credit-balance") == "$3.25"
    page = client.get("/billing/credits?page=2").get_data(as_text=True)
    assert page.count('data-testid="credit-entry"') == 5
    assert "There is no page 9" in client.get("/billing/credits?page=9").get_data(as_text=True)


def test_a_member_sees_only_their_own_tenants_credit(app, client, tenant, make_tenant, make_user, login):
    other = make_tenant(company_name="Other Co")
    give(app, other, 77_700, reason="Other tenant's secret deal")
    login(client, make_user(tenant=tenant, role="owner"))
    for path in ("/billing", "/billing/credits"):
        page = client.get(path).get_data(as_text=True)
        assert shown(page, "credit-balance") == "$0.00"
        assert "secret deal" not in page


def test_credit_applied_to_an_invoice_links_to_that_invoice(app, client, tenant, make_user, login):
    from datetime import timedelta

    from portal.billing.runs import create_run, execute
    from portal.billing.subscriptions import subscription_of

    give(app, tenant, 100_000)
    with app.test_request_context():
        end = subscription_of(tenant).current_period_end
        run = create_run("test", end + timedelta(hours=1))
        commit()
        execute(run)
    login(client, make_user(tenant=tenant, role="viewer"))
    page = client.get("/billing").get_data(as_text=True)
    assert shown(page, "credit-balance") == "$951.00"
    match = re.search(r'<a href="(/billing/invoices/[^"]+)">Applied to invoice (INV-\d{4}-\d{6})</a>', page)
    assert match, page
    invoice_page = client.get(match.group(1)).get_data(as_text=True)
    assert shown(invoice_page, "credits") == "-$49.00"
    assert shown(invoice_page, "total") == "$0.00"
    assert shown(invoice_page, "invoice-status") == "paid"
