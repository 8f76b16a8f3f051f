"""Extension singletons, bound to the app in ``init_extensions``."""

import threading
import time
from weakref import WeakKeyDictionary

from flask import current_app
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, create_engine, event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic can alter them later (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# session.info: the autocommit engine (``autocommit_engine``) the session's statements run on
# until its transaction ends (``portal.infra.transactions.autocommit_statements``).
AUTOCOMMIT = "portal_autocommit"


class PortalSession(FlaskSession):
    """Flask-SQLAlchemy's session, whose statements in autocommit mode go to the autocommit
    pool instead of switching a pooled connection there and back."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and (engine := self.info.get(AUTOCOMMIT)) is not None:
            return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


db = SQLAlchemy(model_class=Base, session_options={"class_": PortalSession})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()


class PortalLimiter(Limiter):
    """Flask-Limiter keeps one on/off switch for every app in the process; here each app's own
    RATELIMIT_ENABLED decides, for the per-request hooks and the decorated views alike."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if current_app.config["PORTAL_RATELIMIT_ENABLED"]:
            super()._check_request_limit(callable_name, in_middleware)


limiter = PortalLimiter(key_func=get_remote_address, default_limits=[])


def ping_when_idle(engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, as ``pool_pre_ping`` does, but only for a connection
    that sat in the pool for ``idle_seconds``: pinging on every checkout cost each request a
    round trip, and a connection used a moment ago is as good as a ping. A failed ping makes
    the pool discard the connection and hand out a fresh one."""
    dialect = engine.dialect

    @event.listens_for(engine.pool, "checkin")
    def _idle_from(dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < idle_seconds:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError("the pooled connection did not answer a ping") from error
        if not alive:
            raise exc.DisconnectionError("the pooled connection did not answer a ping")


_autocommit_engines: WeakKeyDictionary = WeakKeyDictionary()
_autocommit_lock = threading.Lock()


def autocommit_engine(engine: Engine) -> Engine:
    """``engine``'s twin (PostgreSQL), whose pooled connections are opened in autocommit and
    stay in it: for requests whose statements are each atomic on their own (ingestion, reads
    that need no common snapshot). Switching one of ``engine``'s connections to autocommit for a
    request, and back when it is returned, cost that request five driver calls (two on checkout;
    on return a rollback and two more) and SQLAlchemy's isolation bookkeeping: about an eighth
    of a single event's CPU. A twin's connection holds no transaction, so it is returned as it
    is (no reset). Same URL and pool settings; idle connections pinged alike; disposed with
    ``engine`` (before a worker forks, say). A process may hold a pool of each."""
    twin = _autocommit_engines.get(engine)
    if twin is None:
        with _autocommit_lock:
            twin = _autocommit_engines.get(engine)
            if twin is None:
                options = {**current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})}
                options.update(isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
                twin = create_engine(engine.url, **options)
                ping_when_idle(twin, current_app.config.get("DATABASE_PING_IDLE_SECONDS", 10.0))
                event.listen(engine, "engine_disposed", lambda _engine: twin.dispose())
                _autocommit_engines[engine] = twin
    return twin


def init_extensions(app) -> None:
    db.init_app(app)
    with app.app_context():
        ping_when_idle(db.engine, app.config.get("DATABASE_PING_IDLE_SECONDS", 10.0))
    migrate.init_app(app, db, render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    # "basic" protection writes _fresh=False into every anonymous session, so a response to
    # a request sent just before sign-in (an htmx suggestion, say) would set the old cookie
    # again and sign the person out. Sessions are server-side rows (revocable) and nothing
    # asks for a fresh login, so the protection only did harm.
    login_manager.session_protection = None
    csrf.init_app(app)
    htmx.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # The Limiter singleton keeps one on/off switch for every app in the process; keep it
    # on and let each app's own setting decide (see PortalLimiter). An app with rate limiting
    # off gets none of its per-request hooks, which would only find every limit exempt.
    app.config["PORTAL_RATELIMIT_ENABLED"] = app.config.get("RATELIMIT_ENABLED", True)
    app.config["RATELIMIT_ENABLED"] = True
    # Flask-Limiter puts Retry-After on every response it counts; portal.web's response
    # headers keep it on a 429 or a 503 only.
    if app.config["PORTAL_RATELIMIT_ENABLED"]:
        limiter.init_app(app)
