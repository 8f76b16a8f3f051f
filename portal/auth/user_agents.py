"""A browser's User-Agent in plain words ("Firefox on Windows"), for the list of sessions.

Only a rough guide for the person reading it: the header is the browser's own claim, and the
order of the checks matters because most browsers also name the ones they descend from.
"""

# (marker in the header, name), first match wins: Edge and Opera also say "Chrome",
# Chrome also says "Safari".
_BROWSERS = (
    ("Edg", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
# iPhone and Android before the desktop systems they also mention ("like Mac OS X", "Linux").
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def _first(header: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((name for marker, name in table if marker in header), None)


def describe(user_agent: str | None) -> str:
    """ "Chrome on macOS", "Safari on iPhone", or as much of it as the header tells."""
    header = (user_agent or "").strip()
    if not header:
        return "Unknown browser"
    browser = _first(header, _BROWSERS)
    system = _first(header, _SYSTEMS)
    if browser and system:
        return f"{browser} on {system}"
    if browser:
        return browser
    if system:
        return f"A browser on {system}"
    # Not a browser we know (a script, a command-line tool): its own first word says most.
    return header.split("/", 1)[0].split(" ", 1)[0][:40] or "Unknown browser"
