"""Cards and payments end to end against localstripe: real SDK calls, and real signed webhooks
that localstripe POSTs to a live portal, processed by the jobs into invoices, dunning and
suspension."""

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.serving import WSGIRequestHandler, make_server

from portal.extensions import db
from tests.conftest import database, make_app, sign_in
from tests.stripe_support import event_payload, localstripe, signature  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("localstripe")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def stripe_portal(tmp_path_factory, localstripe):  # noqa: F811
    """The portal served on a free port, on a database of its own, with localstripe's webhooks
    pointed at it."""
    with database("stripe", tmp_path_factory) as url:
        app = make_app(url, sqlite_begin="BEGIN IMMEDIATE", **localstripe.config())
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        base = f"http://127.0.0.1:{server.server_port}"
        app.config["PUBLIC_BASE_URL"] = base
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        localstripe.register_webhook(f"{base}/webhooks/stripe", name=f"portal-{server.server_port}")
        try:
            yield app
        finally:
            server.shutdown()
            thread.join(timeout=10)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _new_tenant(app):
    """A tenant on Starter, whose first month is invoiced (open) at sign-up, with an owner and an admin."""
    import uuid

    from portal.access import SYSTEM
    from portal.auth.services import create_user
    from portal.infra.transactions import commit
    from portal.models import Membership
    from portal.tenants.services import create_tenant

    with app.test_request_context():
        tenant_id = f"t_{uuid.uuid4().hex[:8]}"
        owner = create_user(f"owner-{tenant_id}@example.com", "stripe owner passphrase", "Owner")
        admin = create_user(f"admin-{tenant_id}@example.com", "stripe owner passphrase", "Admin")
        create_tenant(SYSTEM, tenant_id, f"Company {tenant_id}", owner.email)
        db.session.add(Membership(tenant_id=tenant_id, user_id=owner.id, role="owner"))
        db.session.add(Membership(tenant_id=tenant_id, user_id=admin.id, role="admin"))
        commit()
        return tenant_id, owner.email, admin.email


def _save_card(app, localstripe, tenant_id, number):  # noqa: F811
    from portal.access import SYSTEM
    from portal.billing.payments import services
    from portal.infra.transactions import commit
    from portal.models import Tenant

    with app.test_request_context():
        tenant = db.session.get(Tenant, tenant_id)
        intent = services.start_card_setup(tenant)
        commit()
        assert localstripe.confirm_setup_intent(intent["client_secret"], number)["status"] == "succeeded"
        tenant = db.session.get(Tenant, tenant_id)
        services.save_card(SYSTEM, tenant, services.setup_intent_for(tenant, intent["id"]))
        commit()
        return tenant.card_brand, tenant.card_last4


def _open_invoice(app, tenant_id):
    from portal.models import Invoice

    with app.app_context():
        return (
            db.session.execute(select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.status == "open"))
            .scalars()
            .one()
            .id
        )


def _pay_now(app, invoice_id):
    from portal.billing.payments import services
    from portal.infra.transactions import commit
    from portal.models import Invoice

    with app.test_request_context():
        attempt = services.pay_now(db.session.get(Invoice, invoice_id))
        commit()
        return attempt.status


def _state(app, tenant_id, invoice_id):
    from portal.models import Invoice, Subscription, Tenant

    with app.app_context():
        db.session.expire_all()
        invoice = db.session.get(Invoice, invoice_id)
        tenant = db.session.get(Tenant, tenant_id)
        subscription = db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one()
        return {
            "invoice": invoice.status,
            "failures": invoice.payment_failures,
            "paid": invoice.amount_paid,
            "total": invoice.total,
            "subscription": subscription.status,
            "tenant": tenant.status,
            "reason": tenant.suspension_reason,
            "next": invoice.next_payment_attempt_at,
            "first_failure": invoice.payment_failed_at,
        }


def _wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for a webhook to land")


def _events(app, event_type, tenant_id=None):
    """(status, result) of the stored events of a type; of one tenant's (its metadata's) if given."""
    from portal.models import StripeEvent

    statement = select(StripeEvent).where(StripeEvent.type == event_type)
    if tenant_id is not None:
        statement = statement.where(StripeEvent.tenant_id == tenant_id)
    with app.app_context():
        db.session.expire_all()
        return [(e.status, e.result) for e in db.session.execute(statement).scalars()]


def _handled(app, event_id):
    """The stored event once a drain is done with it (None while it waits): the drain that the
    delivery woke, or another webhook's drain that took it first (it skips events another holds)."""
    from portal.models import StripeEvent

    with app.app_context():
        db.session.expire_all()
        event = db.session.get(StripeEvent, event_id)
        return event if event is not None and event.status != "received" else None


