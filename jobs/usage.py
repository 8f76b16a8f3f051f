"""Usage jobs: quota notices after ingestion, the periodic flush of API request counters, and
the daily upkeep of usage events' monthly partitions (created ahead, retired after retention)."""

from datetime import timedelta

from flask import current_app

from portal.infra.queues import get_queue, release
from portal.infra.transactions import commit
from portal.models import utcnow
from portal.usage import partitions, quotas
from portal.usage.api_request_events import flush

FLUSH_JOB_ID = "usage-api-requests-flush"
FLUSH_EVERY_SECONDS = 60
PARTITIONS_JOB_ID = "usage-partitions-upkeep"
PARTITIONS_EVERY_SECONDS = 6 * 3600


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


def partition_upkeep() -> tuple[list[str], list[partitions.Retired], list[str]]:
    """Create the partitions due ahead, then retire what retention allows, each in its own
    transaction; returns (created, retired, held back)."""
    config = current_app.config
    now = utcnow()
    created = partitions.ensure(now, ahead=max(config["USAGE_PARTITIONS_AHEAD"], 0))
    commit()
    retired, held = partitions.retire(now, config["USAGE_RETENTION_MONTHS"], drop=config["USAGE_RETENTION_DROP"])
    commit()
    return created, retired, held


def partition_tick() -> None:
    """The scheduler's upkeep, every few hours (a month's partition exists weeks before it starts)."""
    schedule_partition_tick(PARTITIONS_EVERY_SECONDS)
    partition_upkeep()


def schedule_partition_tick(delay_seconds: int) -> None:
    get_queue().enqueue_in(timedelta(seconds=delay_seconds), partition_tick, job_id=PARTITIONS_JOB_ID, job_timeout=3600)
