"""Per-process cache of API key lookups and of what entitlement checks read, invalidated
across processes through Redis pub/sub.

A warm authenticated read (GET/HEAD) finds its key and tenant here and touches no database:
the entry holds plain copies of both rows' columns, rebuilt on each hit into detached ORM
instances (columns only; a view that needs the tenant's related rows queries them by
tenant_id). Writes always authenticate against the database (see ``portal.api.principal``).

Operator tokens are cached the same way (a plain copy of the token row, under the same rules,
for reads only); a commit that changes or deletes one evicts every operator token entry
(``OPERATOR_TOKENS``), in this process and, through the channel, in the others.

Correctness rests on invalidation, not on the TTL:

- Every commit of ``db.session`` that changed or deleted a tenant or an API key (ORM unit of
  work, ``bulk.write_changes``, or a bulk UPDATE/DELETE on those tables) evicts that tenant's entries in this process
  at once and PUBLISHes the tenant ids on the database's channel (``channel_for``).
- Each process runs one listener thread subscribed to that channel. A message evicts; every
  (re)subscription clears the whole cache, since messages sent while unsubscribed are lost.
  While not subscribed (not yet, or the connection broke) the cache is bypassed: every
  lookup goes to the database, and nothing is stored.
- A fill races an invalidation through a generation counter: it is read before the query and
  the entry is stored only if no eviction happened meanwhile.
- ``API_KEY_CACHE_SECONDS`` is a safety net for changes made behind the ORM's back (psql, a
  migration), not the way revocation works.

Snapshots (``load_snapshot``/``store_snapshot``: a tenant's subscription terms and its meter
values, read by ingestion and entitlement checks; see ``portal.usage.services.tenant_terms``)
live beside the keys under the same rules, with generation counters of their own. A commit
that stores or deletes usage events publishes those tenants with ``"usage": true``, which
evicts their meter values only; a commit that changes a tenant or its subscription evicts
everything of theirs.

Only with a real Redis (``REDIS_URL``): without one there is no way to tell other processes,
so there is no cache. A process whose cache is off still publishes its invalidations.
"""

import atexit
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass

from flask import current_app, has_app_context
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from portal.models import ApiKey, OperatorToken, Subscription, Tenant, UsageEvent, UsageRollup

log = logging.getLogger(__name__)

CHANNEL = "portal:api-key-cache"  # followed by ":<digest of the database URL>", see channel_for
MAX_ENTRIES = 10_000
# Execution option for writes the cache may ignore (last_used_at, refreshed by hits themselves).
NO_INVALIDATION = "portal_api_key_cache_ignore"
ALL = "*"
# Evicts the operator token entries; "*" keeps it from ever being a tenant id.
OPERATOR_TOKENS = "*operator-tokens"
_CACHED_TABLES = {ApiKey.__tablename__, Tenant.__tablename__, OperatorToken.__tablename__, Subscription.__tablename__}
_USAGE_TABLES = {UsageEvent.__tablename__, UsageRollup.__tablename__}
_TOKEN_ENTRY = "operator:"  # noqa: S105 - entry keys of operator tokens: this + the token hash
_PENDING = "portal_api_key_cache_pending"  # session.info: tenant ids changed in this transaction
_PENDING_USAGE = "portal_api_key_cache_pending_usage"  # session.info: tenants whose usage changed
_APP_CACHE = "portal_api_key_cache"  # app.extensions
_APP_CHANNEL = "portal_api_key_cache_channel"
# The listener pings Redis when idle; a connection silent for longer is treated as broken.
_PING_EVERY = 5.0
_SILENT_LIMIT = 15.0
_RECONNECT_DELAY = 1.0


@dataclass
class Entry:
    key_values: dict
    tenant_values: dict
    tenant_id: str
    stored_at: float
    # Which values are mutable (JSON lists and objects): each hit gets its own copy of those.
    key_mutable: tuple = ()
    tenant_mutable: tuple = ()


