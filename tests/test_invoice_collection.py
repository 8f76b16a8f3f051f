"""Collecting invoices outside Stripe and writing them off: marking an invoice paid (API and
console), voiding it or marking it uncollectible ends the dunning it caused, as a card payment
does; the overdue and failed states of an open invoice, in the API and on the pages."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Invoice, Subscription, Tenant, utcnow
from tests.api_support import assert_envelope, bearer, fetch, issue_key, operator_token, send_json, with_key
from tests.conftest import unique

DECLINED = "Your card was declined."


def starter_tenant(app, days_ago: float = 0) -> str:
    """A Starter tenant that subscribed ``days_ago`` days ago; its first month is invoiced (open) then."""
    from portal.access import SYSTEM
    from portal.infra.transactions import commit
    from portal.tenants.services import create_tenant

    with app.test_request_context():
        tenant_id = unique("t")
        create_tenant(
            SYSTEM,
            tenant_id,
            f"Company {tenant_id}",
            f"billing@{tenant_id}.example",
            "starter",
            subscribed_at=utcnow() - timedelta(days=days_ago),
        )
        commit()
        return tenant_id


def open_invoices(app, tenant_id: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.execute(
                select(Invoice.id)
                .where(Invoice.tenant_id == tenant_id, Invoice.status == "open")
                .order_by(Invoice.number)
            ).scalars()
        )


def payment_fails(app, invoice_id: str, times: int = 1) -> None:
    """The card on file is declined ``times`` times: the first try and then the retries (days 3,
    5, 7), as dunning counts them; after the last one the subscription is unpaid and the tenant
    suspended for payment_failed."""
    from portal.billing.payments import dunning
    from portal.infra.transactions import commit

    with app.test_request_context():
        invoice = db.session.get(Invoice, invoice_id)
        for _ in range(times):
            dunning.payment_failed(invoice, DECLINED, utcnow())
        commit()


def dunned_to_suspension(app, invoice_id: str) -> None:
    from portal.billing.payments import dunning

    with app.app_context():
        retries = len(dunning.retry_days())
    payment_fails(app, invoice_id, times=retries + 1)


def second_invoice(app, tenant_id: str) -> str:
    """An upgrade to Professional, invoiced at once: the tenant's second open invoice."""
    from portal.access import SYSTEM
    from portal.billing import subscriptions
    from portal.infra.transactions import commit

    with app.test_request_context():
        subscription = db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one()
        _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional")
        commit()
        return invoice.id


def states(app, tenant_id: str) -> tuple[str, str, str | None]:
    """(subscription status, tenant status, suspension reason) as stored."""
    with app.app_context():
        db.session.expire_all()
        tenant = db.session.get(Tenant, tenant_id)
        subscription = db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one()
        return subscription.status, tenant.status, tenant.suspension_reason


def api(tenant_id: str, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant_id}{suffix}"


def entitlement(client, headers, tenant_id: str) -> str | None:
    """The reason code the entitlement check gives for running a pipeline, None when allowed."""
    response = client.get(f"/api/v1/entitlements/{tenant_id}/pipeline_runs", headers=headers)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["isAllowed"] is (data.get("meta") is None), data
    return data["meta"]["reason"]["code"] if data.get("meta") else None


@pytest.fixture
def operator(app):
    return bearer(operator_token(app))


@pytest.fixture
def operator_client(app, make_operator, login):
    client = app.test_client()
    login(client, make_operator())
    return client


# --- marking paid ends dunning -----------------------------------------------------------------


