"""The Webhooks page: owners and admins add endpoints (the secret shown once), send a test
event, read the delivery log, resend, rotate and delete; others neither see nor reach it."""

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import WebhookEndpoint
from tests.conftest import HTMX, field_error


def endpoint_of(app, tenant):
    with app.app_context():
        return db.session.execute(
            select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.tenant_id)
        ).scalar_one()


def test_owner_adds_an_endpoint_sees_the_secret_once_and_tests_it(app, client, make_tenant, make_user, login, receiver):
    tenant = make_tenant()
    login(client, make_user(tenant, "owner"))
    page = client.get("/integrations/webhooks").get_data(as_text=True)
    assert 'href="/integrations/webhooks"' in page and "No endpoints yet" in page

    created = client.post(
        "/integrations/webhooks", data={"url": receiver.url, "description": "Billing sync", "all_events": "y"}
    ).get_data(as_text=True)
    secret = re.search(r'value="(whsec_[^"]+)"', created).group(1)
    assert "never shown again" in created
    again = client.get("/integrations/webhooks").get_data(as_text=True)
    assert secret not in again and receiver.url in again

    endpoint = endpoint_of(app, tenant)
    detail = f"/integrations/webhooks/{endpoint.id}"
    log = client.post(f"{detail}/test", headers=HTMX).get_data(as_text=True)
    assert "webhook.test" in log and "delivered" in log and "HTTP <strong>200</strong>" in log
    [request] = receiver.wait_for(1)
    assert request.verify(secret)["event_type"] == "webhook.test"

    receiver.answer_with(502)
    delivery_id = re.search(r'data-delivery-id="([^"]+)"', log).group(1)
    log = client.post(f"{detail}/deliveries/{delivery_id}/resend", headers=HTMX).get_data(as_text=True)
    assert "HTTP <strong>502</strong>" in log and "(resent)" in log and "retrying" in log

    rotated = client.post(f"{detail}/rotate-secret").get_data(as_text=True)
    new_secret = re.search(r'value="(whsec_[^"]+)"', rotated).group(1)
    assert new_secret != secret and "both the old and the new secret" in rotated

    saved = client.post(detail, data={"url": receiver.url, "description": "", "event_types": ["invoice.paid"]})
    assert saved.status_code == 303
    with app.app_context():
        changed = db.session.get(WebhookEndpoint, endpoint.id)
        assert (changed.event_types, changed.enabled) == (["invoice.paid"], False)  # "Enabled" was unticked

    assert client.post(f"{detail}/delete").status_code == 303
    assert "was deleted" in client.get("/integrations/webhooks").get_data(as_text=True)


def test_bad_input_is_explained_beside_the_field_and_saves_nothing(app, client, make_tenant, make_user, login):
    tenant = make_tenant()
    login(client, make_user(tenant, "admin"))
    page = client.post("/integrations/webhooks", data={"url": "ftp://x", "all_events": "y"})
    assert page.status_code == 422
    assert "starting with https://" in field_error(page.get_data(as_text=True), "url")
    page = client.post("/integrations/webhooks", data={"url": "http://127.0.0.1:9/x"})
    assert "Choose at least one event" in field_error(page.get_data(as_text=True), "event_types")
    with app.app_context():
        assert (
            db.session.execute(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.tenant_id)).all() == []
        )


def test_developers_and_viewers_neither_see_nor_reach_webhooks(app, client, make_tenant, make_user, login, receiver):
    tenant = make_tenant()
    login(client, make_user(tenant, "developer"))
    assert "/integrations/webhooks" not in client.get("/overview").get_data(as_text=True)
    assert client.get("/integrations/webhooks").status_code == 403


def test_another_tenants_endpoint_is_not_found(app, client, make_tenant, make_user, login, receiver):
    from tests.test_webhooks_out import add_endpoint

    theirs = make_tenant()
    their_id, _ = add_endpoint(app, theirs, receiver.url)
    mine = make_tenant()
    login(client, make_user(mine, "owner"))
    assert client.get(f"/integrations/webhooks/{their_id}").status_code == 404
    assert client.post(f"/integrations/webhooks/{their_id}/test").status_code == 404
    assert client.post(f"/integrations/webhooks/{their_id}/delete").status_code == 404
    assert receiver.requests == []


def test_the_operator_sees_every_tenants_deliveries_filters_and_resends(
    app, client, make_tenant, make_operator, login, receiver
):
    from tests.test_webhooks_out import add_endpoint, in_request

    tenant = make_tenant()
    add_endpoint(app, tenant, receiver.url)
    receiver.answer_with(500)
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key

    in_request(app, lambda: create_key(SYSTEM, tenant, "Failing", scopes=None))
    login(client, make_operator())
    page = client.get("/admin/webhooks?state=pending").get_data(as_text=True)
    assert "api_key.created" in page and "HTTP 500" in page and tenant.tenant_id in page
    delivery_id = re.search(r'data-delivery-id="([^"]+)"', page).group(1)
    assert "No deliveries in state failed" in client.get("/admin/webhooks?state=failed").get_data(as_text=True)
    resent = client.post(f"/admin/webhooks/deliveries/{delivery_id}/resend", follow_redirects=True)
    assert "delivered." in resent.get_data(as_text=True)
    assert len(receiver.wait_for(2)) == 2

    added = client.post(
        "/admin/webhooks/endpoints", data={"url": receiver.url, "description": "Ops", "all_events": "y"}
    ).get_data(as_text=True)
    assert re.search(r'value="(whsec_[^"]+)"', added)
    assert 'data-testid="operator-endpoint"' in added
