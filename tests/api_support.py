"""Helpers shared by the API tests: keys, operator tokens, headers, the error envelope."""

import json

from portal.extensions import db

ENVELOPE_FIELDS = {"detail", "error_code", "timestamp", "request_id"}


def issue_key(app, tenant, scopes=None, expires_in_days=90, name="Test key"):
    """A fresh key for ``tenant``: (ApiKey, plaintext)."""
    from portal.access import SYSTEM
    from portal.api_keys.services import create_key
    from portal.infra.transactions import commit

    with app.test_request_context():
        key, plaintext = create_key(SYSTEM, tenant, name, scopes=scopes, expires_in_days=expires_in_days)
        commit()
        return key, plaintext


def operator_token(app):
    from portal.access import SYSTEM
    from portal.api_keys.services import create_operator_token
    from portal.infra.transactions import commit

    with app.test_request_context():
        _, plaintext = create_operator_token(SYSTEM, "Test operator token")
        commit()
        return plaintext


def with_key(plaintext):
    return {"X-API-Key": plaintext}


def bearer(plaintext):
    return {"Authorization": f"Bearer {plaintext}"}


def assert_envelope(response, status, error_code=None):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json, response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert ENVELOPE_FIELDS <= set(body), body
    assert body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if error_code:
        assert body["error_code"] == error_code, body
    return body


def send_json(client, method, path, payload, headers):
    """Send ``payload`` serialised as it is (``json=None`` in the test client would send no body)."""
    return getattr(client, method)(path, data=json.dumps(payload), content_type="application/json", headers=headers)


def fetch(app, model, ident):
    """A fresh copy of a row, read past the session's identity map."""
    with app.app_context():
        db.session.expire_all()
        return db.session.get(model, ident)


def count(app, model, **filters):
    with app.app_context():
        return db.session.query(model).filter_by(**filters).count()


# Hostile request bodies: each must give a 4xx envelope and change nothing.
HOSTILE_JSON = [
    [],
    [{"key_name": "x"}],
    "just a string",
    12345,
    None,
    {"unexpected": {"nested": [1, {"deeper": [None, True]}]}},
    {"key_name": ["a", "b"], "invited_email": {"$ne": 1}, "role": 7, "user_name": None, "password": []},
    {
        "key_name": "x" * 100_000,
        "invited_email": "a" * 100_000 + "@example.com",
        "role": "admin" * 10_000,
        "company_name": "y" * 100_000,
        "revocation_reason": "z" * 100_000,
        "user_name": "n" * 100_000,
    },
    {"expires_in_days": "90", "scopes": "admin:*", "role": None, "invited_email": None, "company_name": None},
    {"expires_in_days": 10**30, "scopes": [None, 3, {}], "role": ["admin"], "metadata": [1, 2]},
    {"expires_in_days": -1, "scopes": ["root:*"], "role": "owner", "metadata": {"k": {"nested": "x"}}},
    {"expires_in_days": 1.5, "scopes": [], "role": "", "invited_email": "not-an-email", "user_name": "   "},
]


def limit_tenant_to(app, tenant, per_minute: int) -> None:
    """Move ``tenant`` onto a plan of its own whose API rate limit is ``per_minute``."""
    from portal.extensions import db
    from portal.infra.transactions import commit
    from portal.models import Subscription, Tenant
    from tests.billing_engine_support import add_plan
    from tests.conftest import unique

    with app.test_request_context():
        version = add_plan(unique("tight"), 4900, rate_limits={"per_minute": per_minute, "per_hour": 5000})
        subscription = db.session.execute(db.select(Subscription).filter_by(tenant_id=tenant.tenant_id)).scalar_one()
        subscription.plan_version_id = version.id
        db.session.get(Tenant, tenant.tenant_id).subscription_plan = version.plan.key
        commit()
