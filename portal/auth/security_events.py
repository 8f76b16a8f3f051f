"""Security events on a person's account: written to the activity log of every tenant they belong
to (so owners see them) and told to the person by email, so a change they did not make is noticed.
"""

from portal import audit
from portal.access import Actor
from portal.mail import send_email
from portal.models import User

# action -> what the email says happened (its subject is "Security: <this>")
EVENTS = {
    "user.password_changed": "your password was changed",
    "user.email_change_requested": "a change of your sign-in email was requested",
    "user.email_changed": "your sign-in email was changed",
    "user.sessions_ended": "your other sessions were signed out",
    "user.totp_enabled": "two-factor authentication (authenticator app) was turned on",
    "user.totp_disabled": "two-factor authentication (authenticator app) was turned off",
    "user.passkey_added": "a passkey was added",
    "user.passkey_removed": "a passkey was removed",
    "user.recovery_code_used": "a recovery code was used",
    "user.recovery_codes_regenerated": "new recovery codes were made",
    "user.two_factor_reset_by_operator": "an operator switched off your two-factor authentication",
    "user.sign_in_new_device": "someone signed in from a new device",
    "user.sign_in_held": "sign-in was paused after many wrong passwords",
}


def record(actor: Actor, user: User, action: str, to: str | None = None, email: bool = True, **details) -> None:
    """Audit ``action`` on ``user`` in each of their live tenants (or once, tenant-less) and email them.

    ``to`` overrides the address (e.g. the old address after an email change).
    """
    tenants = [m.tenant for m in user.memberships if m.tenant.status != "cancelled"] or [None]
    for tenant in tenants:
        audit.record(actor, action, tenant, "user", user.id, **details)
    if email:
        what = EVENTS[action]
        send_email(
            to or user.email,
            f"Security: {what}",
            "security_event",
            user=user,
            what=what,
            ip=actor.ip,
            details=details,
        )