def _emails(app, address):
    from portal.models import EmailMessage

    with app.app_context():
        return [
            m.subject
            for m in db.session.execute(
                select(EmailMessage).where(EmailMessage.to == address.lower()).order_by(EmailMessage.created_at)
            ).scalars()
        ]


def _billing_run(app, at):
    from portal.billing.runs import request_run
    from portal.infra.transactions import commit

    with app.test_request_context():
        request_run("test", at)
        commit()


def _upgrade(app, tenant_id, plan: str = "professional") -> str:
    """An upgrade, invoiced at once: the tenant's next open invoice."""
    from portal.access import SYSTEM
    from portal.billing import subscriptions
    from portal.infra.transactions import commit
    from portal.models import Subscription

    with app.test_request_context():
        subscription = db.session.execute(select(Subscription).where(Subscription.tenant_id == tenant_id)).scalar_one()
        _, invoice = subscriptions.change_plan(SYSTEM, subscription, plan)
        commit()
        return invoice.id


def _attempts(app, invoice_id):
    from portal.models import PaymentAttempt

    with app.app_context():
        db.session.expire_all()
        return [
            (a.number, a.off_session, a.status)
            for a in db.session.execute(
                select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice_id).order_by(PaymentAttempt.number)
            ).scalars()
        ]


def _save_card_in_the_portal(app, localstripe, email, number):  # noqa: F811
    """What the owner does on the payment method page: start a SetupIntent, have Stripe.js
    confirm it, and post it back; returns the SetupIntent's id and the page the portal lands on."""
    client = app.test_client()
    sign_in(client, email, "stripe owner passphrase")
    started = client.post("/billing/payment-method/setup")
    assert started.status_code in (302, 303), started.get_data(as_text=True)[:300]
    setup_intent = started.headers["Location"].split("setup_intent=")[1]
    form = client.get(started.headers["Location"]).get_data(as_text=True)
    client_secret = form.split('data-client-secret="')[1].split('"')[0]
    assert localstripe.confirm_setup_intent(client_secret, number)["status"] == "succeeded"
    saved = client.post("/billing/payment-method/confirm", data={"setup_intent": setup_intent}, follow_redirects=True)
    assert saved.status_code == 200
    return setup_intent, saved.get_data(as_text=True)


