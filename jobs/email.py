import logging

from portal.extensions import db
from portal.infra.transactions import commit
from portal.mail import deliver
from portal.models import EmailMessage

log = logging.getLogger(__name__)


def deliver_email(message_id: str) -> None:
    """Send one queued email; a message already sent is left alone, so a rerun is safe."""
    message = db.session.get(EmailMessage, message_id)
    if message is None or message.status in ("sent", "outbox"):
        return
    try:
        deliver(message)
    except Exception as error:  # SMTP down or refused: record it; RQ's Retry tries again.
        message.status = "failed"
        message.last_error = f"{type(error).__name__}: {error}"
        commit()
        log.warning("Email %s to SMTP failed: %s", message.id, message.last_error)
        raise
    commit()
