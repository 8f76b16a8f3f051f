"""Configuration from environment variables, with defaults for the embedded mode.

The embedded default (no variables set) is a SQLite file under ``instance/``, jobs run
inline, email goes to the local outbox. ``PORTAL_ENV=production`` refuses to start
without real secrets and a real database.
"""

import os
from pathlib import Path

from portal.credentials.crypto import CredentialKeyError, parse_keys

BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = BASE_DIR / "instance"

DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 - refused in production


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return f"sqlite:///{INSTANCE_DIR / 'portal.db'}"
    # Heroku-style URLs name the old driver; SQLAlchemy 2 wants an explicit one.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def load_config() -> dict:
    """Read every setting from the environment; see README "Configuration"."""
    env = os.environ.get("PORTAL_ENV", "development")
    return {
        "PORTAL_ENV": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY", DEV_SECRET_KEY),
        "SQLALCHEMY_DATABASE_URI": _database_url(),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # A pooled connection idle this long is pinged before use (a restarted database or a
        # dropped connection is replaced, not served an error); one in steady use is not.
        "DATABASE_PING_IDLE_SECONDS": float(os.environ.get("DATABASE_PING_IDLE_SECONDS", "10")),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        # Put before every RQ queue's name: deployments sharing one Redis keep their jobs apart.
        "RQ_QUEUE_PREFIX": os.environ.get("RQ_QUEUE_PREFIX", ""),
        # Per-process cache of API key lookups for reads, invalidated through Redis at once;
        # this is only its safety-net lifetime. Needs REDIS_URL; 0 turns it off.
        "API_KEY_CACHE_SECONDS": int(os.environ.get("API_KEY_CACHE_SECONDS", "30")),
        # How long a web process adds up its API requests before it sends the counts to Redis
        # in one round trip (portal/usage/api_requests.py); 0: a round trip per request.
        "API_REQUEST_COUNT_SECONDS": float(os.environ.get("API_REQUEST_COUNT_SECONDS", "1")),
        # How long a process reuses the meters it read (entitlement checks and usage reads ask
        # on every request); an edit in another process counts from then on. 0: every request reads.
        "METER_CACHE_SECONDS": float(os.environ.get("METER_CACHE_SECONDS", "5")),
        # Usage events' monthly partitions (PostgreSQL): how many months ahead the worker creates
        # them; events of months that ended more than USAGE_RETENTION_MONTHS whole months ago are
        # detached once invoiced (0: kept for ever), then dropped or kept as a detached table.
        "USAGE_PARTITIONS_AHEAD": int(os.environ.get("USAGE_PARTITIONS_AHEAD", "1")),
        "USAGE_RETENTION_MONTHS": int(os.environ.get("USAGE_RETENTION_MONTHS", "0")),
        "USAGE_RETENTION_DROP": _bool("USAGE_RETENTION_DROP", False),
        "PORTAL_ADMIN_TOKEN": os.environ.get("PORTAL_ADMIN_TOKEN", ""),
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "MAIL_SERVER": os.environ.get("MAIL_SERVER", ""),
        "MAIL_PORT": int(os.environ.get("MAIL_PORT", "25")),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME", ""),
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD", ""),
        "MAIL_USE_TLS": _bool("MAIL_USE_TLS", False),
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER", "Portal <no-reply@example.com>"),
        # Jobs run inside the request unless a Redis is configured (or this forces it).
        "JOBS_INLINE": _bool("JOBS_INLINE", not os.environ.get("REDIS_URL")),
        "INVITATION_DEFAULT_DAYS": 7,
        "PASSWORD_RESET_MINUTES": 60,
        "SIGNIN_RATE_LIMIT": os.environ.get("SIGNIN_RATE_LIMIT", "10 per minute"),
        # Per account, from any number of addresses: failures in a row before sign-in is held,
        # and the first hold's length (each later one doubles, up to a day). portal/auth/throttle.py
        "SIGNIN_ACCOUNT_MAX_FAILURES": int(os.environ.get("SIGNIN_ACCOUNT_MAX_FAILURES", "10")),
        "SIGNIN_ACCOUNT_HOLD_MINUTES": int(os.environ.get("SIGNIN_ACCOUNT_HOLD_MINUTES", "15")),
        # Operators need a second factor before any /admin page (portal.access.operator_required).
        "OPERATOR_2FA_REQUIRED": _bool("OPERATOR_2FA_REQUIRED", env == "production"),
        # The name authenticator apps and passkey prompts show for this portal.
        "TWO_FACTOR_ISSUER": os.environ.get("TWO_FACTOR_ISSUER", "Portal"),
        # POST /api/v1/tenants/onboard without an operator token (self-service onboarding).
        "API_PUBLIC_ONBOARDING": _bool("API_PUBLIC_ONBOARDING", False),
        "API_ANONYMOUS_RATE_LIMIT": os.environ.get("API_ANONYMOUS_RATE_LIMIT", "60 per minute"),
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", env == "production"),
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # How many reverse proxies in front of us set X-Forwarded-* (0: trust none).
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
        # Comma-separated url-safe base64 32-byte keys; the first encrypts, all decrypt.
        # Unset (embedded mode only): a key file is created under instance/ on first use.
        "CREDENTIALS_KEYS": os.environ.get("CREDENTIALS_KEYS", ""),
        "CREDENTIALS_KEY_FILE": os.environ.get("CREDENTIALS_KEY_FILE", str(INSTANCE_DIR / "credentials.key")),
        # Billing (DESIGN §6). The seller printed on invoices; days until an invoice is due;
        # how often the worker's scheduler starts a billing run (0: only by hand or CLI).
        "BILLING_SELLER_NAME": os.environ.get("BILLING_SELLER_NAME", "Portal SaaS Inc."),
        "BILLING_SELLER_ADDRESS": os.environ.get("BILLING_SELLER_ADDRESS", "1 Example Street, Springfield"),
        "BILLING_SELLER_EMAIL": os.environ.get("BILLING_SELLER_EMAIL", "billing@example.com"),
        # The seller's tax registration: its country decides the EU rules (reverse charge, whose
        # rate applies), and its VAT ID is printed on every invoice. Empty country: EU rules off.
        "BILLING_SELLER_COUNTRY": os.environ.get("BILLING_SELLER_COUNTRY", "DE").strip().upper(),
        "BILLING_SELLER_VAT_ID": os.environ.get("BILLING_SELLER_VAT_ID", "DE123456788").strip(),
        "INVOICE_DUE_DAYS": int(os.environ.get("INVOICE_DUE_DAYS", "14")),
        "BILLING_RUN_INTERVAL_SECONDS": int(os.environ.get("BILLING_RUN_INTERVAL_SECONDS", "3600")),
        # A run is cut into shards of this many subscriptions, each a job any worker takes.
        "BILLING_RUN_SHARD_SIZE": int(os.environ.get("BILLING_RUN_SHARD_SIZE", "500")),
        # A running billing run writes a heartbeat as it goes; one silent for this long has lost
        # its process (killed, out of memory, host gone) and the console offers to resume it.
        "BILLING_RUN_STALLED_AFTER_SECONDS": int(os.environ.get("BILLING_RUN_STALLED_AFTER_SECONDS", "300")),
        # Off: a run "as of" a future instant is only a preview (nothing billed). On (never in
        # production): it really bills, moving subscriptions into the future, for test time travel.
        "BILLING_TEST_CLOCK": _bool("BILLING_TEST_CLOCK", False),
        # Stripe (DESIGN §6, §7). Without a secret key card payment is simply unavailable.
        # STRIPE_API_BASE points the SDK at an emulator (localstripe); empty means api.stripe.com.
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY", ""),
        "STRIPE_PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE", "").rstrip("/"),
        "STRIPE_JS_URL": os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
        # Days after the first failed payment on which it is tried again; after the last one
        # fails the subscription is unpaid and the tenant suspended (payment_failed).
        "DUNNING_RETRY_DAYS": os.environ.get("DUNNING_RETRY_DAYS", "3,5,7"),
        # Outbound webhooks (portal/webhooks/). Plain http:// endpoints are refused in production;
        # endpoints resolving to loopback, private, link-local or metadata addresses are refused
        # (at creation and at every delivery) unless their host or address is in this allow-list
        # of names, addresses and networks: empty in production, this machine outside it.
        "WEBHOOK_REQUIRE_HTTPS": _bool("WEBHOOK_REQUIRE_HTTPS", env == "production"),
        "WEBHOOK_ALLOWED_HOSTS": os.environ.get(
            "WEBHOOK_ALLOWED_HOSTS", "" if env == "production" else "localhost,127.0.0.0/8,::1"
        ),
        # A delivery is a success when the endpoint answers 2xx within this many seconds.
        "WEBHOOK_TIMEOUT_SECONDS": float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10")),
        # Seconds between attempts after a failure: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (~28 h).
        "WEBHOOK_RETRY_SCHEDULE": os.environ.get("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"),
        # An endpoint whose every attempt failed for this long is disabled and its admins emailed.
        "WEBHOOK_DISABLE_AFTER_DAYS": float(os.environ.get("WEBHOOK_DISABLE_AFTER_DAYS", "5")),
        "WEBHOOK_MAX_ENDPOINTS": int(os.environ.get("WEBHOOK_MAX_ENDPOINTS", "10")),
        # How often the worker looks for deliveries whose job was lost (a crash after the commit).
        "WEBHOOK_SWEEP_SECONDS": float(os.environ.get("WEBHOOK_SWEEP_SECONDS", "30")),
    }


def check_production(config: dict) -> None:
    """Refuse to run production on development defaults."""
    if config["PORTAL_ENV"] != "production":
        return
    problems = []
    if config["SECRET_KEY"] == DEV_SECRET_KEY or len(config["SECRET_KEY"]) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters")
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL")
    if not config.get("MAIL_SERVER"):
        # Without SMTP the outbox is how mail is read, live links included: fine on a laptop,
        # an account takeover for any operator in production.
        problems.append("MAIL_SERVER must be set: production sends mail by SMTP, never to the outbox")
    if config.get("BILLING_TEST_CLOCK"):
        # A run as of a future instant would issue future-dated invoices and charge cards for them.
        problems.append(
            "BILLING_TEST_CLOCK must be off: billing runs as of a future instant are previews in production"
        )
    if not config.get("CREDENTIALS_KEYS"):
        problems.append("CREDENTIALS_KEYS must be set (generate one with `flask credentials generate-key`)")
    else:
        try:
            parse_keys(config["CREDENTIALS_KEYS"])
        except CredentialKeyError as error:
            problems.append(str(error))
    if problems:
        raise RuntimeError("Refusing to start in production: " + "; ".join(problems))
