"""A subscription whose current period starts in the future (as runs "as of" a future instant
left them before such runs became previews, issue 16) can still change plan: the preview counts
the time paid ahead, and confirming it works and issues exactly what it showed.
"""

import re
from datetime import timedelta
from fractions import Fraction

from sqlalchemy import select

from portal.billing import subscriptions
from portal.billing.display import day
from portal.billing.money import format_money
from portal.billing.periods import add_interval
from portal.extensions import db
from portal.models import Invoice, Tenant, utcnow
from tests.billing_engine_support import half_up, run_billing
from tests.test_billing_pages import flashes, preview_instant, quote_of, shown

FIVE_WEEKS = timedelta(weeks=5)


def test_a_subscription_moved_into_the_future_by_an_old_run_can_still_change_plan(
    app, client, make_tenant, make_user, login, monkeypatch
):
    now = utcnow()
    monkeypatch.setattr(subscriptions, "utcnow", lambda: now - timedelta(days=10))
    tenant = make_tenant(company_name="Moved Ahead Co")  # Starter from ten days ago
    monkeypatch.undo()
    with app.test_request_context():
        # What a run as of five weeks ahead did before previews: the next period, starting in
        # about three weeks, invoiced and made current.
        moved = run_billing(now + FIVE_WEEKS)
        assert moved.invoices_created == 1
        subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        anchor, current_start, period_end = (
            subscription.billing_anchor,
            subscription.current_period_start,
            subscription.current_period_end,
        )
    assert current_start > now

    login(client, make_user(tenant, role="owner"))
    page = client.get("/billing/change/enterprise").get_data(as_text=True)
    at = preview_instant(page)
    # Paid for: the rest of the month under way, and the whole next one.
    real_end = add_interval(anchor, "month", 1)
    paid_ahead = Fraction(int((real_end - at).total_seconds()), int((real_end - anchor).total_seconds())) + 1
    credit, charge = half_up(4900 * paid_ahead), half_up(199900 * paid_ahead)
    assert shown(page, "preview-credit") == format_money(-credit, "USD")
    assert shown(page, "preview-charge") == format_money(charge, "USD")
    assert shown(page, "preview-total") == format_money(charge - credit, "USD")
    assert f"For the time already paid for ({day(at)} – {day(period_end)})" in shown(page, "change-summary")

    response = client.post("/billing/change/enterprise", data={"quote": quote_of(page)})
    assert response.status_code == 303 and response.headers["Location"] == "/billing"
    billing = client.get("/billing").get_data(as_text=True)
    [message] = flashes(billing)  # not "Prices or your subscription changed since that preview"
    assert re.fullmatch(
        rf"Upgraded to Enterprise\. Invoice INV-\d{{4}}-\d{{6}} for {re.escape(format_money(charge - credit, 'USD'))} issued\.",
        message,
    )
    assert shown(billing, "current-plan") == "Enterprise"
    with app.app_context():
        upgraded = subscriptions.subscription_of(db.session.get(Tenant, tenant.tenant_id))
        proration = db.session.execute(
            select(Invoice).where(Invoice.tenant_id == tenant.tenant_id, Invoice.kind == "proration")
        ).scalar_one()
        assert upgraded.plan_version.key == "enterprise"
        assert (upgraded.current_period_start, upgraded.current_period_end) == (current_start, period_end)
        assert (proration.total, proration.issued_at) == (charge - credit, at)
