"""Instants are stored and computed in UTC; people read them in their own timezone.

The viewer's timezone is the one they chose on their account page, else the one their browser
reports (static/app.js keeps it in the ``tz`` cookie), else UTC. Templates format every instant
with the ``local`` filter, so a billing period that ends at 12:00 UTC reads 07:00 EST in
February and 08:00 EDT in April, while the instant itself never moves.
"""

import re
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import Flask, g, has_app_context, has_request_context, request
from flask_login import current_user

COOKIE = "tz"
# Longest IANA name today is 32 characters; anything much longer is not a timezone.
NAME_MAX = 64

# One way to write a date across portal, console and emails: "Dec 6, 2026" (no 12/6 vs 6/12
# ambiguity), times on the 24-hour clock with the zone named: "Dec 6, 2026, 14:05 CET".
STYLES = {
    "date": "{month} {day}, {year}",
    "day": "{month} {day}, {year}",
    "datetime": "{month} {day}, {year}, %H:%M %Z",
    "seconds": "{month} {day}, {year}, %H:%M:%S %Z",
    "time": "%H:%M %Z",
    "clock": "%H:%M:%S %Z",
}


@cache
def names() -> tuple[str, ...]:
    """Every IANA timezone this machine knows, sorted, for the account page's choice."""
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))


def zone(name: str | None) -> ZoneInfo | None:
    """The timezone called ``name``, or None when there is no such zone."""
    if not name or len(name) > NAME_MAX or name not in names():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def chosen_name() -> str | None:
    """The timezone the signed-in user picked on their account page, if any."""
    if has_request_context() and current_user.is_authenticated:
        return getattr(current_user, "timezone", None)
    return None


def browser_name() -> str | None:
    """What the browser reported, when it is a real timezone."""
    name = request.cookies.get(COOKIE) if has_request_context() else None
    return name if zone(name) else None


def viewer_zone() -> ZoneInfo:
    if not has_app_context():  # a script or job formatting a date: nobody is viewing
        return ZoneInfo("UTC")
    if "viewer_zone" not in g:
        g.viewer_zone = zone(chosen_name()) or zone(browser_name()) or ZoneInfo("UTC")
    return g.viewer_zone


def localize(value: datetime) -> datetime:
    if value.tzinfo is None:  # the database hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(viewer_zone())


def format_local(value: datetime | None, style: str = "datetime") -> str:
    """``value`` in the viewer's timezone: "Mar 14, 2027, 08:00 EDT"; "—" for no value.

    Styles: date and day ("Mar 14, 2027"), datetime (default), seconds, time, clock (time with
    seconds).
    """
    if value is None:
        return "—"
    return _formatted(localize(value), style)


def format_in(value: datetime | None, zone_name: str | None, style: str = "datetime") -> str:
    """``value`` in the named timezone (UTC when none or unknown), in the one format: for emails,
    read in the recipient's zone rather than that of whoever's request sent them."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return _formatted(value.astimezone(zone(zone_name) or ZoneInfo("UTC")), style)


def _formatted(local: datetime, style: str) -> str:
    pattern = STYLES[style].format(month=f"{local:%b}", day=local.day, year=local.year)
    return local.strftime(pattern)


def init_app(app: Flask) -> None:
    app.add_template_filter(format_local, "local")
    app.add_template_global(format_in, "local_in")  # an instant in a named zone: the operator's UTC inputs

    @app.context_processor
    def timezone_context():
        return {"viewer_zone": viewer_zone}


def parse_instant(value):
    """An ISO 8601 instant with its offset (a datetime passes through), as a UTC datetime;
    ValueError with a message in the user's words otherwise."""
    if isinstance(value, datetime):
        parsed = value
    elif (
        isinstance(value, str) and len(value) <= 40 and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.+\-Z]+", value)
    ):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value} is not a valid ISO 8601 date and time") from None
    else:
        raise ValueError("use an ISO 8601 date and time with a timezone, e.g. 2025-11-17T14:00:00Z")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("give the timezone too, e.g. 2025-11-17T14:00:00Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value} is out of range") from None
