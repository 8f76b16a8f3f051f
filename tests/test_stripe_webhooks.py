"""POST /webhooks/stripe with signed synthetic events in Stripe's format, for what localstripe
does not emit: signatures, duplicates, order, refunds, Stripe invoices and checkout."""

import json
import random
import time
import uuid

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from tests.stripe_support import WEBHOOK_SECRET, event_payload, localstripe, signature  # noqa: F401


@pytest.fixture
def stripe_app(app, localstripe):  # noqa: F811
    saved = {key: app.config.get(key) for key in localstripe.config()}
    app.config.update(localstripe.config())
    app.extensions.pop("portal_stripe", None)
    yield app
    app.config.update(saved)
    app.extensions.pop("portal_stripe", None)


@pytest.fixture
def invoice(stripe_app, make_tenant):
    """An open invoice (Starter's first month, issued at sign-up)."""
    from portal.models import Invoice

    tenant = make_tenant()
    with stripe_app.app_context():
        found = db.session.execute(select(Invoice).where(Invoice.tenant_id == tenant.tenant_id)).scalar_one()
        assert found.status == "open" and found.total > 0
        return found


def post(client, payload: bytes, header: str | None = None):
    return client.post(
        "/webhooks/stripe",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": header if header is not None else signature(payload)},
    )


def intent(invoice, status="succeeded", pi_id=None, attempt="1", error=None):
    return {
        "id": pi_id or f"pi_{uuid.uuid4().hex[:20]}",
        "object": "payment_intent",
        "amount": invoice.total,
        "amount_received": invoice.total if status == "succeeded" else 0,
        "currency": invoice.currency.lower(),
        "status": status,
        "last_payment_error": error,
        "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id, "attempt": attempt},
    }


def reload(app, invoice_id):
    from portal.models import Invoice

    with app.app_context():
        db.session.expire_all()
        return db.session.get(Invoice, invoice_id)


def stored(app, **filters):
    from portal.models import StripeEvent

    with app.app_context():
        return db.session.execute(select(StripeEvent).filter_by(**filters)).scalars().all()


def test_bad_signature_is_refused_and_nothing_is_stored(client, stripe_app, invoice):
    payload = event_payload("payment_intent.succeeded", intent(invoice))
    response = post(client, payload, signature(payload, secret="whsec_someone_else"))
    assert response.status_code == 400
    assert stored(stripe_app) == [] and reload(stripe_app, invoice.id).status == "open"


def test_stale_timestamp_is_refused(client, stripe_app, invoice):
    payload = event_payload("payment_intent.succeeded", intent(invoice))
    response = post(client, payload, signature(payload, timestamp=int(time.time()) - 301))
    assert response.status_code == 400 and "timestamp" in response.get_json()["error"].lower()
    assert stored(stripe_app) == []


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"id": "evt_1", "type": "x"}', b"[1, 2]"])
def test_malformed_body_is_refused_even_when_signed(client, stripe_app, body):
    assert post(client, body).status_code == 400
    assert stored(stripe_app) == []


def test_missing_signature_header_is_refused(client, stripe_app, invoice):
    payload = event_payload("payment_intent.succeeded", intent(invoice))
    assert post(client, payload, header="").status_code == 400


def test_one_good_signature_among_several_is_accepted(client, stripe_app, invoice):
    payload = event_payload("payment_intent.succeeded", intent(invoice))
    now = int(time.time())
    good = signature(payload, timestamp=now).split(",")[1]
    header = f"t={now},v1={'0' * 64},{good}"  # Stripe sends one per active secret while rolling them
    assert post(client, payload, header).status_code == 200
    assert reload(stripe_app, invoice.id).status == "paid"


def test_five_duplicate_deliveries_have_one_effect(client, stripe_app, invoice):
    from portal.models import AuditEvent

    payload = event_payload("payment_intent.succeeded", intent(invoice))
    answers = [post(client, payload).get_json() for _ in range(5)]
    assert [a["duplicate"] for a in answers] == [False, True, True, True, True]
    paid = reload(stripe_app, invoice.id)
    assert (paid.status, paid.amount_paid) == ("paid", invoice.total)
    assert len(stored(stripe_app)) == 1
    with stripe_app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id == invoice.id)
            )
            == 1
        )


