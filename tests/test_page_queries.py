"""Every portal and console page answers in at most 10 SQL statements, whatever the data size:
counted (SQLAlchemy's ``before_cursor_execute``) for each page signed in, with the demo data
(`flask demo seed`, plus a webhook endpoint and a billing run so every page has its object),
then again after adding 200 API keys, 200 invitations, 10,000 usage events, 24 invoices and 500
tenants; the count may not grow with the data.

Each page is requested twice and the second is counted: the first may fill per-process caches
(the plan catalog, a key's last use stamped once a minute, a session's last-seen stamp) that a
server has warm. Statements the test harness adds (its SAVEPOINTs) are not counted.
"""

import itertools
import os
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select

from portal.extensions import db
from portal.models import Invoice, Tenant, utcnow

LIMIT = 10
OWNER = ("owner@demo.example.com", "demo portal passphrase")
OPERATOR = ("operator@example.com", "operator console passphrase")
_HARNESS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def counting(engine):
    statements: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany):
        if not statement.lstrip().upper().startswith(_HARNESS):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _seed(app) -> dict:
    """The demo data, plus the objects some pages show one of."""
    from portal.access import SYSTEM, Actor
    from portal.billing.runs import create_run, execute
    from portal.infra.transactions import commit
    from portal.models import EmailMessage, Membership, User
    from portal.webhooks.services import create_endpoint

    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    with app.test_request_context():
        tenant = db.session.get(Tenant, "demo_co")
        owner = db.session.execute(select(User).where(User.email == OWNER[0])).scalar_one()
        assert db.session.execute(select(Membership).where(Membership.user_id == owner.id)).scalar_one()
        endpoint, _ = create_endpoint(
            Actor(user=owner, label=None), tenant, "http://127.0.0.1:9/hooks", ["invoice.paid"], "Finance"
        )
        commit()
        run = create_run("console")
        commit()
        execute(run)
        commit()
        operator = db.session.execute(select(User).where(User.email == OPERATOR[0])).scalar_one()
        invoice_id = db.session.execute(select(Invoice.id).where(Invoice.tenant_id == "demo_co")).scalars().first()
        message_id = db.session.execute(select(EmailMessage.id)).scalars().first()
        return {
            "tenant": tenant.tenant_id,
            "invoice": invoice_id,
            "endpoint": endpoint.id,
            "run": run.id,
            "operator": operator.id,
            "message": message_id,
            "owner": owner.id,
            "_system": SYSTEM,
        }


def _grow(app, ids: dict) -> None:
    """200 keys, 200 invitations, 10,000 events, 24 invoices for the demo tenant; 500 tenants."""
    from portal.access import SYSTEM, Actor
    from portal.api_keys.services import create_key
    from portal.infra.transactions import commit
    from portal.invitations.services import create_invitation
    from portal.models import User
    from portal.tenants.services import create_tenant
    from portal.usage import ingest

    with app.test_request_context():
        tenant = db.session.get(Tenant, ids["tenant"])
        owner = db.session.get(User, ids["owner"])
        actor = Actor(user=owner, label=None)
        for n in range(200):
            create_key(actor, tenant, f"Key {n}", scopes=None, expires_in_days=None)
        for n in range(200):
            create_invitation(actor, tenant, f"invitee-{n}@demo.example.com", "developer")
        commit()
        now = utcnow()
        counter = itertools.count()
        for _ in range(10):
            ingest.ingest(
                [
                    {
                        "tenant_id": tenant.tenant_id,
                        "eventIdempotencyKey": f"grow-{next(counter)}",
                        "eventName": "pipeline_run",
                        "occurredAt": (now - timedelta(seconds=n % 600)).isoformat(),
                    }
                    for n in range(1000)
                ]
            )
            commit()
        # 24 invoices: copies of the demo invoice a month apart (numbers and periods unique).
        first = db.session.get(Invoice, ids["invoice"])
        columns = {c.key: getattr(first, c.key) for c in Invoice.__table__.columns}
        rows = []
        for n in range(1, 25):
            row = dict(columns)
            row["id"] = f"inv_grow{n:04d}"
            row["number"] = f"{first.number}-G{n:02d}"
            row["period_start"] = first.period_start - timedelta(days=31 * n)
            row["period_end"] = first.period_end - timedelta(days=31 * n)
            rows.append(row)
        db.session.execute(insert(Invoice), rows)
        commit()
        for n in range(500):
            create_tenant(
                SYSTEM, f"grow_{n:03d}_{ids['tenant']}"[:50], f"Grown {n}", f"grow-{n}@example.com", "starter"
            )
            if n % 50 == 49:
                commit()
        commit()


