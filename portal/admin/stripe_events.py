"""Console: inbound Stripe webhook events and replaying one."""

from flask import request
from sqlalchemy import select

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.billing.payments.events import replay
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.models import STRIPE_EVENT_STATUSES, StripeEvent
from portal.web import act, render


@bp.get("/stripe-events")
@operator_required
def stripe_events():
    """Inbound Stripe webhooks, newest first, with their processing status and last error."""
    status = request.args.get("status", "").strip()
    query = select(StripeEvent).order_by(StripeEvent.received_at.desc())
    if status in STRIPE_EVENT_STATUSES:
        query = query.where(StripeEvent.status == status)
    else:
        status = ""
    events = paginate(query, request.args.get("page", 1, type=int), 50)
    return render("admin/stripe_events.html", events=events, status_filter=status, statuses=STRIPE_EVENT_STATUSES)


@bp.post("/stripe-events/<event_id>/replay")
@operator_required
def replay_stripe_event(event_id: str):
    """Process a stored event again (its handler is idempotent)."""
    event = db.get_or_404(StripeEvent, event_id)

    def replay_it() -> str:
        replay(current_actor(), event)
        return f"Event {event.id} ({event.type}) queued for processing again."

    return act(replay_it, "admin.stripe_events")