def test_saving_a_card_pays_the_open_invoices_oldest_first_once_each(stripe_portal, localstripe):  # noqa: F811
    """The payment method page promises that open invoices are charged to the card: saving it
    charges each one off-session, oldest first, and each turns paid when Stripe's signed
    webhook has been processed (never on the browser's word)."""
    from portal.models import PaymentAttempt

    tenant_id, owner, _ = _new_tenant(stripe_portal)
    first = _open_invoice(stripe_portal, tenant_id)
    second = _upgrade(stripe_portal, tenant_id)

    setup_intent, page = _save_card_in_the_portal(stripe_portal, localstripe, owner, "4242424242424242")
    assert "Card saved: visa ending 4242" in page
    assert "Open invoices and renewals are charged to it automatically." in page
    for invoice_id in (first, second):
        state = _wait_for(lambda i=invoice_id: (s := _state(stripe_portal, tenant_id, i))["invoice"] == "paid" and s)
        assert state["paid"] == state["total"] > 0
    assert any(
        status == "processed" and "paid" in result
        for status, result in _events(stripe_portal, "payment_intent.succeeded", tenant_id)
    )
    # Stripe's setup_intent.succeeded webhook saves the same card again: nothing more is charged.
    payload = event_payload("setup_intent.succeeded", {"id": setup_intent, "object": "setup_intent"})
    response = stripe_portal.test_client().post(
        "/webhooks/stripe", data=payload, headers={"Stripe-Signature": signature(payload)}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    # The answer can come before the event is processed: a drain woken by one of localstripe's
    # webhooks (its payment_intent.succeeded and balance.available, a second after each charge)
    # may hold it, and the drain this delivery woke then skips it.
    assert _wait_for(lambda: _handled(stripe_portal, json.loads(payload)["id"])).status == "processed"
    assert _attempts(stripe_portal, first) == _attempts(stripe_portal, second) == [(1, True, "succeeded")]
    with stripe_portal.app_context():
        charged = db.session.execute(
            select(PaymentAttempt.invoice_id)
            .where(PaymentAttempt.tenant_id == tenant_id)
            .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
        ).scalars()
        assert list(charged) == [first, second]  # the older invoice first


def test_declined_card_goes_past_due_then_suspended_then_reactivated_by_a_new_card(stripe_portal, localstripe):  # noqa: F811
    tenant_id, owner, admin = _new_tenant(stripe_portal)
    invoice_id = _open_invoice(stripe_portal, tenant_id)
    # It attaches, then declines charges: the charge saving it makes is the first failure.
    _save_card(stripe_portal, localstripe, tenant_id, "4000000000000341")

    assert _attempts(stripe_portal, invoice_id) == [(1, True, "failed")]
    state = _state(stripe_portal, tenant_id, invoice_id)
    assert (state["invoice"], state["subscription"], state["failures"]) == ("open", "past_due", 1)
    assert state["next"] == state["first_failure"] + timedelta(days=3)
    for address in (owner, admin):  # owner and admins are told, with a pay link
        assert any("failed" in subject for subject in _emails(stripe_portal, address))

    # localstripe's own payment_failed webhook arrives too; once processed, the failure is still
    # counted once.
    def failure_webhook_processed():
        events = _events(stripe_portal, "payment_intent.payment_failed", tenant_id)
        return events and all(status != "received" for status, _ in events)

    _wait_for(failure_webhook_processed)
    assert _state(stripe_portal, tenant_id, invoice_id)["failures"] == 1

    # The retries on days 3, 5 and 7 (the billing run processes due retries) all decline.
    first = state["first_failure"]
    for days, failures in ((3, 2), (5, 3)):
        _billing_run(stripe_portal, first + timedelta(days=days, minutes=1))
        state = _state(stripe_portal, tenant_id, invoice_id)
        assert (state["failures"], state["subscription"], state["tenant"]) == (failures, "past_due", "active")
    _billing_run(stripe_portal, first + timedelta(days=7, minutes=1))
    state = _state(stripe_portal, tenant_id, invoice_id)
    assert (state["subscription"], state["tenant"], state["reason"]) == ("unpaid", "suspended", "payment_failed")
    assert any("suspended" in subject.lower() for subject in _emails(stripe_portal, owner))

    # A working card brings everything back: saving it pays the invoice, and the payment ends
    # the dunning.
    _save_card(stripe_portal, localstripe, tenant_id, "4242424242424242")
    state = _wait_for(lambda: (s := _state(stripe_portal, tenant_id, invoice_id))["invoice"] == "paid" and s)
    assert (state["subscription"], state["tenant"], state["reason"]) == ("active", "active", None)
    assert _attempts(stripe_portal, invoice_id)[-1] == (5, True, "succeeded")


def test_billing_run_charges_the_card_on_file_off_session(stripe_portal, localstripe):  # noqa: F811
    from portal.models import Invoice, PaymentAttempt, Subscription

    tenant_id, _, _ = _new_tenant(stripe_portal)
    first_invoice = _open_invoice(stripe_portal, tenant_id)
    with stripe_portal.app_context():
        db.session.get(Invoice, first_invoice).status = "void"  # only the renewal's invoice matters here
        db.session.commit()
        period_end = db.session.execute(
            select(Subscription.current_period_end).where(Subscription.tenant_id == tenant_id)
        ).scalar_one()
    _save_card(stripe_portal, localstripe, tenant_id, "4242424242424242")

    _billing_run(stripe_portal, period_end + timedelta(minutes=1))
    invoice_id = _open_invoice(stripe_portal, tenant_id)
    _wait_for(lambda: _state(stripe_portal, tenant_id, invoice_id)["invoice"] == "paid")
    with stripe_portal.app_context():
        attempts = (
            db.session.execute(select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice_id)).scalars().all()
        )
        assert [(a.number, a.off_session, a.status) for a in attempts] == [(1, True, "succeeded")]


