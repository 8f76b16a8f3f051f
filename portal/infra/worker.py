"""The RQ worker used by ``flask --app wsgi worker``."""

from rq.worker import SimpleWorker

from portal.extensions import db


class AppWorker(SimpleWorker):
    """Runs jobs in the worker process (which holds the app context), no fork.

    Forking would hand the child the parent's pooled database connections; running in
    process and dropping the session after each job keeps every job's unit of work apart.
    """

    def perform_job(self, job, queue):
        try:
            return super().perform_job(job, queue)
        finally:
            db.session.remove()
