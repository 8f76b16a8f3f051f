"""Console: jobs that failed after their retries, and requeueing one."""

from portal.access import operator_required
from portal.admin.blueprint import bp
from portal.infra.failed_jobs import failed_jobs as list_failed
from portal.infra.failed_jobs import requeue
from portal.web import act, render


@bp.get("/jobs/failed")
@operator_required
def failed_jobs():
    """Jobs that failed after their retries, per queue, with the error, to requeue."""
    return render("admin/failed_jobs.html", jobs=list_failed())


@bp.post("/jobs/<job_id>/requeue")
@operator_required
def requeue_job(job_id: str):
    def requeue_it() -> str:
        requeue(job_id)
        return f"Job {job_id} requeued."

    return act(requeue_it, "admin.failed_jobs")