def test_an_invoice_paid_by_bank_transfer_brings_a_suspended_tenant_back(client, app, operator):
    """Seed 002: mark-paid "activates the associated subscription"; the suspension for the failed
    payment goes with it, and the entitlement check says yes again."""
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    dunned_to_suspension(app, invoice_id)
    assert states(app, tenant_id) == ("unpaid", "suspended", "payment_failed")
    assert entitlement(client, operator, tenant_id) == "TENANT_SUSPENDED"

    response = client.post(
        api(tenant_id, f"/invoices/{invoice_id}/mark-paid"), headers=operator, json={"reference": "WIRE-2026-0042"}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "paid"

    assert client.get(api(tenant_id, "/subscription"), headers=operator).get_json()["status"] == "active"
    tenant = client.get(api(tenant_id), headers=operator).get_json()
    assert (tenant["status"], tenant["suspension_reason"]) == ("active", None)
    assert entitlement(client, operator, tenant_id) is None
    # The tenant's own key works again outside billing, too.
    key = with_key(issue_key(app, fetch(app, Tenant, tenant_id), scopes=["admin:*"])[1])
    assert client.get(api(tenant_id, "/credentials"), headers=key).status_code == 200
    # No retry is left scheduled on the paid invoice.
    assert fetch(app, Invoice, invoice_id).next_payment_attempt_at is None


def test_mark_paid_after_the_operator_reactivated_the_tenant_still_ends_unpaid(client, app, operator):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    dunned_to_suspension(app, invoice_id)
    response = client.post(api(tenant_id, "/activate"), headers=operator, json={"activation_note": "Paid by wire"})
    assert response.status_code == 200, response.get_json()
    assert states(app, tenant_id) == ("unpaid", "active", None)
    assert entitlement(client, operator, tenant_id) == "SUBSCRIPTION_UNPAID"

    response = client.post(
        api(tenant_id, f"/invoices/{invoice_id}/mark-paid"), headers=operator, json={"reference": "WIRE-7"}
    )
    assert response.status_code == 200, response.get_json()
    assert states(app, tenant_id) == ("active", "active", None)
    assert entitlement(client, operator, tenant_id) is None


def test_dunning_lasts_while_another_invoice_is_still_failing(client, app, operator):
    tenant_id = starter_tenant(app)
    [first] = open_invoices(app, tenant_id)
    second = second_invoice(app, tenant_id)
    payment_fails(app, second)
    dunned_to_suspension(app, first)

    client.post(api(tenant_id, f"/invoices/{first}/mark-paid"), headers=operator, json={"reference": "WIRE-1"})
    assert states(app, tenant_id) == ("unpaid", "suspended", "payment_failed")
    client.post(api(tenant_id, f"/invoices/{second}/mark-paid"), headers=operator, json={"reference": "WIRE-2"})
    assert states(app, tenant_id) == ("active", "active", None)


def test_the_operators_own_suspension_stays_when_an_invoice_is_paid(client, app, operator):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    payment_fails(app, invoice_id)
    response = client.post(api(tenant_id, "/suspend"), headers=operator, json={"reason": "terms_violation"})
    assert response.status_code == 200, response.get_json()

    client.post(api(tenant_id, f"/invoices/{invoice_id}/mark-paid"), headers=operator, json={"reference": "WIRE-3"})
    assert states(app, tenant_id) == ("active", "suspended", "terms_violation")


def test_operator_marks_paid_in_the_console_and_the_tenant_is_active_again(operator_client, app):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    dunned_to_suspension(app, invoice_id)

    response = operator_client.post(f"/admin/invoices/{invoice_id}/mark-paid", data={"reference": "WIRE-2026-7"})
    assert response.status_code == 303
    assert states(app, tenant_id) == ("active", "active", None)
    detail = operator_client.get(f"/admin/tenants/{tenant_id}").get_data(as_text=True)
    assert "badge-suspended" not in detail
    with app.app_context():
        actions = set(db.session.execute(select(AuditEvent.action).where(AuditEvent.tenant_id == tenant_id)).scalars())
    assert {"invoice.marked_paid", "subscription.recovered", "tenant.activated"} <= actions


def test_voiding_the_failing_invoice_ends_its_dunning(operator_client, app):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    dunned_to_suspension(app, invoice_id)
    response = operator_client.post(f"/admin/invoices/{invoice_id}/void", data={"reason": "Billed in error"})
    assert response.status_code == 303
    assert states(app, tenant_id) == ("active", "active", None)


def test_an_invoice_credit_pays_in_full_ends_dunning_like_any_payment(app):
    """A subscription left past due with nothing failing any more (a failing invoice voided
    before voiding ended dunning): the next renewal, paid in full by credit, is a payment like
    any other and brings it back."""
    from portal.access import SYSTEM
    from portal.billing import credits
    from portal.billing.subscriptions import renew
    from portal.infra.transactions import commit

    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    with app.test_request_context():
        db.session.get(Invoice, invoice_id).status = "void"
        subscription = db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one()
        subscription.status = "past_due"
        credits.grant(SYSTEM, db.session.get(Tenant, tenant_id), 10_000, reason="Goodwill")
        commit()
        [renewal] = renew(subscription, subscription.current_period_end)
        commit()
        assert (renewal.status, renewal.credits_applied) == ("paid", 4900)
    assert states(app, tenant_id)[0] == "active"


# --- uncollectible ---------------------------------------------------------------------------


def test_operator_writes_an_invoice_off_over_the_api_and_its_dunning_ends(client, app, operator):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    payment_fails(app, invoice_id)
    assert fetch(app, Invoice, invoice_id).next_payment_attempt_at is not None
    assert states(app, tenant_id)[0] == "past_due"
    url = api(tenant_id, f"/invoices/{invoice_id}/mark-uncollectible")

    for body, field in (({}, "reason"), ({"reason": "   "}, "reason"), ({"reason": "x" * 501}, "reason")):
        errors = assert_envelope(send_json(client, "post", url, body, operator), 400, "VALIDATION_ERROR")["errors"]
        assert errors[0]["field"] == field
    key = with_key(issue_key(app, fetch(app, Tenant, tenant_id), scopes=["admin:*"])[1])
    assert_envelope(client.post(url, headers=key, json={"reason": "Forgive me"}), 403)
    assert fetch(app, Invoice, invoice_id).status == "open"

    response = client.post(url, headers=operator, json={"reason": "Customer went out of business"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["status"], body["amount_due"], body["payment_failed"], body["overdue"]) == (
        "uncollectible",
        0,
        False,
        False,
    )
    written_off = fetch(app, Invoice, invoice_id)
    assert written_off.uncollectible_reason == "Customer went out of business"
    assert written_off.next_payment_attempt_at is None  # no more retries
    assert states(app, tenant_id)[0] == "active"
    listed = client.get(api(tenant_id, "/invoices?status=uncollectible"), headers=operator).get_json()["invoices"]
    assert [invoice["invoice_id"] for invoice in listed] == [invoice_id]
    assert "already" not in assert_envelope(client.post(url, headers=operator, json={"reason": "again"}), 409)["detail"]

    # Money that arrives after all still marks it paid.
    paid = client.post(api(tenant_id, f"/invoices/{invoice_id}/mark-paid"), headers=operator, json={"reference": "W-9"})
    assert paid.status_code == 200 and paid.get_json()["status"] == "paid"
    assert_envelope(client.post(url, headers=operator, json={"reason": "too late"}), 409, "CONFLICT")


def test_operator_marks_an_invoice_uncollectible_in_the_console(operator_client, app):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    dunned_to_suspension(app, invoice_id)
    url = f"/admin/invoices/{invoice_id}/mark-uncollectible"

    response = operator_client.post(url, data={"reason": " "})
    assert response.status_code == 422
    assert "Say why the invoice cannot be collected." in response.get_data(as_text=True)
    assert fetch(app, Invoice, invoice_id).status == "open"

    response = operator_client.post(url, data={"reason": "Written off after 90 days"})
    assert response.status_code == 303
    page = operator_client.get(f"/admin/invoices/{invoice_id}").get_data(as_text=True)
    assert 'data-status="uncollectible"' in page
    assert '<span data-testid="uncollectible-reason">Written off after 90 days</span>' in page
    assert "Mark uncollectible…" not in page and "Mark paid…" in page and "Void…" in page
    assert states(app, tenant_id) == ("active", "active", None)
    with app.app_context():
        event = db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == "invoice.marked_uncollectible")
            .where(AuditEvent.target_id == invoice_id)
        ).scalar_one()
    assert event.details["reason"] == "Written off after 90 days"