def test_an_off_session_charge_the_bank_wants_authenticated_is_dunned_and_paid_on_session(stripe_portal, localstripe):  # noqa: F811
    """Nobody is there to authenticate a billing run's charge: it counts as failed, with a
    message saying why, the owner and admins are emailed the pay link, and the PaymentIntent
    is cancelled; paying from the invoice page, on-session, settles it."""
    from jobs.stripe import charge_invoice
    from portal.billing.payments import gateway, services
    from portal.billing.payments.services import AUTHENTICATION_NEEDED
    from portal.models import PaymentAttempt, Tenant

    tenant_id, owner, admin = _new_tenant(stripe_portal)
    invoice_id = _open_invoice(stripe_portal, tenant_id)
    with stripe_portal.app_context():
        tenant = db.session.get(Tenant, tenant_id)
        services.ensure_customer(tenant)
        # The card on file was re-issued with strong authentication: every charge now asks for it.
        card = gateway._call(
            gateway._client().v1.payment_methods.create,
            params={
                "type": "card",
                "card": {"number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            },
        )
        gateway.attach_payment_method(card["id"], tenant.stripe_customer_id)
        tenant.stripe_payment_method_id = card["id"]
        tenant.card_brand, tenant.card_last4 = "visa", "3184"
        db.session.commit()

    with stripe_portal.test_request_context():
        charge_invoice(invoice_id, 1)  # the job a billing run (or a due retry) enqueues
    state = _state(stripe_portal, tenant_id, invoice_id)
    assert (state["invoice"], state["subscription"], state["failures"]) == ("open", "past_due", 1)
    with stripe_portal.app_context():
        attempt = db.session.execute(select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice_id)).scalar_one()
        assert (attempt.off_session, attempt.status, attempt.failure_message) == (True, "failed", AUTHENTICATION_NEEDED)
        assert gateway.retrieve_payment_intent(attempt.payment_intent_id)["status"] == "canceled"
    for address in (owner, admin):
        assert any("failed" in subject for subject in _emails(stripe_portal, address))
    # Whatever webhooks the cancelled intent sends, the failure counts once and stays a failure.
    time.sleep(1)
    assert _state(stripe_portal, tenant_id, invoice_id)["failures"] == 1

    # The invoice page says why, and offers to pay now, on-session, where 3-D Secure can run.
    client = stripe_portal.test_client()
    sign_in(client, owner, "stripe owner passphrase")
    page = client.get(f"/billing/invoices/{invoice_id}").get_data(as_text=True)
    assert "Your bank asked you to confirm this payment" in page
    assert 'data-testid="pay-now"' in page
    # On-session the bank asks, and the customer confirms (Stripe.js does it in the browser:
    # tests/browser/test_stripe_flow.py); the payment brings the subscription back.
    assert _pay_now(stripe_portal, invoice_id) == "requires_action"
    with stripe_portal.app_context():
        attempt = db.session.execute(
            select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice_id, PaymentAttempt.number == 2)
        ).scalar_one()
        intent = gateway.retrieve_payment_intent(attempt.payment_intent_id)
    localstripe.authenticate_payment_intent(intent)
    state = _wait_for(lambda: (s := _state(stripe_portal, tenant_id, invoice_id))["invoice"] == "paid" and s)
    assert (state["subscription"], state["failures"]) == ("active", 1)


def test_payment_status_lists_every_card_attempt_and_why_it_failed(stripe_portal, localstripe):  # noqa: F811
    """GET .../payment-status: each attempt with its time, amount, outcome and the bank's reason;
    the failed filter finds the invoice while its last attempt is a failure."""
    from tests.api_support import issue_key, with_key

    tenant_id, _, _ = _new_tenant(stripe_portal)
    invoice_id = _open_invoice(stripe_portal, tenant_id)
    with stripe_portal.app_context():
        from portal.models import Tenant

        key = with_key(issue_key(stripe_portal, db.session.get(Tenant, tenant_id), scopes=["admin:*"])[1])
    client = stripe_portal.test_client()
    status_url = f"/api/v1/tenants/{tenant_id}/invoices/{invoice_id}/payment-status"
    before = time.time()

    _save_card(stripe_portal, localstripe, tenant_id, "4000000000000341")  # declines every charge
    assert _pay_now(stripe_portal, invoice_id) == "failed"  # the customer tries again by hand
    status = client.get(status_url, headers=key).get_json()
    assert (status["status"], status["payment_failed"], status["amount_due"]) == ("open", True, 4900)
    assert [
        (a["number"], a["amount"], a["currency"], a["outcome"], a["automatic"], a["failure_reason"])
        for a in status["attempts"]
    ] == [
        (1, 4900, "USD", "failed", True, "Your card was declined."),
        (2, 4900, "USD", "failed", False, "Your card was declined."),
    ]
    assert all(before - 5 <= _epoch(a["attempted_at"]) <= time.time() + 5 for a in status["attempts"])
    listed = client.get(f"/api/v1/tenants/{tenant_id}/invoices?status=failed", headers=key).get_json()
    assert [invoice["invoice_id"] for invoice in listed["invoices"]] == [invoice_id]

    _save_card(stripe_portal, localstripe, tenant_id, "4242424242424242")
    _wait_for(lambda: _state(stripe_portal, tenant_id, invoice_id)["invoice"] == "paid")
    status = client.get(status_url, headers=key).get_json()
    assert (status["status"], status["payment_failed"], status["next_payment_attempt_at"]) == ("paid", False, None)
    assert [(a["outcome"], a["failure_reason"]) for a in status["attempts"]] == [
        ("failed", "Your card was declined."),
        ("failed", "Your card was declined."),
        ("succeeded", None),
    ]
    listed = client.get(f"/api/v1/tenants/{tenant_id}/invoices?status=failed", headers=key).get_json()
    assert listed["invoices"] == []


def _epoch(instant: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()
