"""GET /api/v1/invoices: every tenant's invoices for the operator (seed 003's account-wide list),
newest first, by tenant, status and period, a page at a time."""

from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import Invoice, utcnow
from tests.api_support import assert_envelope, bearer, issue_key, operator_token, send_json, with_key
from tests.test_api_billing import tenant_on


@pytest.fixture
def op(app):
    return bearer(operator_token(app))


def listed(client, op, query: str) -> dict:
    response = client.get(f"/api/v1/invoices?{query}", headers=op)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_operator_lists_every_tenants_invoices_newest_first(app, client, op):
    older, newer = tenant_on(app, "starter", days_ago=20), tenant_on(app, "enterprise", days_ago=2)
    body = listed(client, op, "page_size=100")
    mine = [i for i in body["invoices"] if i["tenant_id"] in (older.tenant_id, newer.tenant_id)]
    assert [i["tenant_id"] for i in mine] == [newer.tenant_id, older.tenant_id]
    assert mine[0]["total"] == 199900 and mine[0]["line_items"]
    issued = [i["issued_at"] for i in body["invoices"]]
    assert issued == sorted(issued, reverse=True)
    assert body["pagination"]["total_items"] >= 2


def test_filters_by_tenant_or_its_external_id_status_and_period(app, client, op):
    one, other = tenant_on(app, "starter", days_ago=40), tenant_on(app, "starter", days_ago=3)
    send_json(client, "patch", f"/api/v1/tenants/{one.tenant_id}", {"external_id": f"crm-{one.tenant_id}"}, op)
    with app.app_context():
        row = db.session.query(Invoice).filter_by(tenant_id=one.tenant_id).one()
        row.status, row.amount_paid, row.paid_at = "paid", row.total, utcnow()
        db.session.commit()

    by_id = listed(client, op, f"tenant_id={one.tenant_id}")
    assert {i["tenant_id"] for i in by_id["invoices"]} == {one.tenant_id}
    assert listed(client, op, f"tenant_id=crm-{one.tenant_id}")["invoices"] == by_id["invoices"]
    assert listed(client, op, f"tenant_id={other.tenant_id}&status=paid")["invoices"] == []
    assert [i["status"] for i in listed(client, op, f"tenant_id={one.tenant_id}&status=paid")["invoices"]] == ["paid"]

    # one's first period started 40 days ago; other's 3 days ago.
    since = (utcnow() - timedelta(days=10)).date().isoformat()
    recent = listed(client, op, f"period_start={since}&page_size=100")["invoices"]
    assert other.tenant_id in {i["tenant_id"] for i in recent} and one.tenant_id not in {i["tenant_id"] for i in recent}
    until = (utcnow() - timedelta(days=5)).date().isoformat()
    ended = listed(client, op, f"period_end={until}&page_size=100")["invoices"]
    assert one.tenant_id in {i["tenant_id"] for i in ended} and other.tenant_id not in {i["tenant_id"] for i in ended}


def test_pages_are_cut_in_sql_with_the_seed_pagination_block(app, client, op):
    for days_ago in (1, 2, 3):
        tenant_on(app, "starter", days_ago=days_ago)
    first = listed(client, op, "page=1&page_size=2")
    second = listed(client, op, "page=2&page_size=2")
    assert len(first["invoices"]) == 2 and first["pagination"]["has_next"] is True
    assert first["pagination"]["total_items"] == second["pagination"]["total_items"] >= 3
    assert second["pagination"]["page"] == 2 and second["pagination"]["has_previous"] is True
    both = first["invoices"] + second["invoices"]
    assert len({i["invoice_id"] for i in both}) == len(both)
    assert [i["issued_at"] for i in both] == sorted((i["issued_at"] for i in both), reverse=True)


@pytest.mark.parametrize(
    "query, status, words",
    [
        ("tenant_id=nobody_at_all", 404, "Customer not found"),
        ("status=lost", 400, "status"),
        ("period_start=yesterday", 400, "YYYY-MM-DD"),
        ("period_end=2025-02-30", 400, "not a calendar date"),
        ("page=0", 400, "page"),
        ("page_size=1000", 400, "page_size"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(client, op, query, status, words):
    body = assert_envelope(client.get(f"/api/v1/invoices?{query}", headers=op), status)
    assert words in body["detail"]
    assert body["error_code"] == ("RESOURCE_NOT_FOUND" if status == 404 else "VALIDATION_ERROR")


def test_a_period_that_ends_before_it_starts_matches_no_invoice(app, client, op):
    tenant_on(app, "starter")
    body = listed(client, op, "period_start=2025-03-01&period_end=2025-01-31")
    assert body["invoices"] == [] and body["pagination"]["total_items"] == 0


def test_the_widest_dates_are_not_an_error(client, op):
    assert listed(client, op, "period_start=0001-01-01&period_end=9999-12-31")["pagination"]["page"] == 1


def test_tenant_keys_cannot_list_every_tenants_invoices(app, client):
    tenant = tenant_on(app, "starter")
    key = with_key(issue_key(app, tenant, scopes=["admin:*"])[1])
    assert_envelope(client.get("/api/v1/invoices", headers=key), 403)
    assert_envelope(client.get(f"/api/v1/invoices?tenant_id={tenant.tenant_id}", headers=key), 403)