def test_the_customer_reads_that_an_uncollectible_invoice_is_no_longer_charged(client, app, operator, make_user, login):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    client.post(
        api(tenant_id, f"/invoices/{invoice_id}/mark-uncollectible"), headers=operator, json={"reason": "Dispute"}
    )
    browser = app.test_client()
    login(browser, make_user(fetch(app, Tenant, tenant_id), role="admin"))
    page = browser.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True)
    assert "it is no longer charged" in page
    assert 'data-testid="pay-now"' not in page


# --- overdue and failed ----------------------------------------------------------------------


def test_the_invoice_list_filters_overdue_and_failed_invoices(client, app, operator):
    tenant_id = starter_tenant(app, days_ago=20)  # its first invoice was due 6 days ago
    [overdue] = open_invoices(app, tenant_id)
    recent = second_invoice(app, tenant_id)  # due in 14 days

    def listed(status: str) -> list[tuple[str, bool, bool]]:
        response = client.get(api(tenant_id, f"/invoices?status={status}"), headers=operator)
        assert response.status_code == 200, response.get_json()
        return [(i["invoice_id"], i["overdue"], i["payment_failed"]) for i in response.get_json()["invoices"]]

    assert listed("overdue") == [(overdue, True, False)]
    assert listed("failed") == []
    assert listed("open") == [(recent, False, False), (overdue, True, False)]

    payment_fails(app, recent)
    assert listed("failed") == [(recent, False, True)]
    assert listed("overdue") == [(overdue, True, False)]
    status = client.get(api(tenant_id, f"/invoices/{recent}/payment-status"), headers=operator).get_json()
    assert (status["payment_failed"], status["overdue"]) == (True, False)
    assert status["next_payment_attempt_at"] is not None

    # The vocabulary is the one the API documents; a draft never exists, so it is not offered.
    for bad in ("draft", "bogus", "OVERDUE"):
        detail = assert_envelope(
            client.get(api(tenant_id, f"/invoices?status={bad}"), headers=operator), 400, "VALIDATION_ERROR"
        )["detail"]
        for allowed in ("open", "overdue", "failed", "paid", "void", "uncollectible"):
            assert allowed in detail
        assert "draft" not in detail