class ApiKeyCache:
    """key_hash -> Entry for one Redis URL and database in one process, with its listener thread."""

    def __init__(self, redis_url: str, channel: str):
        self.redis_url = redis_url
        self.channel = channel
        self.pid = os.getpid()
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._generation = 0
        # Entitlement snapshots: tenant_id -> {name: (stored_at, value)}, and name -> tenant_id.
        self._snapshots: dict[str, dict[str, tuple[float, object, bool]]] = {}
        self._snapshot_tenants: dict[str, str] = {}
        self._terms_generation = 0
        self._usage_generation = 0
        self._subscribed = threading.Event()
        self._listener: threading.Thread | None = None

    # --- reads and fills ----------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, key_hash: str, ttl: float) -> ApiKey | None:
        """The cached key and its tenant, rebuilt without SQL and outside any session."""
        entry = self._entries.get(key_hash)
        if entry is None or not self._subscribed.is_set():
            return None
        if time.monotonic() - entry.stored_at > ttl:
            self.discard(key_hash, entry)
            return None
        # Detached, as if loaded by a session since closed: every column is there, and nothing
        # is attached to db.session (creating a session only to attach them would cost a fifth
        # of the request). A view that needs more of the tenant than its columns queries by
        # tenant_id; a lazy relationship load would raise DetachedInstanceError, not guess.
        tenant = _rebuild(Tenant, entry.tenant_values, entry.tenant_mutable)
        key = _rebuild(ApiKey, entry.key_values, entry.key_mutable)
        set_committed_value(key, "tenant", tenant)  # as if loaded together
        return key

    def store(self, key_hash: str, key: ApiKey, generation: int) -> None:
        """Remember a key just read from the database, unless an eviction happened since
        ``generation`` was read (the read may predate the change that caused it)."""
        key_values = _snapshot(key)
        tenant = key.tenant if key_values is not None else None
        tenant_values = _snapshot(tenant) if tenant is not None else None
        if key_values is None or tenant_values is None:
            return
        entry = Entry(
            key_values, tenant_values, tenant.tenant_id, time.monotonic(), _mutable(key_values), _mutable(tenant_values)
        )
        with self._lock:
            if generation != self._generation or not self._subscribed.is_set():
                return
            self._entries.pop(key_hash, None)
            if len(self._entries) >= MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]  # the oldest
            self._entries[key_hash] = entry

    def load_operator_token(self, token_hash: str, ttl: float) -> OperatorToken | None:
        """The cached operator token, detached, without SQL (None: not cached)."""
        entry_key = _TOKEN_ENTRY + token_hash
        entry = self._entries.get(entry_key)
        if entry is None or not self._subscribed.is_set():
            return None
        if time.monotonic() - entry.stored_at > ttl:
            self.discard(entry_key, entry)
            return None
        return _rebuild(OperatorToken, entry.key_values, entry.key_mutable)

    def store_operator_token(self, token_hash: str, token: OperatorToken, generation: int) -> None:
        values = _snapshot(token)
        if values is None:
            return
        entry = Entry(values, {}, OPERATOR_TOKENS, time.monotonic(), _mutable(values))
        with self._lock:
            if generation != self._generation or not self._subscribed.is_set():
                return
            entry_key = _TOKEN_ENTRY + token_hash
            self._entries.pop(entry_key, None)
            if len(self._entries) >= MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries[entry_key] = entry

    def note_operator_token_used(self, token_hash: str, when) -> None:
        self.note_last_used(_TOKEN_ENTRY + token_hash, when)

    def note_last_used(self, key_hash: str, when) -> None:
        """The database now says ``last_used_at = when``; keep the hit path from writing again."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is not None:
                entry.key_values = {**entry.key_values, "last_used_at": when}

    def discard(self, key_hash: str, entry: Entry | None = None) -> None:
        with self._lock:
            if entry is None or self._entries.get(key_hash) is entry:
                self._entries.pop(key_hash, None)

    # --- entitlement snapshots ------------------------------------------------------------

    def snapshot_generation(self, usage: bool) -> int:
        """Read before the database read whose result ``store_snapshot`` is given."""
        return self._usage_generation if usage else self._terms_generation

    def load_snapshot(self, name: str, ttl: float):
        """The value stored under ``name`` (immutable: shared, not copied); None: not cached."""
        tenant_id = self._snapshot_tenants.get(name)
        if tenant_id is None or not self._subscribed.is_set():
            return None
        stored = self._snapshots.get(tenant_id, {}).get(name)
        if stored is None or time.monotonic() - stored[0] > ttl:
            return None
        return stored[1]

    def store_snapshot(self, name: str, tenant_id: str, value, generation: int, usage: bool = False) -> None:
        """Remember ``value`` for ``tenant_id``, unless an eviction happened since ``generation``
        was read (the database read may predate the change that caused it). ``usage``: a value
        read from the tenant's usage events, which storing or deleting events evicts."""
        with self._lock:
            if generation != self.snapshot_generation(usage) or not self._subscribed.is_set():
                return
            if len(self._snapshot_tenants) >= MAX_ENTRIES:
                self._snapshots.clear()
                self._snapshot_tenants.clear()
            previous = self._snapshot_tenants.get(name)
            if previous is not None and previous != tenant_id:  # an external id now names another tenant
                self._snapshots.get(previous, {}).pop(name, None)
            self._snapshots.setdefault(tenant_id, {})[name] = (time.monotonic(), value, usage)
            self._snapshot_tenants[name] = tenant_id

    def _drop_snapshots(self, tenant_ids: set[str], usage_only: bool = False) -> None:
        """Under the lock."""
        self._usage_generation += 1
        if not usage_only:
            self._terms_generation += 1
        if ALL in tenant_ids:
            tenant_ids = set(self._snapshots)
        for tenant_id in tenant_ids:
            stored = self._snapshots.get(tenant_id)
            if not stored:
                continue
            for name in [n for n, (_, _, usage) in stored.items() if usage or not usage_only]:
                del stored[name]
                self._snapshot_tenants.pop(name, None)

    # --- invalidation -------------------------------------------------------------------

    def evict(self, tenant_ids, usage_only: bool = False) -> None:
        """Forget the entries of these tenants (``ALL`` among them: every entry); with
        ``usage_only`` their entitlement snapshots only."""
        tenant_ids = set(tenant_ids)
        with self._lock:
            self._drop_snapshots(tenant_ids, usage_only)
            if usage_only:
                return
            self._generation += 1
            if ALL in tenant_ids:
                self._entries.clear()
                return
            for key_hash in [h for h, e in self._entries.items() if e.tenant_id in tenant_ids]:
                del self._entries[key_hash]

    def clear(self) -> None:
        self.evict({ALL})

    # --- the listener -------------------------------------------------------------------

    def ensure_listener(self) -> None:
        if self._listener is not None:
            return
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="api-key-cache-listener", daemon=True)
                self._listener.start()

    def wait_until_subscribed(self, timeout: float) -> bool:
        self.ensure_listener()
        return self._subscribed.wait(timeout)

    def _listen(self) -> None:
        lost_logged = False
        while True:
            client = pubsub = None
            try:
                client = _redis_client(self.redis_url, connect_timeout=2, name=listener_name())
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                heard = pinged = time.monotonic()
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        heard = now
                        if self._handle(message):
                            if lost_logged:
                                log.info("API key cache: subscribed to Redis again")
                            lost_logged = False
                    elif now - heard > _SILENT_LIMIT:
                        raise ConnectionError("no reply from Redis")
                    elif now - max(heard, pinged) > _PING_EVERY:
                        pubsub.ping()
                        pinged = now
            except Exception as error:  # noqa: BLE001 - any failure: bypass, then resubscribe
                self._unsubscribed()
                if not lost_logged:
                    # The exception's class only: its text may carry the Redis URL.
                    log.warning(
                        "API key cache: not subscribed to Redis (%s); API reads query the database until it is back",
                        type(error).__name__,
                    )
                    lost_logged = True
            finally:
                for closable in (pubsub, client):
                    try:
                        if closable is not None:
                            closable.close()
                    except Exception:  # noqa: BLE001, S110 - the connection is being dropped anyway
                        pass
            time.sleep(_RECONNECT_DELAY)

    def _handle(self, message: dict) -> bool:
        """Apply one pub/sub message; True when it (re)confirmed the subscription."""
        kind = message["type"]
        if kind == "subscribe":
            # Whatever was published while we were not listening is lost: start empty.
            with self._lock:
                self._generation += 1
                self._entries.clear()
                self._drop_snapshots({ALL})
                self._subscribed.set()
            return True
        if kind == "message":
            origin, tenant_ids, usage_only = _decode(message["data"])
            # Our own message: publish() evicted here already, right after the commit. Evicting
            # again would only throw away fills that read the committed data.
            if origin != _origin():
                self.evict(tenant_ids, usage_only)
        elif kind == "unsubscribe":
            raise ConnectionError("unsubscribed")
        return False

    def _unsubscribed(self) -> None:
        with self._lock:
            self._subscribed.clear()
            self._generation += 1
            self._entries.clear()
            self._drop_snapshots({ALL})


