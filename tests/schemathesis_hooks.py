"""Rules the OpenAPI document states in words because JSON Schema has no keyword for them (an
instant not in the future, a PEM key). The live schemathesis run
(tests/test_api_live_conformance.py) loads these hooks so that what it generates as a valid
request follows those words too; the server enforces each rule, and tests check it on its own."""

from datetime import UTC, datetime, timedelta

import schemathesis
from hypothesis.internal import lambda_sources

from portal.timezones import parse_instant
from tests.credential_samples import PRIVATE_KEY


def _describe_lambdas_without_parsing() -> None:
    """Python 3.11.7's ast.parse can fail with "AST constructor recursion depth mismatch" deep in a
    stack (CPython gh-106905, fixed in 3.11.8). Hypothesis parses a module's source to print a
    lambda the first time it builds a strategy's repr, per thread, and schemathesis's workers do
    so deep in recursive strategies, where the parse fails and the run errors. The repr is only
    ever used in messages: name lambdas without reading their source."""
    lambda_sources.lambda_description = lambda function: f"<lambda from {function.__module__}>"


_describe_lambdas_without_parsing()
EVENT_INSTANTS = ("occurredAt", "occurred_at", "timestamp")
WEBHOOK_URL = "http://127.0.0.1:9/hooks"


def _instant(value) -> datetime | None:
    try:
        return parse_instant(value) if isinstance(value, str) else None
    except ValueError:
        return None


@schemathesis.hook
def map_case(ctx, case):
    """A valid value of a kind JSON Schema cannot describe is made one the words describe: an
    instant that must be recent (an event within 5 minutes ahead and not before the tenant's
    open period; a payment not in the future), a GCP key's PEM, a webhook URL whose host resolves. Case-level, so that every
    phase (coverage included) applies it."""
    body, path = case.body, case.operation.path
    if not isinstance(body, dict):
        return case
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if path.endswith("/mark-paid") and (paid_at := _instant(body.get("paid_at"))) is not None:
        if paid_at > datetime.now(UTC):
            body = {**body, "paid_at": now}
    secret = body.get("credentials")
    if path.endswith("/credentials") and body.get("provider") == "gcp" and isinstance(secret, dict):
        # "An RSA private key in PEM": a real one where a valid request has some text.
        if isinstance(secret.get("private_key"), str) and secret["private_key"].strip():
            body = {**body, "credentials": {**secret, "private_key": PRIVATE_KEY}}
    if path.endswith(("/events", "/events/batch", "/events/dry-run")):
        events = body.get("events") if "events" in body else None
        if isinstance(events, list):
            body = {**body, "events": [_recent(event, now) for event in events]}
        else:
            body = _recent(body, now)
    if path.endswith(("/coupons", "/promotion-codes")):
        # "In the future": a coupon's redeem_by, a code's expires_at.
        for name in ("redeem_by", "expires_at"):
            if (instant := _instant(body.get(name))) is not None and instant <= datetime.now(UTC) + timedelta(
                minutes=5
            ):
                body = {**body, name: (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if "/webhooks" in path and isinstance(body.get("url"), str):
        # "Its host must resolve": an address this machine's development settings allow, where
        # nothing listens (port 9, discard), so deliveries fail fast and harmlessly.
        body = {**body, "url": WEBHOOK_URL}
    if path.endswith("/billing-profile") and isinstance(body.get("tax_ids"), list):
        body = _valid_tax_ids(body)
    case.body = body
    return case


# A number of each kind whose check digit holds ("checked by format and check digit").
TAX_ID_SAMPLES = {
    "eu_vat": "FR40303265045",
    "gb_vat": "GB980780684",
    "ch_vat": "CHE113947518MWST",
    "no_vat": "NO995525828MVA",
    "us_ein": "04-2103594",
    "au_abn": "51824753556",
    "in_gst": "27AAPFU0939F1ZV",
}


def _valid_tax_ids(body: dict) -> dict:
    """Each tax ID a valid number of its kind, each kind once (the same number twice is refused),
    and a country beside them ("with any tax ID, country must be set")."""
    kinds = []
    for tax_id in body["tax_ids"]:
        kind = tax_id.get("type") if isinstance(tax_id, dict) else None
        if not (isinstance(kind, str) and kind in TAX_ID_SAMPLES):
            return body  # not a valid body anyway (a negative case): left as generated
        if kind not in kinds:
            kinds.append(kind)
    body = {**body, "tax_ids": [{"type": kind, "value": TAX_ID_SAMPLES[kind]} for kind in kinds]}
    if kinds and not body.get("country"):
        body["country"] = "FR"
    return body


def _recent(event, now: str):
    if not isinstance(event, dict):
        return event
    for name in EVENT_INSTANTS:
        if (instant := _instant(event.get(name))) is not None and not (
            datetime.now(UTC) - timedelta(minutes=1) <= instant <= datetime.now(UTC)
        ):
            event = {**event, name: now}
    return event
