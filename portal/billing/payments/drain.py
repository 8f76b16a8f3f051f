"""The drain of stored Stripe webhook events (the ``jobs.stripe`` jobs call it).

The webhook stores each event and wakes the drain (``jobs.stripe.drain_stripe_events``, deferred ``once``: one
queued drain however many events arrive). The drain processes what is waiting, oldest first,
in batches: each event in a savepoint of the batch's transaction, with its own error
bookkeeping. A failed event's changes are undone without touching the others'; it is retried
later with backoff (events.RETRY_SECONDS), by the drain woken at that time, and shows in the
operator console meanwhile."""

import logging
import time
from datetime import timedelta

from portal.billing.payments.events import (
    DRAIN_JOB,
    DRAIN_SECONDS,
    drain_once,
    handle,
    pending,
    preload,
    record_failure,
    record_success,
    wake,
)
from portal.extensions import db
from portal.infra.queues import get_queue, release
from portal.infra.transactions import commit, rollback, savepoint
from portal.models import StripeEvent, utcnow

log = logging.getLogger(__name__)

# Events taken (and locked) together and committed together: a transaction of its own per
# event (its pick, BEGIN, COMMIT and the event's UPDATE) cost as much as the event's own work.
# A batch also commits once it has run this long, so the rows its events changed (an invoice
# a customer is paying, say) stay locked for a moment at most.
BATCH_SIZE = 50
BATCH_SECONDS = 1.0


def drain() -> int:
    """Process every stored event that is waiting, oldest first; returns how many were tried."""
    release(drain_once()[0])  # first: events stored from now on wake another drain
    deadline = time.monotonic() + DRAIN_SECONDS
    tried = 0
    while True:
        if time.monotonic() > deadline:
            wake()
            commit()
            break
        batch = pending(utcnow(), BATCH_SIZE)
        if not batch:
            rollback()  # ends the read-only transaction; the connection stays with the session
            break
        tried += _process_batch(batch, min(deadline, time.monotonic() + BATCH_SECONDS))
    return tried


def process_one(event_id: str) -> None:
    """Apply one stored event if it is still waiting. Jobs enqueued per event before the drain
    existed still name this function; a replay, a redelivered job is a no-op once done."""
    event = db.session.get(StripeEvent, event_id, with_for_update=True)
    if event is None or event.status in ("processed", "ignored"):
        rollback()
        return
    _process_batch([event], time.monotonic())


def _process_batch(events: list[StripeEvent], until: float) -> int:
    """Each event's handler in a SAVEPOINT of one transaction, committed once for the batch: a
    failing event undoes only its own changes and is recorded for its retry, the others are
    kept. Returns how many were tried; those left when ``until`` passes are let go by the
    commit, for the next batch, so a run of slow events (calls to Stripe) never holds its
    locks for long."""
    _held = preload(events)  # a query per event otherwise; the session keeps them while this does
    outcomes = []
    for event in events:
        if outcomes and time.monotonic() > until:
            break
        try:
            with savepoint():
                outcome = handle(event)
        except Exception as error:  # noqa: BLE001 - any failure is recorded on the event and retried
            outcome = error
        outcomes.append((event, outcome, utcnow()))
    # The events' own rows are written outside the savepoints, so a rollback never touches
    # them, and all at the commit: one executemany for the batch rather than a statement each.
    failed = []
    for event, outcome, at in outcomes:
        if isinstance(outcome, Exception):
            record_failure(event, outcome, at)
            failed.append((event.id, event.type, event.last_error, event.next_attempt_at))
        else:
            record_success(event, outcome, at)
    commit()
    for event_id, event_type, message, retry_at in failed:
        log.warning("Stripe event %s (%s) failed: %s", event_id, event_type, message)
        if retry_at is not None:
            _wake_at(retry_at)
    return len(outcomes)


def _wake_at(when) -> None:
    """A drain at ``when`` for a failed event's retry (the worker runs RQ's scheduler). Inline,
    nothing would ever run it: the next webhook's drain picks the event up once it is due."""
    queue = get_queue()
    if not queue.is_async:
        return
    # One scheduled drain per second at most, however many events failed together.
    queue.enqueue_in(
        max(when - utcnow(), timedelta(0)) + timedelta(seconds=1),
        DRAIN_JOB,
        job_id=f"{queue.name}-stripe-events-retry-{int(when.timestamp())}",
        job_timeout=DRAIN_SECONDS * 2,
    )
