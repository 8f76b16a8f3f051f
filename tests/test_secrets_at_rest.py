"""No usable secret at rest: a dump of PostgreSQL (pg_dump) and of Redis, taken before and after
the mail goes out, holds none of the invitation links, reset links or API keys the portal issued.

Runs on a committed database of its own (pg_dump reads from another connection), with jobs on
real Redis queues and mail through a real SMTP server (aiosmtpd), as production runs.
"""

import shutil
import subprocess
from types import SimpleNamespace

import pyotp
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from portal.access import SYSTEM, Actor
from portal.api_keys.services import create_key
from portal.auth.services import request_email_change, request_password_reset
from portal.auth.two_factor import services as two_factor
from portal.extensions import db
from portal.infra import transactions
from portal.invitations.services import create_invitation
from portal.mail import REDACTED, opened
from portal.models import EmailMessage
from portal.tenants.services import sign_up
from portal.webhooks.services import create_endpoint
from tests.conftest import database, link_in, make_app, unique
from tests.test_email_smtp import Inbox, _free_port
from tests.test_jobs import own_queues


@pytest.fixture
def own_database(tmp_path_factory):
    with database("secrets", tmp_path_factory) as url:
        yield url


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield SimpleNamespace(inbox=inbox, port=controller.port)
    finally:
        controller.stop()


def database_dump(url: str) -> bytes:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return open(parsed.database, "rb").read()  # the file is the whole database
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is not installed (apt-get install postgresql-client)"
    # Our own scratch database's URL, not outside input.
    return subprocess.run([pg_dump, "--data-only", dsn], check=True, capture_output=True).stdout  # noqa: S603


def redis_dump(connection) -> bytes:
    # DUMP serialises each value exactly as RDB stores it: a dump of every key is the RDB's content.
    # Pipelined a thousand keys at a time: a round trip per key took seconds on a shared Redis.
    keys = list(connection.scan_iter(count=1000))
    chunks = []
    for start in range(0, len(keys), 1000):
        pipe = connection.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.dump(key)
        values = pipe.execute()
        chunks += [key + (value or b"") for key, value in zip(keys[start : start + 1000], values, strict=True)]
    return b"".join(chunks)


def test_a_dump_before_or_after_delivery_holds_no_usable_link_or_key(
    own_database,
    redis_url,
    smtp_server,
    monkeypatch,
):
    app = make_app(
        own_database, REDIS_URL=redis_url, JOBS_INLINE=False, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port
    )
    owner_email, invitee = f"{unique('own')}@example.com", f"{unique('inv')}@example.com"
    new_email = f"{unique('new')}@example.com"
    with own_queues(app, monkeypatch) as queues:
        with app.test_request_context():
            user, tenant = sign_up(SYSTEM, "Dump Co", unique("dump"), owner_email, "a long dump passphrase")
            actor = Actor(user=user, ip="203.0.113.5")
            _, invitation_token = create_invitation(actor, tenant, invitee, "admin")
            _, webhook_secret = create_endpoint(actor, tenant, "http://127.0.0.1:9/hooks", ["*"], "")
            _, api_key = create_key(actor, tenant, "CI key", None, 30)  # an event to sign, too
            request_password_reset(owner_email)
            request_email_change(actor, user, new_email, "a long dump passphrase")
            totp_secret = two_factor.start_totp(user)
            recovery_codes = two_factor.confirm_totp(actor, user, pyotp.TOTP(totp_secret).now())
            assert recovery_codes and len(recovery_codes) >= 8
            transactions.commit()

        queued = (database_dump(own_database), redis_dump(queues.connection))
        queues.work()  # the email jobs: SMTP now has the links
        delivered = (database_dump(own_database), redis_dump(queues.connection))

    mails = {address: smtp_server.inbox.to(address)[-1].message for address in (owner_email, invitee, new_email)}
    invite_path = link_in(mails[invitee].get_body(("plain",)).get_content(), "/invite/")
    reset_path = link_in(
        next(
            m.message.get_body(("plain",)).get_content()
            for m in smtp_server.inbox.to(owner_email)
            if "/reset-password/" in m.message.get_body(("plain",)).get_content()
        ),
        "/reset-password/",
    )
    confirm_path = link_in(mails[new_email].get_body(("plain",)).get_content(), "/account/email/confirm/")
    secrets = {
        "invitation token": invitation_token.encode(),
        "invitation link": invite_path.encode(),
        "reset link": reset_path.encode(),
        "email confirmation link": confirm_path.encode(),
        "API key": api_key.encode(),
        "webhook signing secret": webhook_secret.encode(),
        "webhook signing key": webhook_secret.removeprefix("whsec_").encode(),
        "TOTP secret": totp_secret.encode(),
        **{f"recovery code {n}": code.encode() for n, code in enumerate(recovery_codes)},
    }
    for moment, dumps in (("queued", queued), ("delivered", delivered)):
        for where, dump in zip(("database", "Redis"), dumps, strict=True):
            for name, secret in secrets.items():
                assert secret not in dump, f"the {name} is in the {where} dump ({moment})"

    # The links were live all along (so the dumps were looked at for the right things) ...
    client = app.test_client()
    assert client.get(invite_path).status_code == 200
    assert client.get(reset_path).status_code == 200
    assert client.get(confirm_path).status_code == 200
    # ... and the stored copies, even opened with the key, now say the link is gone.
    with app.app_context():
        stored = db.session.query(EmailMessage).filter(EmailMessage.to.in_([owner_email, invitee, new_email])).all()
        linked = [m for m in stored if "[[secret:" in m.text_body]
        assert len(linked) == 3 and all(m.sealed_secrets is None for m in stored)
        assert all(REDACTED in opened(m).text_body for m in linked)
