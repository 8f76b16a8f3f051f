"""Rules the OpenAPI document states in words because JSON Schema has no keyword for them
(a date not in the future, one query parameter not after another). The live schemathesis run
(tests/test_api_live_conformance.py) loads these hooks so that what it calls a valid request
follows those words too; each rule is also enforced by the server and tested on its own."""

from datetime import UTC, datetime

import schemathesis

from portal.timezones import parse_instant

HISTORY_MONTHS = 36  # portal.api.usage.MAX_HISTORY_MONTHS


def _is(ctx, method: str, suffix: str) -> bool:
    operation = ctx.operation
    return operation is not None and operation.method.upper() == method and operation.path.endswith(suffix)


def _month_index(value) -> int | None:
    if not isinstance(value, str) or len(value) != 7 or value[4] != "-":
        return None
    try:
        return int(value[:4]) * 12 + int(value[5:])
    except ValueError:
        return None


@schemathesis.hook
def filter_query(ctx, query):
    if not _is(ctx, "GET", "/usage/history") or not isinstance(query, dict):
        return True
    start, end = _month_index(query.get("start_month")), _month_index(query.get("end_month"))
    if start is None or end is None:
        return True
    return 0 <= end - start < HISTORY_MONTHS


@schemathesis.hook
def filter_body(ctx, body):
    if not _is(ctx, "POST", "/mark-paid") or not isinstance(body, dict) or not isinstance(body.get("paid_at"), str):
        return True
    try:
        paid_at = parse_instant(body["paid_at"])
    except ValueError:
        return True
    return paid_at <= datetime.now(UTC)
