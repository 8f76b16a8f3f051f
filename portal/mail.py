"""The one mailer: renders both bodies, records the message, and sends it from a job.

A link that grants something (an invitation, a password reset, an email confirmation) must
never be usable from a database dump. ``send_email(..., secrets=[url])`` stores the bodies
with each secret replaced by a marker and the secrets themselves sealed (AES-GCM) under the
credentials key, which lives outside the database. Delivery opens them; once SMTP has the
message they are dropped, so the stored copy says "link removed after delivery". Without
SMTP (embedded mode) the outbox *is* the delivery channel, so it keeps them to show.
"""

import json
import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage
from email.utils import make_msgid

from flask import current_app, render_template
from sqlalchemy import select

from portal.credentials import crypto
from portal.extensions import db
from portal.infra.transactions import defer
from portal.models import EmailAttachment, EmailMessage, Tenant, User, utcnow
from portal.timezones import format_in

SEAL_CONTEXT = "email-secrets"
REDACTED = "[link removed after delivery]"
_MARKER = re.compile(r"\[\[secret:(\d+)\]\]")


@dataclass(frozen=True)
class Opened:
    """A stored message as its reader gets it: secrets in place, or redacted once gone."""

    message: EmailMessage
    text_body: str
    html_body: str

    def __getattr__(self, name):
        return getattr(self.message, name)


def send_email(
    to: str, subject: str, template: str, tenant: Tenant | None = None, secrets=(), attachments=(), **context
) -> EmailMessage:
    """Queue an email rendered from ``templates/email/<template>.txt|.html``.

    ``secrets``: strings in the context (e.g. the link's URL) never to be stored in clear.
    ``attachments``: ``(filename, content type, bytes or Drawn)`` files sent with it, stored
    with the message until delivery; only what may be kept (an invoice's PDF), never a secret.
    A ``Drawn`` file is made by its registered source when SMTP sends the message.
    """
    context.setdefault("base_url", current_app.config["PUBLIC_BASE_URL"])
    # Written to a person where we know them: their name in the greeting, every time in their
    # own timezone with the zone named (not the zone of whoever's request sent the email).
    recipient = context.get("recipient") or db.session.query(User).filter_by(email=to.strip().lower()).first()
    context["recipient"] = recipient
    zone_hint = context.pop("zone_name", None)  # a sender's guess, for someone without an account
    zone_name = getattr(recipient, "timezone", None) or zone_hint
    context.setdefault("when", lambda value, style="datetime": format_in(value, zone_name, style))
    text_body = render_template(f"email/{template}.txt", **context)
    html_body = render_template(f"email/{template}.html", **context)
    secrets = [secret for secret in secrets if secret]
    for index, secret in enumerate(secrets):
        text_body = text_body.replace(secret, f"[[secret:{index}]]")
        html_body = html_body.replace(secret, f"[[secret:{index}]]")
    message = EmailMessage(
        tenant_id=tenant.tenant_id if tenant else None,
        # Stored lower-case like every account email, so the outbox finds it by address.
        to=to.strip().lower(),
        subject=subject,
        text_body=text_body,
        html_body=html_body,
    )
    db.session.add(message)
    db.session.flush()
    for filename, content_type, content in attachments:
        drawn = isinstance(content, Drawn)
        db.session.add(
            EmailAttachment(
                message_id=message.id,
                filename=filename,
                content_type=content_type,
                content=None if drawn else content,
                source=f"{content.source}:{content.ref}" if drawn else None,
            )
        )
    if secrets:
        keyring = crypto.current_keyring()
        blob, kid = crypto.encrypt(keyring, json.dumps(secrets).encode(), SEAL_CONTEXT, message.id)
        message.sealed_secrets, message.sealed_key_id = blob, kid
    defer("jobs.email.deliver_email", message.id, queue="email")
    return message


def _secrets(message: EmailMessage) -> list[str] | None:
    if message.sealed_secrets is None:
        return None
    try:
        plain = crypto.decrypt(
            crypto.current_keyring(), message.sealed_secrets, message.sealed_key_id, SEAL_CONTEXT, message.id
        )
    except crypto.CredentialDecryptError:
        return None  # sealed under a key since retired: the link is as good as gone
    return json.loads(plain)


def opened(message: EmailMessage, reveal: bool = True) -> Opened:
    """The bodies with their links back in (``reveal``) or redacted."""
    secrets = _secrets(message) if reveal else None

    def fill(body: str) -> str:
        def one(match):
            index = int(match.group(1))
            return secrets[index] if secrets is not None and index < len(secrets) else REDACTED

        return _MARKER.sub(one, body)

    return Opened(message, fill(message.text_body), fill(message.html_body))


@dataclass(frozen=True)
class Drawn:
    """An attachment made when the message is sent: ``SOURCES[source](ref)`` gives its bytes."""

    source: str
    ref: str


# Registered by the domain that owns the file (``portal.billing.pdf``: "invoice_pdf"); mail
# cannot import it.
SOURCES: dict[str, Callable[[str], bytes]] = {}


def attachment_content(attachment: EmailAttachment) -> bytes:
    if attachment.content is not None:
        return attachment.content
    source, _, ref = (attachment.source or "").partition(":")
    return SOURCES[source](ref)


def attachments_of(message: EmailMessage) -> list[EmailAttachment]:
    return list(
        db.session.execute(
            select(EmailAttachment).where(EmailAttachment.message_id == message.id).order_by(EmailAttachment.created_at)
        ).scalars()
    )


def outbox_shows_links() -> bool:
    """Without SMTP the outbox is where mail is read, so it must show the links; with SMTP, never."""
    return not current_app.config["MAIL_SERVER"]


def deliver(message: EmailMessage) -> None:
    """SMTP when MAIL_SERVER is set, otherwise the message stays readable in the outbox."""
    config = current_app.config
    message.attempts += 1
    if not config["MAIL_SERVER"]:
        message.status = "outbox"
        message.sent_at = utcnow()
        return
    full = opened(message)
    mime = MimeMessage()
    mime["From"] = config["MAIL_DEFAULT_SENDER"]
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Message-ID"] = make_msgid(domain="portal.local")
    mime.set_content(full.text_body)
    mime.add_alternative(full.html_body, subtype="html")
    for attachment in attachments_of(message):
        maintype, _, subtype = attachment.content_type.partition("/")
        mime.add_attachment(
            attachment_content(attachment), maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=15) as smtp:
        if config["MAIL_USE_TLS"]:
            smtp.starttls()
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        smtp.send_message(mime)
    message.status = "sent"
    message.sent_at = utcnow()
    # Delivered: the person has the link; the stored copy must not.
    message.sealed_secrets = None
    message.sealed_key_id = None