def _portal_pages(ids: dict) -> list[str]:
    return [
        "/overview",
        "/usage",
        "/team",
        "/api-keys",
        "/credentials",
        "/billing",
        "/billing/invoices",
        f"/billing/invoices/{ids['invoice']}",
        "/billing/credits",
        "/billing/change/starter",
        "/billing/payment-method",
        "/settings",
        "/activity",
        "/account",
        "/account/two-factor",
        "/integrations/webhooks",
        f"/integrations/webhooks/{ids['endpoint']}",
    ]


def _console_pages(ids: dict) -> list[str]:
    return [
        "/admin/tenants",
        f"/admin/tenants?q={ids['tenant']}",
        f"/admin/tenants/{ids['tenant']}",
        "/admin/plans",
        "/admin/billing",
        f"/admin/billing/runs/{ids['run']}",
        f"/admin/invoices/{ids['invoice']}",
        "/admin/jobs/failed",
        "/admin/stripe-events",
        "/admin/webhooks",
        "/admin/meters",
        "/admin/meters/new",
        "/admin/outbox",
        f"/admin/outbox/{ids['message']}",
        "/admin/tokens",
        f"/admin/users/{ids['operator']}/two-factor",
        "/account",
    ]


def _counts(app, who: tuple[str, str], pages: list[str]) -> dict[str, int]:
    label = "operator" if who == OPERATOR else "owner"
    with app.app_context():
        engine = db.engine
    client = app.test_client()
    response = client.post("/signin", data={"email": who[0], "password": who[1]})
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    counts = {}
    for path in pages:
        first = client.get(path)
        assert first.status_code == 200, (path, first.status_code)
        with counting(engine) as statements:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        counts[f"{label} {path}"] = len(statements)
        if os.environ.get("PAGE_QUERIES_SHOW") and os.environ["PAGE_QUERIES_SHOW"] in path:
            print(f"\n--- {label} {path}\n" + "\n".join(" ".join(s.split())[:400] for s in statements))
    return counts


@pytest.fixture
def pages_app(app):
    """The session's app with the meters cached as a server has them (tests turn it off)."""
    saved = app.config["METER_CACHE_SECONDS"]
    app.config["METER_CACHE_SECONDS"] = 5
    yield app
    app.config["METER_CACHE_SECONDS"] = saved


def test_every_page_takes_at_most_ten_statements_and_as_many_with_more_data(pages_app):
    app = pages_app
    ids = _seed(app)
    small = {**_counts(app, OWNER, _portal_pages(ids)), **_counts(app, OPERATOR, _console_pages(ids))}
    _grow(app, ids)
    large = {**_counts(app, OWNER, _portal_pages(ids)), **_counts(app, OPERATOR, _console_pages(ids))}
    report = "\n".join(f"{path:55} {small[path]:4} {large[path]:5}" for path in small)
    print(f"\n{'page':55} demo grown\n" + report)
    over = {path: count for path, count in large.items() if count > LIMIT or small[path] > LIMIT}
    grew = {path: (small[path], large[path]) for path in small if large[path] > small[path]}
    assert not over, f"over {LIMIT} statements:\n{report}"
    assert not grew, f"grew with the data:\n{report}"
