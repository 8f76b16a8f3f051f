"""The RQ worker used by ``flask --app wsgi worker``."""

from rq.worker import SimpleWorker

from portal.extensions import db
from portal.tasks import ONCE_META


class AppWorker(SimpleWorker):
    """Runs jobs in the worker process (which holds the app context), no fork.

    Forking would hand the child the parent's pooled database connections; running in
    process and dropping the session after each job keeps every job's unit of work apart.
    A job deferred with ``once=True`` (portal.tasks.defer) drops its "already queued" marker
    as it starts.
    """

    def perform_job(self, job, queue):
        marker = job.meta.get(ONCE_META)
        if marker:
            # From now on this run may have missed what commits next: let that enqueue another.
            self.connection.delete(marker)
        try:
            return super().perform_job(job, queue)
        finally:
            db.session.remove()
