"""Console: the outbox, every email the portal sent, and a sandboxed preview of each."""

from flask import make_response, request
from sqlalchemy import select

from portal.access import operator_required
from portal.admin.blueprint import bp
from portal.extensions import db
from portal.infra.pagination import paginate
from portal.mail import opened, outbox_shows_links
from portal.models import EmailMessage
from portal.web import render

# Rendered email HTML is untrusted-ish content: show it with scripts and forms disabled.
EMAIL_PREVIEW_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@bp.get("/outbox")
@operator_required
def outbox():
    """Every email the portal sent, newest first (the only inbox in embedded mode)."""
    recipient = request.args.get("to", "").strip()[:254]
    query = select(EmailMessage).order_by(EmailMessage.created_at.desc())
    if recipient:
        query = query.where(EmailMessage.to == recipient.lower())
    messages = paginate(query, request.args.get("page", 1, type=int), 25)
    return render("admin/outbox.html", messages=messages, recipient=recipient, shows_links=outbox_shows_links())


@bp.get("/outbox/<message_id>")
@operator_required
def outbox_message(message_id: str):
    # With SMTP, mail reaches people by SMTP: no operator reads a customer's live reset link here.
    message = opened(db.get_or_404(EmailMessage, message_id), reveal=outbox_shows_links())
    return render("admin/outbox_message.html", message=message, shows_links=outbox_shows_links())


@bp.get("/outbox/<message_id>/html")
@operator_required
def outbox_message_html(message_id: str):
    message = opened(db.get_or_404(EmailMessage, message_id), reveal=outbox_shows_links())
    response = make_response(message.html_body)
    response.headers["Content-Security-Policy"] = EMAIL_PREVIEW_CSP
    return response
