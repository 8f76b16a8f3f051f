"""Console: start a billing run by hand, the recent runs and one run's progress, and resume a
stalled one."""

from datetime import datetime

from flask import abort, current_app, flash
from sqlalchemy import select

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.admin.forms import BillingRunForm
from portal.billing import runs as billing_runs
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import BillingRun, Subscription
from portal.web import act, form_errors_status, page_view, redirect_to, render, wants_fragment

# htmx stops polling an element whose response has this status (the finished run's block).
HTMX_STOP_POLLING = 286


@page_view(bp, "/billing", "billing", operator_required)
def _billing_page(form: BillingRunForm | None = None, status: int = 200):
    """Start a billing run by hand and see the recent ones."""
    return render(
        "admin/billing.html",
        status=status,
        form=form or BillingRunForm(formdata=None),
        runs=billing_runs.recent_runs(),
        status_of=billing_runs.shown_status,
    )


@bp.post("/billing/runs")
@operator_required
def run_billing():
    """Queue a billing run as of now or of the given instant (UTC), then show its progress."""
    form = BillingRunForm()
    if not form.validate_on_submit():
        return _billing_page(form=form, status=form_errors_status())
    try:
        run = billing_runs.request_run(triggered_by=current_actor().name, at=form.as_of.data)
        run_id, preview = run.id, run.preview
        commit()  # in the embedded mode the run executes right here, inline
    except ServiceError as error:
        rollback()
        flash(error.message, "error")
        return redirect_to("admin.billing")
    if preview:
        flash("Preview started: the “as of” instant is in the future, so nothing will be billed.", "success")
    else:
        flash("Billing run started.", "success")
    return redirect_to("admin.billing_run", run_id=run_id)


@bp.post("/billing/runs/<run_id>/resume")
@operator_required
def resume_billing_run(run_id: str):
    """Resume a stalled run: what is still due as of its instant is billed, nothing twice."""

    def resume() -> str:
        billing_runs.request_resume(run_id)  # in the embedded mode the rest runs inline, on commit
        return "Billing run resumed: the subscriptions still due are being billed."

    return act(resume, "admin.billing_run", run_id=run_id)


@bp.get("/billing/runs/<run_id>")
@operator_required
def billing_run(run_id: str):
    """One run's progress; htmx polls the progress block until the run has finished."""
    # A worker in another process moves the run on: read its row afresh on every poll.
    run = db.session.get(BillingRun, run_id, populate_existing=True)
    if run is None:
        abort(404)
    failed_ids = [error["subscription_id"] for error in run.errors or [] if error.get("subscription_id")]
    tenant_of = (
        dict(
            db.session.execute(
                select(Subscription.id, Subscription.tenant_id).where(Subscription.id.in_(failed_ids))
            ).all()
        )
        if failed_ids
        else {}
    )
    run_status = billing_runs.shown_status(run)
    response = render(
        "admin/billing_run.html",
        "admin/_run_progress.html",
        run=run,
        run_status=run_status,
        tenant_of=tenant_of,
        preview_items=[
            {**item, "periods_to": datetime.fromisoformat(item["periods_to"])} for item in run.preview_items or []
        ],
        stalled_after=current_app.config["BILLING_RUN_STALLED_AFTER_SECONDS"],
    )
    # A stalled run stops polling too: nothing moves until it is resumed, and the block would
    # otherwise replace (and close) the resume confirmation under the operator's pointer.
    if (run.finished or run_status == "stalled") and wants_fragment():
        response.status_code = HTMX_STOP_POLLING
    return response
