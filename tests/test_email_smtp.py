"""Email through a real SMTP server (aiosmtpd on 127.0.0.1), as production sends it.

The apps here are extra apps on the suite's own ``database_url``. Their writes are
rolled back like every other test's: the autouse ``_db_transaction`` fixture swaps
``db.session`` on the shared ``db`` object, so any app context, whichever app it belongs
to, works inside the test's outer transaction. Jobs run inline (RQ ``is_async=False``),
so the SMTP conversation happens inside the request that sends the email.
"""

import socket
from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from rq.job import Job

from tests.conftest import PASSWORD, link_in, make_app, unique

SENDER = "no-reply@example.com"


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            SimpleNamespace(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(envelope.original_content or envelope.content, policy=policy.default),
            )
        )
        return "250 Message accepted for delivery"

    def to(self, address: str):
        return [r for r in self.received if address in r.rcpt_tos]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield SimpleNamespace(inbox=inbox, port=controller.port)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtp_app(database_url, smtp_server):
    return make_app(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)


@pytest.fixture(scope="module")
def closed_smtp_port():
    """A port that is bound but not listening: connecting is refused, and nobody else gets it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def smtp_down_app(database_url, closed_smtp_port):
    return make_app(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=closed_smtp_port)


@pytest.fixture
def forget_failed_jobs(smtp_down_app):
    """RQ records a failed inline job (for a year); with a shared Redis, delete what we caused."""
    message_ids = []
    yield message_ids
    from portal.infra.queues import get_queue

    with smtp_down_app.app_context():
        registry = get_queue("email").failed_job_registry
        connection = registry.connection
        for job in Job.fetch_many(registry.get_job_ids(), connection=connection):
            if job is not None and job.args and job.args[0] in message_ids:
                registry.remove(job, delete_job=True)
                results = list(connection.scan_iter(match=f"rq:results:{job.id}*", count=1000))
                if results:
                    connection.delete(*results)


def parts_of(message):
    """(content type, text) of each part of a multipart message."""
    return [(part.get_content_type(), part.get_content()) for part in message.iter_parts()]


def test_invitation_arrives_over_smtp_as_text_and_html_with_a_working_link(
    smtp_app, smtp_server, make_tenant, make_user, login, outbox
):
    tenant = make_tenant(company_name="Harbor Lights")
    owner = make_user(tenant, role="owner")
    client = smtp_app.test_client()
    login(client, owner)
    invitee = f"{unique('deckhand')}@harbor.example"

    response = client.post("/team/invitations", data={"email": invitee, "role": "viewer", "expires_in_days": 7})
    assert response.status_code == 303
    assert f"Invitation sent to {invitee}." in client.get("/team").get_data(as_text=True)

    [delivered] = smtp_server.inbox.to(invitee)
    mail = delivered.message
    assert delivered.mail_from == SENDER
    assert mail["To"] == invitee
    assert mail["Subject"] == "You are invited to join Harbor Lights"
    assert mail.get_content_type() == "multipart/alternative"
    (text_type, text), (html_type, html) = parts_of(mail)
    assert (text_type, html_type) == ("text/plain", "text/html")
    path = link_in(text, "/invite/")
    assert f'href="http://portal.test{path}"' in html
    assert "as viewer" in text

    [record] = outbox(invitee)
    assert (record.status, record.attempts, record.last_error) == ("sent", 1, None)
    assert record.sent_at is not None

    invited = smtp_app.test_client()
    page = invited.get(path).get_data(as_text=True)
    assert "Join Harbor Lights" in page
    assert "You are invited as <strong>viewer</strong>" in page
    response = invited.post(path, data={"name": "Dana Deckhand", "password": "dana's long passphrase"})
    assert response.status_code == 303
    overview = invited.get("/overview").get_data(as_text=True)
    assert "Welcome to Harbor Lights." in overview
    assert "you are <strong>viewer</strong>" in overview


def test_password_reset_email_over_smtp_has_a_link_that_sets_a_new_password(
    smtp_app, smtp_server, make_tenant, make_user, outbox
):
    tenant = make_tenant(company_name="Lantern Works")
    member = make_user(tenant, role="admin")
    client = smtp_app.test_client()

    response = client.post("/forgot-password", data={"email": member.email})
    assert response.status_code == 303
    assert "a reset link is on its way" in client.get(response.location).get_data(as_text=True)

    [delivered] = smtp_server.inbox.to(member.email)
    assert delivered.message["Subject"] == "Reset your password"
    (_, text), (_, html) = parts_of(delivered.message)
    path = link_in(text, "/reset-password/")
    assert path in html
    assert outbox(member.email)[0].status == "sent"

    assert "Choose a new password" in client.get(path).get_data(as_text=True)
    new_password = "a brand new lantern passphrase"
    response = client.post(path, data={"password": new_password})
    assert response.status_code == 303
    assert response.location.endswith("/signin")

    signed_in = smtp_app.test_client()
    response = signed_in.post("/signin", data={"email": member.email, "password": new_password})
    assert response.status_code == 303
    assert "Lantern Works" in signed_in.get("/overview").get_data(as_text=True)
    old = smtp_app.test_client().post("/signin", data={"email": member.email, "password": PASSWORD})
    assert "Email or password is not correct." in old.get_data(as_text=True)
    assert "This reset link does not work" in client.get(path).get_data(as_text=True)


def test_invitation_is_still_created_when_smtp_is_down_and_the_email_is_marked_failed(
    smtp_down_app, make_tenant, make_user, login, outbox, forget_failed_jobs
):
    tenant = make_tenant(company_name="Quiet Harbor")
    owner = make_user(tenant, role="owner")
    client = smtp_down_app.test_client()
    login(client, owner)
    invitee = f"{unique('lost')}@harbor.example"

    # The way the page sends it: htmx post, answered with a redirect header, not a 500.
    response = client.post(
        "/team/invitations",
        data={"email": invitee, "role": "developer", "expires_in_days": 7},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204, response.get_data(as_text=True)[:500]
    assert response.headers["HX-Redirect"] == "/team"

    [record] = outbox(invitee)
    forget_failed_jobs.append(record.id)
    assert (record.status, record.attempts, record.sent_at) == ("failed", 1, None)
    assert record.last_error.startswith("ConnectionRefusedError")

    team = client.get("/team").get_data(as_text=True)
    assert f'data-testid="invitation-row" data-email="{invitee}"' in team


def test_password_reset_request_answers_normally_when_smtp_is_down(
    smtp_down_app, make_tenant, make_user, outbox, forget_failed_jobs
):
    tenant = make_tenant()
    member = make_user(tenant, role="viewer")
    client = smtp_down_app.test_client()

    response = client.post("/forgot-password", data={"email": member.email})
    assert response.status_code == 303
    assert "a reset link is on its way" in client.get(response.location).get_data(as_text=True)

    [record] = outbox(member.email)
    forget_failed_jobs.append(record.id)
    assert record.status == "failed"
    assert record.last_error.startswith("ConnectionRefusedError")
