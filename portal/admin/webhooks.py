"""Console: outbound webhook deliveries across tenants (filter, resend) and the operator's own
endpoints, which receive every tenant's events (``customer.created`` among them)."""

from flask import abort, flash, request

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.infra.transactions import commit
from portal.models import DELIVERY_STATES, WebhookDelivery, WebhookEndpoint
from portal.tenants.scoped import could_be_an_id
from portal.web import act, form_errors_status, page_view, redirect_to, render, save_form
from portal.webhooks import services
from portal.webhooks.catalog import EVENT_TYPES
from portal.webhooks.forms import ActionForm, EndpointForm


@page_view(bp, "/webhooks", "webhooks", operator_required)
def _page(form=None, created=None, status=200):
    """Every tenant's deliveries, newest first; the operator's own endpoints below."""
    state = request.args.get("state", "").strip()
    state = state if state in DELIVERY_STATES else ""
    tenant_id = request.args.get("tenant", "").strip()
    tenant_id = tenant_id if could_be_an_id(tenant_id) else ""
    deliveries = paginate(
        services.deliveries_query(state=state or None, tenant_id=tenant_id or None),
        request.args.get("page", 1, type=int),
        50,
    )
    return render(
        "admin/webhooks.html",
        status=status,
        deliveries=deliveries,
        state_filter=state,
        tenant_filter=tenant_id,
        states=DELIVERY_STATES,
        endpoints=list(db.session.execute(services.endpoints_query(None)).scalars()),
        form=form or EndpointForm(formdata=None),
        created=created,
        event_types=EVENT_TYPES,
    )


@bp.post("/webhooks/endpoints")
@operator_required
def add_operator_endpoint():
    form = EndpointForm()
    created = save_form(
        form,
        lambda: services.create_endpoint(
            current_actor(), None, form.url.data, form.chosen_events, form.description.data
        ),
    )
    if created is not None:
        endpoint, secret = created
        return _page(created={"endpoint": endpoint, "secret": secret})
    return _page(form=form, status=form_errors_status())


def _operator_endpoint(endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if could_be_an_id(endpoint_id) else None
    if endpoint is None or endpoint.tenant_id is not None:
        abort(404)
    return endpoint


def _endpoint_action(endpoint_id: str, service, done: str):
    """Run ``service`` on one of the operator's endpoints; ``done`` names its ``{url}``."""
    endpoint = _operator_endpoint(endpoint_id)
    url = endpoint.url

    def run() -> str:
        service(current_actor(), None, endpoint)
        return done.format(url=url)

    return act(run, "admin.webhooks")


@bp.post("/webhooks/endpoints/<endpoint_id>/delete")
@operator_required
def delete_operator_endpoint(endpoint_id: str):
    return _endpoint_action(endpoint_id, services.delete_endpoint, "The endpoint {url} was deleted.")


@bp.post("/webhooks/endpoints/<endpoint_id>/test")
@operator_required
def test_operator_endpoint(endpoint_id: str):
    return _endpoint_action(
        endpoint_id, services.send_test, "A test event was sent to {url}; its outcome is in the list."
    )


@bp.post("/webhooks/deliveries/<delivery_id>/resend")
@operator_required
def resend_delivery(delivery_id: str):
    if not ActionForm().validate_on_submit():
        abort(400, "Your form expired. Reload the page and try again.")
    delivery = db.session.get(WebhookDelivery, delivery_id) if could_be_an_id(delivery_id) else None
    if delivery is None:
        abort(404)
    services.resend(current_actor(), None, delivery)
    commit()
    db.session.expire_all()
    delivery = db.session.get(WebhookDelivery, delivery_id)
    flash(
        f"Delivery of {delivery.event_type} resent: "
        + ("delivered." if delivery.state == "succeeded" else f"{delivery.last_error or 'queued for the worker'}."),
        "success" if delivery.state == "succeeded" else "warning",
    )
    return redirect_to("admin.webhooks", state=request.args.get("state") or None)
