"""Webhook jobs: attempt one delivery; the periodic sweep that re-queues deliveries whose job
was lost. The rules are the domain's (portal.webhooks.delivery); each step commits on its own
so that no transaction stays open during the HTTP request."""

from datetime import timedelta

from flask import current_app

from portal.infra import queues
from portal.infra.transactions import commit
from portal.webhooks import delivery
from portal.webhooks.outbox import DELIVERY_JOB, QUEUE


def deliver(delivery_id: str, trigger: str = "automatic") -> str | None:
    """One attempt of one delivery; returns its state afterwards (None: not ours to attempt)."""
    prepared = delivery.claim(delivery_id)
    commit()  # the claim holds; no transaction stays open during the request
    if prepared is None:
        return None
    outcome = delivery.send(prepared)
    state, retry_at = delivery.record(prepared, outcome, trigger)
    commit()
    if state == "pending" and retry_at is not None and not current_app.config["JOBS_INLINE"]:
        # Inline (embedded) there is no scheduler: `flask webhooks retry-due` sends what is due.
        queues.get_queue(QUEUE).enqueue_at(retry_at, DELIVERY_JOB, delivery_id, job_timeout=60)
    return state


def sweep(grace_seconds: float | None = None, reschedule: bool = True) -> int:
    """Queue every delivery overdue by ``grace_seconds`` that nobody holds; returns how many."""
    every = current_app.config["WEBHOOK_SWEEP_SECONDS"]
    if reschedule:
        schedule_sweep(every)
    found = delivery.due(every if grace_seconds is None else grace_seconds)
    commit()
    for delivery_id in found:
        queues.enqueue(DELIVERY_JOB, (delivery_id,), queue=QUEUE, retries=0, timeout=60)
    return len(found)


def schedule_sweep(delay_seconds: float) -> None:
    # One pending sweep per deployment, whatever the number of workers: a fixed id.
    queues.get_queue().enqueue_in(
        timedelta(seconds=delay_seconds), sweep, job_id=queues.queue_name("webhooks-sweep"), job_timeout=300
    )