def _json_copy(value):
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    return value


def _mutable(values: dict) -> tuple:
    return tuple(k for k, v in values.items() if isinstance(v, dict | list))


def _rebuild(model, values: dict, mutable: tuple):
    """A detached instance holding ``values``, built the way a query builds one from a row:
    no ``__init__``, no per-attribute change events, the values straight into its state as
    loaded, and its identity key; then detached, as if its session had closed. (The public
    route, a constructed instance passed to ``make_transient_to_detached``, cost 16 µs for a
    key and its tenant against 6 here: a twentieth of a cached API read.)"""
    mapper = model.__mapper__
    obj = mapper.class_manager.new_instance()
    state = instance_state(obj)
    state.dict.update(values)
    # A handler mutating a JSON value in place must not change what the next request sees.
    for name in mutable:
        state.dict[name] = _json_copy(values[name])
    state.key = mapper.identity_key_from_instance(obj)  # persistent, with no session: detached
    return obj


def _snapshot(obj) -> dict | None:
    """Plain copies of a clean, fully loaded row's column values (None if it is not)."""
    state = inspect(obj)
    if not state.persistent or state.modified:
        return None
    loaded = state.dict
    values = {}
    for attr in state.mapper.column_attrs:
        if attr.key not in loaded:
            return None
        values[attr.key] = loaded[attr.key]
    return {k: _json_copy(v) for k, v in values.items()}  # not shared with the live instance


