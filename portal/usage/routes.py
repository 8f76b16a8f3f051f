import csv
import io
import json

from flask import Blueprint, g, make_response, request

from portal.access import tenant_required
from portal.models import utcnow
from portal.usage import report as usage_report
from portal.web import render

bp = Blueprint("usage", __name__, url_prefix="/usage")


def _month() -> str | None:
    return (request.args.get("month") or "").strip() or None


@bp.get("")
@tenant_required("tenant.read")
def index():
    """This period's usage per feature against the quotas, the daily chart and the month picker."""
    report = usage_report.build(g.tenant, _month())
    chart = {
        # The x axis spans the whole window, from its first day's midnight (where that day's
        # point is drawn): the days still to come show as room left, and a window's first day
        # alone is not stretched across years.
        "start": int(report.start.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()),
        "end": int(report.end.timestamp()),
        "days": [day.isoformat() for day in report.days],
        # One small chart per feature, each on its own scale and unit: runs, GB and hours on one
        # axis made the small ones flat lines.
        "series": [
            {
                "key": line.usage.key,
                "label": line.usage.name,
                "unit": line.usage.unit_label,
                "kind": "level" if line.usage.key in report.levels else "counter",
                "quota": float(line.usage.quota) if line.usage.quota is not None else None,
                "values": report.daily.get(line.usage.key, []),
            }
            for line in report.features
        ],
    }
    # A chart of nothing but zeros (a month before the first event, say) says less than a sentence.
    charted = any(value for series in chart["series"] for value in series["values"])
    return render(
        "usage/index.html",
        report=report,
        chart_json=json.dumps(chart),
        charted=charted,
        # The picker shows the month on screen: the chosen one, else the current one.
        picker_month=report.month or f"{utcnow():%Y-%m}",
    )


@bp.get("/export.csv")
@tenant_required("tenant.read")
def export_csv():
    """The page's daily usage as CSV (one row per day and feature)."""
    report = usage_report.build(g.tenant, _month())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "feature", "feature_name", "value", "unit"])
    for line in report.features:
        for day, value in zip(report.days, report.daily.get(line.usage.key, []), strict=True):
            writer.writerow([day.isoformat(), line.usage.key, line.usage.name, f"{value:g}", line.usage.unit_label])
    label = report.month or f"{report.start:%Y-%m-%d}"
    response = make_response(out.getvalue())
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="usage-{g.tenant.tenant_id}-{label}.csv"'
    return response
