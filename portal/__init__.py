"""The tenant self-service portal: ``create_app`` builds the Flask application."""

import logging

from flask import Flask, g

from portal.config import BASE_DIR, INSTANCE_DIR, check_production, load_config
from portal.extensions import init_extensions

# The project imports inside the functions below are the only function-level ones, on purpose:
# this module runs first for every import of any ``portal.*`` module (a job importing a model,
# the CLI, a test), and importing the blueprints, the API and the CLI here at the top would load
# the whole web layer each time, and make every route module that imports ``portal.*`` a cycle.


class PortalFlask(Flask):
    """Flask asks ``inspect`` whether a hook or view is a coroutine function each time it calls
    one (eight times a request here, a twentieth of a cached API read); a function's answer
    never changes, so it is kept."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synced: dict = {}

    def ensure_sync(self, func):
        try:
            return self._synced[func]
        except KeyError:
            synced = self._synced[func] = super().ensure_sync(func)
            return synced
        except TypeError:  # an unhashable callable: asked each time, as Flask does
            return super().ensure_sync(func)


def create_app(overrides: dict | None = None) -> Flask:
    app = PortalFlask(
        __name__,
        template_folder=str(BASE_DIR / "templates"),
        static_folder=str(BASE_DIR / "static"),
        instance_path=str(INSTANCE_DIR),
    )
    app.config.update(load_config())
    if overrides:
        app.config.update(overrides)
    check_production(app.config)
    INSTANCE_DIR.mkdir(exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    init_extensions(app)
    from portal.infra.cache import register_session_hooks

    register_session_hooks()  # commits that change a tenant or key evict the API key cache
    from portal.usage import rollups

    rollups.register_session_hooks()  # events changed through the ORM keep their roll-ups exact
    from portal.usage import meters

    meters.register_session_hooks()  # a committed or rolled back meter edit empties the meter cache
    from portal import timezones

    timezones.init_app(app)
    _register_request_hooks(app)
    _register_blueprints(app)
    _register_cli(app)
    return app


def _register_request_hooks(app: Flask) -> None:
    from portal import auth  # noqa: F401  (registers the Flask-Login loader)
    from portal.access import PERMISSIONS, can, load_tenant_context, offer
    from portal.errors import register_error_handlers
    from portal.web import register_response_headers

    app.before_request(load_tenant_context)
    register_error_handlers(app)
    register_response_headers(app)

    @app.context_processor
    def portal_context():
        return {
            "current_tenant": g.get("tenant"),
            "current_membership": g.get("membership"),
            "user_memberships": g.get("memberships", []),
            # Pages ask "can" to decide which buttons to show: a suspended tenant is offered only
            # what it may still do; "role_allows" is the role alone (what is shown read-only).
            "can": offer,
            "role_allows": can,
            "PERMISSIONS": PERMISSIONS,
        }


def _register_blueprints(app: Flask) -> None:
    from portal.activity.routes import bp as activity_bp
    from portal.admin import bp as admin_bp
    from portal.api_keys.routes import bp as api_keys_bp
    from portal.auth.routes import bp as auth_bp
    from portal.auth.two_factor import routes as _two_factor  # noqa: F401  (adds the two-factor pages to auth_bp)
    from portal.billing.payments.routes import webhooks_bp  # also adds the card and pay pages to billing_bp
    from portal.billing.routes import bp as billing_bp
    from portal.credentials.routes import bp as credentials_bp
    from portal.invitations.routes import bp as invitations_bp
    from portal.main.routes import bp as main_bp
    from portal.settings.routes import bp as settings_bp
    from portal.team.routes import bp as team_bp
    from portal.usage.routes import bp as usage_bp
    from portal.webhooks.routes import bp as outbound_webhooks_bp

    for blueprint in (
        main_bp,
        auth_bp,
        invitations_bp,
        team_bp,
        api_keys_bp,
        credentials_bp,
        billing_bp,
        usage_bp,
        settings_bp,
        activity_bp,
        admin_bp,
        webhooks_bp,
        outbound_webhooks_bp,
    ):
        app.register_blueprint(blueprint)

    from portal.api import init_api

    init_api(app)


def _register_cli(app: Flask) -> None:
    from portal.cli import register_cli

    register_cli(app)