def _encode(tenant_ids: set[str], usage_only: bool = False) -> str:
    message = {"origin": _origin(), "tenants": [ALL] if ALL in tenant_ids else sorted(tenant_ids)}
    if usage_only:
        message["usage"] = True
    return json.dumps(message)


def _decode(data) -> tuple[str | None, set[str], bool]:
    """(the publishing process, tenant ids, usage only?) of a message."""
    try:
        message = json.loads(data)
        tenant_ids = message["tenants"]
        if isinstance(tenant_ids, list) and all(isinstance(i, str) for i in tenant_ids):
            return message.get("origin"), set(tenant_ids), message.get("usage") is True
    except (ValueError, TypeError, KeyError):
        pass
    return None, {ALL}, False  # unreadable: forget everything rather than keep something stale


_origins: dict[int, str] = {}


def _origin() -> str:
    """This process's name on the channel (a fork gets its own)."""
    pid = os.getpid()
    if pid not in _origins:
        _origins[pid] = f"{pid}-{secrets.token_hex(6)}"
    return _origins[pid]


# --- one cache per Redis URL and database, per process ---------------------------------

_caches: dict[tuple[str, str], ApiKeyCache] = {}
_publishers: dict[tuple[int, str], object] = {}
_registry_lock = threading.Lock()


def _redis_client(url: str, connect_timeout: float, timeout: float | None = None, name: str | None = None):
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No silent retries: a broken connection must surface, so the listener can stop serving.
    return Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )


def listener_name() -> str:
    """This process's listener, as Redis's CLIENT LIST shows it."""
    return f"portal-api-key-cache-{os.getpid()}"


def channel_for(database_uri: str) -> str:
    """The invalidation channel of one database. Processes on another database that share the
    Redis (staging, test runs) neither hear its messages nor disturb its cache."""
    url = make_url(database_uri)
    identity = url.set(drivername=url.get_backend_name(), password=None).render_as_string(hide_password=False)
    return f"{CHANNEL}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def cache_for(redis_url: str, channel: str, create: bool = True) -> ApiKeyCache | None:
    key = (redis_url, channel)
    cache = _caches.get(key)
    if cache is not None and cache.pid == os.getpid():
        return cache
    if not create:
        return None
    with _registry_lock:
        cache = _caches.get(key)
        if cache is None or cache.pid != os.getpid():  # none yet, or inherited through fork()
            cache = _caches[key] = ApiKeyCache(redis_url, channel)
        return cache


def enabled(config) -> bool:
    return bool(config.get("REDIS_URL")) and config.get("API_KEY_CACHE_SECONDS", 0) > 0


