"""The operator's view of RQ: failed jobs (after their retries) and requeueing them."""

from dataclasses import dataclass
from datetime import datetime

from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from portal.errors import NotFound
from portal.infra.queues import QUEUE_NAMES, get_queue, redis_connection

MAX_LISTED = 200


@dataclass
class FailedJob:
    id: str
    queue: str
    function: str
    args: tuple
    failed_at: datetime | None
    error: str


def failed_jobs() -> list[FailedJob]:
    found = []
    for name in QUEUE_NAMES:
        registry = FailedJobRegistry(queue=get_queue(name))
        ids = registry.get_job_ids()[:MAX_LISTED]
        for job in Job.fetch_many(ids, connection=redis_connection()):
            if job is None:
                continue
            error = (job.latest_result().exc_string if job.latest_result() else "") or ""
            found.append(
                FailedJob(
                    id=job.id,
                    queue=name,
                    function=job.func_name,
                    args=tuple(job.args or ()),
                    failed_at=job.ended_at,
                    error=error.strip().splitlines()[-1] if error.strip() else "",
                )
            )
    return sorted(found, key=lambda job: job.failed_at or datetime.min, reverse=True)


def requeue(job_id: str) -> None:
    for name in QUEUE_NAMES:
        registry = FailedJobRegistry(queue=get_queue(name))
        if job_id in registry.get_job_ids():
            try:
                registry.requeue(job_id)
            except (NoSuchJobError, InvalidJobOperation):
                break
            return
    raise NotFound("There is no such failed job (it may have been requeued already).")
