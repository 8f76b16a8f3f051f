import csv
import io
import json

from flask import Blueprint, g, make_response, request

from portal.access import tenant_required
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
        "days": [day.isoformat() for day in report.days],
        "series": [{"key": line.usage.key, "label": f"{line.usage.name} ({line.usage.unit_label})",
                    "values": report.daily.get(line.usage.key, [])} for line in report.features],
    }
    return render("usage/index.html", report=report, chart_json=json.dumps(chart))


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