def _channel(app) -> str:
    channel = app.extensions.get(_APP_CHANNEL)
    if channel is None:
        channel = app.extensions[_APP_CHANNEL] = channel_for(app.config["SQLALCHEMY_DATABASE_URI"])
    return channel


def active_cache(app=None) -> ApiKeyCache | None:
    """The app's cache (shared by every app of the process on the same Redis and database),
    its listener started; None when it is off (no Redis, or 0 seconds)."""
    app = app or current_app._get_current_object()  # one proxy look-up: asked on every API request
    cache = app.extensions.get(_APP_CACHE)
    if cache is None or cache.pid != os.getpid():
        if not enabled(app.config):
            return None
        cache = app.extensions[_APP_CACHE] = cache_for(app.config["REDIS_URL"], _channel(app))
        cache.ensure_listener()
    return cache


def ttl() -> float:
    return float(current_app.config["API_KEY_CACHE_SECONDS"])


def publish(redis_url: str, channel: str, tenant_ids: set[str], usage_only: bool = False) -> None:
    """Evict here at once, then tell every other process. A failure is logged, not raised:
    the change is committed, and other processes drop the entries within the TTL.

    Usage changes (``usage_only``) come with every event ingested, a thousand a second: they
    are sent by this process's outbox thread, gathered over ``USAGE_GATHER_SECONDS``, so the
    request pays no round trip and the listeners get one message per interval, not per event."""
    local = cache_for(redis_url, channel, create=False)
    if local is not None:
        local.evict(tenant_ids, usage_only)
    if usage_only:
        _outbox(redis_url, channel).add(tenant_ids)
        return
    _send(redis_url, channel, tenant_ids, usage_only)


def _send(redis_url: str, channel: str, tenant_ids: set[str], usage_only: bool) -> None:
    payload = _encode(tenant_ids, usage_only)
    try:
        key = (os.getpid(), redis_url)
        client = _publishers.get(key)
        if client is None:
            client = _publishers[key] = _redis_client(redis_url, connect_timeout=1, timeout=1)
        client.publish(channel, payload)
    except Exception as error:  # noqa: BLE001
        log.warning(
            "API key cache: could not publish the invalidation of %d tenant(s) (%s); other processes "
            "drop their entries within API_KEY_CACHE_SECONDS",
            len(tenant_ids),
            type(error).__name__,
        )


USAGE_GATHER_SECONDS = 0.02


class _UsageOutbox:
    """Tenants whose usage changed in this process, published together by one thread."""

    def __init__(self, redis_url: str, channel: str):
        self.redis_url, self.channel, self.pid = redis_url, channel, os.getpid()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="usage-invalidation-outbox", daemon=True).start()
        atexit.register(self.flush)  # a worker stopping sends what it gathered

    def add(self, tenant_ids) -> None:
        with self._lock:
            self._pending.update(tenant_ids)
        if not self._wake.is_set():  # set already: the thread is gathering (saves a lock round)
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            tenant_ids, self._pending = self._pending, set()
            self._wake.clear()
        if tenant_ids:
            _send(self.redis_url, self.channel, tenant_ids, usage_only=True)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # The first change after a quiet spell goes at once; those that follow it within
            # the interval go together after it: one message per interval at most.
            self.flush()
            time.sleep(USAGE_GATHER_SECONDS)


_outboxes: dict[tuple[str, str], _UsageOutbox] = {}


def _outbox(redis_url: str, channel: str) -> _UsageOutbox:
    outbox = _outboxes.get((redis_url, channel))
    if outbox is None or outbox.pid != os.getpid():  # none yet, or inherited through fork()
        with _registry_lock:
            outbox = _outboxes.get((redis_url, channel))
            if outbox is None or outbox.pid != os.getpid():
                outbox = _outboxes[(redis_url, channel)] = _UsageOutbox(redis_url, channel)
    return outbox


# --- session hooks: what a commit changed -----------------------------------------------


def note_usage_changed(session, tenant_ids) -> None:
    """Events of these tenants were stored or deleted behind the unit of work (Core): their
    entitlement snapshots are evicted when the transaction commits."""
    session.info.setdefault(_PENDING_USAGE, set()).update(tenant_ids)


