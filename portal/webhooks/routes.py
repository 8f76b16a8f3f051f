"""The Webhooks page (owners and admins): endpoints with their health, the secret shown once,
test events, each endpoint's delivery log with Resend. URLs live under /integrations/webhooks:
/webhooks/ belongs to the inbound Stripe webhook, which runs without a session."""

import json

from flask import Blueprint, abort, g, request

from portal.access import current_actor, tenant_required
from portal.errors import ServiceError
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.infra.transactions import commit, rollback
from portal.models import WebhookEndpoint
from portal.tenants.scoped import get_for_tenant
from portal.web import act, form_errors_status, page_view, render, save_form, submit
from portal.webhooks import services
from portal.webhooks.catalog import EVENT_TYPES
from portal.webhooks.forms import ActionForm, EndpointForm

bp = Blueprint("outbound_webhooks", __name__, url_prefix="/integrations/webhooks")

PER_PAGE = 20


def _endpoint(webhook_id: str) -> WebhookEndpoint:
    return get_for_tenant(WebhookEndpoint, webhook_id, g.tenant, "Webhook endpoint")


def _check_csrf() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, "Your form expired. Reload the page and try again.")


@page_view(bp, "", "index", tenant_required("webhooks.manage"))
def _index(form=None, created=None, status=200):
    endpoints = list(db.session.execute(services.endpoints_query(g.tenant)).scalars())
    return render(
        "webhooks/index.html",
        status=status,
        endpoints=endpoints,
        health=services.health(endpoints) if endpoints else {},
        form=form or EndpointForm(formdata=None),
        created=created,
        event_types=EVENT_TYPES,
    )


def _detail(endpoint: WebhookEndpoint, form=None, secret=None, status=200, fragment=None):
    state = request.args.get("state") or None
    state = state if state in ("pending", "succeeded", "failed") else None
    deliveries = paginate(services.deliveries_query(endpoint, state), request.args.get("page", 1, type=int), PER_PAGE)
    if form is None:
        form = EndpointForm(formdata=None, obj=endpoint)
        form.all_events.data = "*" in endpoint.event_types
        form.event_types.data = [name for name in endpoint.event_types if name != "*"]
    return render(
        "webhooks/detail.html",
        fragment,
        status=status,
        endpoint=endpoint,
        deliveries=deliveries,
        state=state,
        form=form,
        secret=secret,
        event_types=EVENT_TYPES,
    )


@bp.post("")
@tenant_required("webhooks.manage")
def create():
    """Add an endpoint and show its secret once, in this response (never after a redirect)."""
    form = EndpointForm()
    created = save_form(
        form,
        lambda: services.create_endpoint(
            current_actor(), g.tenant, form.url.data, form.chosen_events, form.description.data
        ),
    )
    if created is not None:
        endpoint, secret = created
        return _index(created={"endpoint": endpoint, "secret": secret})
    return _index(form=form, status=form_errors_status())


@bp.get("/<webhook_id>")
@tenant_required("webhooks.manage")
def detail(webhook_id: str):
    return _detail(_endpoint(webhook_id), fragment="webhooks/_deliveries.html")


@bp.post("/<webhook_id>")
@tenant_required("webhooks.manage")
def update(webhook_id: str):
    endpoint = _endpoint(webhook_id)
    form = EndpointForm()

    def save() -> str:
        services.update_endpoint(
            current_actor(),
            g.tenant,
            endpoint,
            url=form.url.data,
            event_types=form.chosen_events,
            description=form.description.data or "",
            enabled=form.enabled.data,
        )
        return "Endpoint saved."

    return submit(form, save, "outbound_webhooks.detail", webhook_id=webhook_id) or _detail(
        endpoint, form=form, status=form_errors_status()
    )


@bp.post("/<webhook_id>/test")
@tenant_required("webhooks.manage")
def send_test(webhook_id: str):
    """Send webhook.test now; htmx gets the delivery log back with its outcome on top."""
    endpoint = _endpoint(webhook_id)
    _check_csrf()
    try:
        services.send_test(current_actor(), g.tenant, endpoint)
        commit()
    except ServiceError as error:
        rollback()
        abort(400, error.message)
    db.session.expire_all()
    return _detail(_endpoint(webhook_id), fragment="webhooks/_deliveries.html")


@bp.post("/<webhook_id>/deliveries/<delivery_id>/resend")
@tenant_required("webhooks.manage")
def resend(webhook_id: str, delivery_id: str):
    endpoint = _endpoint(webhook_id)
    delivery = services.get_delivery(endpoint, delivery_id)
    _check_csrf()
    services.resend(current_actor(), g.tenant, delivery)
    commit()
    db.session.expire_all()
    return _detail(_endpoint(webhook_id), fragment="webhooks/_deliveries.html")


@bp.post("/<webhook_id>/rotate-secret")
@tenant_required("webhooks.manage")
def rotate_secret(webhook_id: str):
    """A new secret, shown once in this response; the old one signs alongside for 24 hours."""
    endpoint = _endpoint(webhook_id)
    _check_csrf()
    secret = services.rotate_secret(current_actor(), g.tenant, endpoint)
    commit()
    return _detail(endpoint, secret=secret)


@bp.post("/<webhook_id>/delete")
@tenant_required("webhooks.manage")
def delete(webhook_id: str):
    endpoint = _endpoint(webhook_id)
    _check_csrf()
    url = endpoint.url

    def delete_it():
        services.delete_endpoint(current_actor(), g.tenant, endpoint)
        return f"The endpoint {url} was deleted; no more events go to it."

    return act(delete_it, "outbound_webhooks.index")


@bp.app_template_filter("pretty_json")
def pretty_json(body: str) -> str:
    """A stored event body, indented for people (the bytes sent stay compact)."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body