def test_shuffled_failure_and_success_end_paid_and_count_the_failure_once(client, stripe_app, invoice):
    from portal.models import Subscription

    pi_failed, pi_paid = f"pi_{uuid.uuid4().hex[:20]}", f"pi_{uuid.uuid4().hex[:20]}"
    declined = {"message": "Your card was declined.", "code": "card_declined"}
    events = [
        event_payload(
            "payment_intent.payment_failed", intent(invoice, "requires_payment_method", pi_failed, "1", declined)
        ),
        event_payload(
            "payment_intent.payment_failed", intent(invoice, "requires_payment_method", pi_failed, "1", declined)
        ),
        event_payload("payment_intent.succeeded", intent(invoice, "succeeded", pi_paid, "2")),
        # The emulator does not know these synthetic ids, so the charge carries what a re-read of
        # its PaymentIntent would give (our invoice id) for when it overtakes the payment.
        event_payload(
            "charge.refunded",
            {
                "id": "ch_x",
                "object": "charge",
                "payment_intent": pi_paid,
                "amount": invoice.total,
                "amount_refunded": 500,
                "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id},
            },
        ),
    ]
    random.Random(7).shuffle(events)
    for payload in events:
        assert post(client, payload).status_code == 200
    final = reload(stripe_app, invoice.id)
    assert final.status == "paid"  # a failure arriving after the success never reopens it
    assert final.amount_refunded == 500
    with stripe_app.app_context():
        subscription = db.session.execute(
            select(Subscription).where(Subscription.tenant_id == invoice.tenant_id)
        ).scalar_one()
        assert subscription.status == "active"


def test_events_of_one_invoice_drained_together_have_the_effect_they_have_one_by_one(stripe_app, invoice):
    """One drain batch (one transaction, a savepoint each): each event sees what the ones
    before it did to the invoice, its attempts and its subscription."""
    from jobs.stripe import drain_stripe_events
    from portal.billing.payments.events import store
    from portal.models import AuditEvent, PaymentAttempt, StripeEvent, Subscription

    pi_failed, pi_paid = f"pi_{uuid.uuid4().hex[:20]}", f"pi_{uuid.uuid4().hex[:20]}"
    declined = {"message": "Your card was declined.", "code": "card_declined"}
    failed = event_payload(
        "payment_intent.payment_failed", intent(invoice, "requires_payment_method", pi_failed, "1", declined)
    )
    paid = event_payload("payment_intent.succeeded", intent(invoice, "succeeded", pi_paid, "2"))
    stripe_invoice_paid = event_payload(
        "invoice.paid",
        {
            "id": f"in_{uuid.uuid4().hex[:20]}",
            "object": "invoice",
            "amount_paid": invoice.total,
            "payment_intent": None,
            "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id},
        },
    )
    refunded = event_payload(
        "charge.refunded",
        {
            "id": "ch_x",
            "object": "charge",
            "payment_intent": pi_paid,
            "amount": invoice.total,
            "amount_refunded": 500,
            "metadata": {"invoice_id": invoice.id, "tenant_id": invoice.tenant_id},
        },
    )
    # Stripe sends invoice.payment_succeeded along with invoice.paid: the same payment again.
    stripe_invoice_succeeded = event_payload(
        "invoice.payment_succeeded", json.loads(stripe_invoice_paid)["data"]["object"]
    )
    payloads = [
        failed,
        failed.replace(b'"evt_', b'"evt_x'),
        paid,
        stripe_invoice_paid,
        refunded,
        stripe_invoice_succeeded,
    ]
    with stripe_app.app_context():
        for payload in payloads:
            assert store(json.loads(payload))
        db.session.commit()
        assert drain_stripe_events() == len(payloads)
        results = [db.session.get(StripeEvent, json.loads(payload)["id"]).result for payload in payloads]

    assert results[1].endswith("(already counted)") and results[3].endswith("already paid")
    assert results[5].endswith("already paid")
    final = reload(stripe_app, invoice.id)
    assert (final.status, final.payment_failures, final.amount_refunded) == ("paid", 1, 500)
    with stripe_app.app_context():
        subscription = db.session.execute(
            select(Subscription).where(Subscription.tenant_id == invoice.tenant_id)
        ).scalar_one()
        assert subscription.status == "active"  # past_due after the failure, recovered by the payment
        attempts = db.session.execute(
            select(PaymentAttempt.payment_intent_id, PaymentAttempt.status)
            .where(PaymentAttempt.invoice_id == invoice.id)
            .order_by(PaymentAttempt.number)
        ).all()
        stripe_invoice_id = json.loads(stripe_invoice_paid)["data"]["object"]["id"]
        assert [tuple(a) for a in attempts] == [
            (pi_failed, "failed"),
            (pi_paid, "succeeded"),
            (stripe_invoice_id, "succeeded"),
        ]
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "invoice.paid", AuditEvent.target_id == invoice.id)
            )
            == 1
        )