def usage_committed(tenant_ids) -> None:
    """Events of these tenants were stored by a statement that committed on its own (no
    transaction, ``transactions.statement_connection``): evicted now, there is no commit to
    wait for."""
    if has_app_context() and current_app.config.get("REDIS_URL"):
        publish(current_app.config["REDIS_URL"], _channel(current_app), set(tenant_ids), usage_only=True)


def _changed_usage_tenant_ids(objects) -> set[str]:
    return {
        obj.tenant_id for obj in objects if isinstance(obj, UsageEvent | UsageRollup) and isinstance(obj.tenant_id, str)
    }


def _changed_tenant_ids(new, changed) -> set[str]:
    ids: set[str] = set()
    for obj in new:
        if isinstance(obj, Subscription) and isinstance(obj.tenant_id, str):
            ids.add(obj.tenant_id)  # a first subscription changes what the tenant is entitled to
    for obj in changed:
        if isinstance(obj, Subscription):
            state = inspect(obj)
            found = {
                v for v in (state.dict.get("tenant_id"), state.committed_state.get("tenant_id")) if isinstance(v, str)
            }
            ids |= found or {ALL}
        elif isinstance(obj, Tenant):
            ids.add(inspect(obj).identity[0])
        elif isinstance(obj, OperatorToken):
            ids.add(OPERATOR_TOKENS)
        elif isinstance(obj, ApiKey):
            state = inspect(obj)
            # Its tenant now and, had it changed, before; unknown (expired) means everyone's.
            found = {
                v for v in (state.dict.get("tenant_id"), state.committed_state.get("tenant_id")) if isinstance(v, str)
            }
            ids |= found or {ALL}
    return ids


def _after_flush(session, _flush_context) -> None:
    ids = _changed_tenant_ids(session.new, [*session.dirty, *session.deleted])
    if ids:
        session.info.setdefault(_PENDING, set()).update(ids)
    usage_ids = _changed_usage_tenant_ids((*session.new, *session.dirty, *session.deleted))
    if usage_ids:
        note_usage_changed(session, usage_ids)


def note_written(session, objects) -> None:
    """These loaded objects' changes were written behind the unit of work (``bulk.write_changes``):
    what they change is evicted when the transaction commits, as if a flush had written them.
    Called before the objects are marked clean (their previous values tell what changed)."""
    ids = _changed_tenant_ids((), objects)
    if ids:
        session.info.setdefault(_PENDING, set()).update(ids)
    usage_ids = _changed_usage_tenant_ids(objects)
    if usage_ids:
        note_usage_changed(session, usage_ids)


def _do_orm_execute(state) -> None:
    if not (state.is_update or state.is_delete) or state.execution_options.get(NO_INVALIDATION):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name == OperatorToken.__tablename__:
        state.session.info.setdefault(_PENDING, set()).add(OPERATOR_TOKENS)
    elif name in _CACHED_TABLES:
        # Which rows a bulk statement hits is unknown here: drop everything.
        state.session.info.setdefault(_PENDING, set()).add(ALL)
    elif name in _USAGE_TABLES:
        note_usage_changed(state.session, {ALL})


def _after_commit(session) -> None:
    if session.in_nested_transaction():
        return  # a released savepoint: the outer transaction may still roll back
    pending = session.info.pop(_PENDING, None)
    usage = session.info.pop(_PENDING_USAGE, None)
    if not (pending or usage) or not has_app_context() or not current_app.config.get("REDIS_URL"):
        return
    if pending:
        publish(current_app.config["REDIS_URL"], _channel(current_app), pending)
    if usage and (usage := usage - (pending or set())):
        publish(current_app.config["REDIS_URL"], _channel(current_app), usage, usage_only=True)


def _after_transaction_end(session, transaction) -> None:
    if transaction.parent is None:
        # Rolled back (or closed) without a commit: nothing changed, nothing to announce.
        session.info.pop(_PENDING, None)
        session.info.pop(_PENDING_USAGE, None)


_HOOKS = (
    ("after_flush", _after_flush),
    ("do_orm_execute", _do_orm_execute),
    ("after_commit", _after_commit),
    ("after_transaction_end", _after_transaction_end),
)


def register_session_hooks() -> None:
    """Listen on the class of every app's ``db.session`` (Flask-SQLAlchemy's); idempotent."""
    for name, hook in _HOOKS:
        if not event.contains(FlaskSession, name, hook):
            event.listen(FlaskSession, name, hook)
