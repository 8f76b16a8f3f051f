"""The one mailer: renders both bodies, records the message, and sends it from a job."""

import smtplib
from email.message import EmailMessage as MimeMessage
from email.utils import make_msgid

from flask import current_app, render_template

from portal.extensions import db
from portal.infra.transactions import defer
from portal.models import EmailMessage, Tenant, utcnow


def send_email(to: str, subject: str, template: str, tenant: Tenant | None = None, **context) -> EmailMessage:
    """Queue an email rendered from ``templates/email/<template>.txt|.html``."""
    context.setdefault("base_url", current_app.config["PUBLIC_BASE_URL"])
    message = EmailMessage(
        tenant_id=tenant.tenant_id if tenant else None,
        # Stored lower-case like every account email, so the outbox finds it by address.
        to=to.strip().lower(),
        subject=subject,
        text_body=render_template(f"email/{template}.txt", **context),
        html_body=render_template(f"email/{template}.html", **context),
    )
    db.session.add(message)
    db.session.flush()
    defer("jobs.email.deliver_email", message.id, queue="email")
    return message


def deliver(message: EmailMessage) -> None:
    """SMTP when MAIL_SERVER is set, otherwise the message stays readable in the outbox."""
    config = current_app.config
    message.attempts += 1
    if not config["MAIL_SERVER"]:
        message.status = "outbox"
        message.sent_at = utcnow()
        return
    mime = MimeMessage()
    mime["From"] = config["MAIL_DEFAULT_SENDER"]
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Message-ID"] = make_msgid(domain="portal.local")
    mime.set_content(message.text_body)
    mime.add_alternative(message.html_body, subtype="html")
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=15) as smtp:
        if config["MAIL_USE_TLS"]:
            smtp.starttls()
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        smtp.send_message(mime)
    message.status = "sent"
    message.sent_at = utcnow()
