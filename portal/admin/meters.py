"""Console: the meters that turn usage events into plan features' quantities (list, create, edit)."""

from flask import abort, flash, request
from sqlalchemy import select

from portal.access import operator_required
from portal.admin.blueprint import bp
from portal.admin.forms import MeterForm
from portal.billing.catalog import MeterSpec
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import Meter
from portal.usage.meters import list_meters, save_meter
from portal.web import form_errors_status, redirect_to, render


@bp.get("/meters")
@operator_required
def meters():
    """The meters that turn usage events into plan features' quantities."""
    return render("admin/meters.html", meters=list_meters())


def _meter_page(form: MeterForm, meter=None, status: int = 200):
    return render("admin/meter_form.html", form=form, meter=meter, status=status)


@bp.route("/meters/new", methods=["GET", "POST"], endpoint="new_meter")
@bp.route("/meters/<meter_key>", methods=["GET", "POST"])
@operator_required
def edit_meter(meter_key: str | None = None):
    """Create or edit a meter (the catalog file's next sync writes its own meters back)."""
    import json

    from pydantic import ValidationError

    meter = None
    if meter_key is not None:
        meter = db.session.execute(select(Meter).where(Meter.key == meter_key[:64])).scalar_one_or_none()
        if meter is None:
            abort(404)
    if request.method == "GET":
        form = MeterForm(formdata=None, obj=meter)
        if meter is not None:
            form.filter.data = json.dumps(meter.filter) if (meter.filter or {}).get("conditions") else ""
        return _meter_page(form, meter)
    form = MeterForm()
    if meter is not None:
        form.key.data = meter.key  # the key names the feature: it is not renamed here
    if not form.validate_on_submit():
        return _meter_page(form, meter, form_errors_status())
    try:
        meter_filter = json.loads(form.filter.data) if (form.filter.data or "").strip() else {}
    except ValueError as error:
        form.filter.errors = [f"Not valid JSON: {error}"]
        return _meter_page(form, meter, form_errors_status())
    try:
        spec = MeterSpec(
            key=form.key.data.strip(),
            name=form.name.data.strip(),
            event_name=form.event_name.data.strip(),
            aggregation=form.aggregation.data,
            property=(form.property.data or "").strip() or None,
            filter=meter_filter,
        )
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            target = getattr(form, str(problem["loc"][0]), None) if problem["loc"] else None
            message = problem["msg"].removeprefix("Value error, ")
            if target is not None and target.name != "csrf_token":
                target.errors = list(target.errors or []) + [message]
            else:
                form.form_errors.append(message)
        return _meter_page(form, meter, form_errors_status())
    if meter is None and db.session.execute(select(Meter).where(Meter.key == spec.key)).first() is not None:
        form.key.errors = ["A meter with this key exists; edit it instead."]
        return _meter_page(form, meter, form_errors_status())
    save_meter(spec)
    commit()
    flash(f"Meter {spec.key} saved.", "success")
    return redirect_to("admin.meters")