def test_refund_shows_on_the_invoice_page(client, stripe_app, invoice, make_user, login):
    pi_id = f"pi_{uuid.uuid4().hex[:20]}"
    post(client, event_payload("payment_intent.succeeded", intent(invoice, pi_id=pi_id)))
    refund = {
        "id": "ch_r",
        "object": "charge",
        "payment_intent": pi_id,
        "amount": invoice.total,
        "amount_refunded": 1234,
        "metadata": {},
    }
    for _ in range(2):
        post(client, event_payload("charge.refunded", refund))
    assert reload(stripe_app, invoice.id).amount_refunded == 1234
    from portal.models import Tenant

    with stripe_app.app_context():
        tenant = db.session.get(Tenant, invoice.tenant_id)
    login(client, make_user(tenant, role="owner"))
    page = client.get(f"/billing/invoices/{invoice.id}").get_data(as_text=True)
    assert 'data-testid="refunded">$12.34' in page


def test_stripe_invoice_paid_and_checkout_completed_pay_our_invoice(client, stripe_app, make_tenant):
    from portal.models import Invoice

    tenants = [make_tenant(), make_tenant()]
    with stripe_app.app_context():
        ours = [
            db.session.execute(select(Invoice).where(Invoice.tenant_id == t.tenant_id)).scalar_one() for t in tenants
        ]
    metadata = [{"invoice_id": i.id, "tenant_id": i.tenant_id} for i in ours]
    post(
        client,
        event_payload(
            "invoice.paid",
            {
                "id": "in_1",
                "object": "invoice",
                "amount_paid": ours[0].total,
                "metadata": metadata[0],
                "payment_intent": None,
            },
        ),
    )
    post(
        client,
        event_payload(
            "checkout.session.completed",
            {
                "id": "cs_1",
                "object": "checkout.session",
                "mode": "payment",
                "payment_status": "paid",
                "amount_total": ours[1].total,
                "metadata": metadata[1],
                "payment_intent": None,
            },
        ),
    )
    assert [reload(stripe_app, i.id).status for i in ours] == ["paid", "paid"]


def test_metadata_naming_another_tenant_changes_nothing(client, stripe_app, invoice):
    forged = intent(invoice)
    forged["metadata"]["tenant_id"] = "someone_else"
    assert post(client, event_payload("payment_intent.succeeded", forged)).status_code == 200
    assert reload(stripe_app, invoice.id).status == "open"
    assert stored(stripe_app)[0].status == "ignored"


def test_unknown_event_type_is_stored_and_ignored(client, stripe_app):
    response = post(client, event_payload("radar.early_fraud_warning.created", {"id": "issfr_1"}))
    assert response.status_code == 200
    [event] = stored(stripe_app)
    assert (event.type, event.status) == ("radar.early_fraud_warning.created", "ignored")


def test_webhooks_are_refused_without_a_webhook_secret(client, app, invoice):
    payload = event_payload("payment_intent.succeeded", {"id": "pi_1", "metadata": {}})
    app.config["STRIPE_WEBHOOK_SECRET"] = ""
    assert post(client, payload).status_code == 400


def test_operator_sees_events_and_replays_one(client, stripe_app, invoice, make_operator, login):
    payload = event_payload("payment_intent.succeeded", intent(invoice))
    event_id = json.loads(payload)["id"]
    post(client, payload)
    login(client, make_operator())
    page = client.get("/admin/stripe-events").get_data(as_text=True)
    assert event_id in page and "processed" in page
    response = client.post(f"/admin/stripe-events/{event_id}/replay")
    assert response.status_code == 303
    assert stored(stripe_app, id=event_id)[0].status == "processed"
    assert client.get("/admin/jobs/failed").status_code == 200


def test_without_stripe_the_portal_says_card_payment_is_unavailable(client, app, make_tenant, make_user, login):
    app.config.update(STRIPE_SECRET_KEY="", STRIPE_PUBLISHABLE_KEY="")
    tenant = make_tenant()
    login(client, make_user(tenant, role="owner"))
    assert 'data-testid="card-unavailable"' in client.get("/billing").get_data(as_text=True)
    assert 'data-testid="card-unavailable"' in client.get("/billing/payment-method").get_data(as_text=True)
    assert 'data-testid="test-mode"' not in client.get("/billing").get_data(as_text=True)
    assert client.post("/billing/payment-method/setup").status_code == 409


def test_another_tenants_invoice_cannot_be_paid_or_polled(client, stripe_app, invoice, make_tenant, make_user, login):
    login(client, make_user(make_tenant(), role="owner"))
    assert client.post(f"/billing/invoices/{invoice.id}/pay").status_code == 404
    assert client.get(f"/billing/invoices/{invoice.id}/payment").status_code == 404


def test_viewer_cannot_add_a_card(client, stripe_app, make_tenant, make_user, login):
    tenant = make_tenant()
    login(client, make_user(tenant, role="viewer"))
    assert client.post("/billing/payment-method/setup").status_code == 403
    page = client.get("/billing/payment-method").get_data(as_text=True)
    assert 'data-testid="add-card"' not in page and 'data-testid="test-mode"' in page
