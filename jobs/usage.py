"""Usage jobs: quota notices after ingestion, and the periodic flush of API request counters."""

from datetime import timedelta

from portal.infra.queues import get_queue, release
from portal.infra.transactions import commit
from portal.usage import quotas
from portal.usage.api_request_events import flush

FLUSH_JOB_ID = "usage-api-requests-flush"
FLUSH_EVERY_SECONDS = 60


def check_quotas(tenant_id: str) -> None:
    """Send the quota notices the tenant's usage has newly crossed (each once per period)."""
    release(quotas.check_key(tenant_id))  # first: events committed from now on enqueue another check
    quotas.check_quotas(tenant_id)
    commit()


def flush_api_requests() -> None:
    """Counted API requests into usage events, then the next flush in a minute."""
    schedule_flush(FLUSH_EVERY_SECONDS)
    flush()


def schedule_flush(delay_seconds: int) -> None:
    get_queue().enqueue_in(timedelta(seconds=delay_seconds), flush_api_requests, job_id=FLUSH_JOB_ID, job_timeout=600)