def test_the_invoices_page_shows_overdue_and_failed_payments_and_filters_by_them(client, app, make_user, login):
    tenant_id = starter_tenant(app, days_ago=20)
    [overdue] = open_invoices(app, tenant_id)
    recent = second_invoice(app, tenant_id)
    payment_fails(app, recent)
    login(client, make_user(fetch(app, Tenant, tenant_id), role="viewer"))

    def rows(page: str) -> dict[str, str]:
        found = re.findall(r'<tr data-testid="invoice-row" data-number="([^"]+)">(.*?)</tr>', page, flags=re.S)
        return {number: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cells)).strip() for number, cells in found}

    with app.app_context():
        numbers = {i: db.session.get(Invoice, i).number for i in (overdue, recent)}
    page = client.get("/billing/invoices").get_data(as_text=True)
    shown = rows(page)
    assert shown[numbers[overdue]].endswith("open overdue")
    assert shown[numbers[recent]].endswith("open payment failed")
    assert '<option value="overdue"' in page and '<option value="failed"' in page and "Payment failed</option>" in page
    assert '<option value="draft"' not in page
    assert list(rows(client.get("/billing/invoices?status=overdue").get_data(as_text=True))) == [numbers[overdue]]
    assert list(rows(client.get("/billing/invoices?status=failed").get_data(as_text=True))) == [numbers[recent]]
    detail = client.get(f"/billing/invoices/{overdue}").get_data(as_text=True)
    assert "Overdue: it was due by" in detail
    csv_text = client.get("/billing/invoices.csv?status=overdue").get_data(as_text=True)
    assert numbers[overdue] in csv_text and numbers[recent] not in csv_text


def test_an_overdue_invoice_shows_a_banner_with_the_way_to_pay_on_every_page(client, app, make_user, login):
    from portal.billing.display import day

    tenant_id = starter_tenant(app, days_ago=20)  # its first invoice was due 6 days ago
    [invoice_id] = open_invoices(app, tenant_id)
    tenant = fetch(app, Tenant, tenant_id)
    login(client, make_user(tenant, role="admin"))
    for path in ("/overview", "/team", "/billing/invoices"):
        page = client.get(path).get_data(as_text=True)
        banner = re.search(r'data-testid="past-due-banner">(.*?)</div>', page, re.S).group(1)
        assert "Payment overdue." in banner and "$49.00" in banner, path
        assert f'href="/billing/invoices/{invoice_id}#invoice-payment"' in banner
        assert "Use another card" in banner
    with app.test_request_context():
        due = day(fetch(app, Invoice, invoice_id).due_at)
    # The invoice list says when it was due, and offers to pay it from the row.
    listing = client.get("/billing/invoices").get_data(as_text=True)
    assert re.search(rf'data-testid="invoice-due">{re.escape(due)}<', listing)
    assert 'data-testid="invoice-pay"' in listing and "Pay $49.00" in listing

    viewer = app.test_client()
    login(viewer, make_user(tenant, role="viewer"))
    page = viewer.get("/overview").get_data(as_text=True)
    assert "Payment overdue." in page and "An owner or admin of this account can pay it." in page
    assert 'data-testid="past-due-pay"' not in page and 'data-testid="invoice-pay"' not in page


def test_no_banner_while_the_invoice_is_not_yet_due(client, app, make_user, login):
    tenant_id = starter_tenant(app)  # invoiced today, due in 14 days
    login(client, make_user(fetch(app, Tenant, tenant_id), role="admin"))
    assert 'data-testid="past-due-banner"' not in client.get("/overview").get_data(as_text=True)


def test_a_failed_payment_shows_the_banner_before_the_due_date(client, app, make_user, login):
    tenant_id = starter_tenant(app)
    [invoice_id] = open_invoices(app, tenant_id)
    payment_fails(app, invoice_id)
    login(client, make_user(fetch(app, Tenant, tenant_id), role="admin"))
    page = client.get("/overview").get_data(as_text=True)
    assert "Payment overdue." in page  # a failed payment needs paying, due date or not
