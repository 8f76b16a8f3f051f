from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectMultipleField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import StopValidation

from portal.api_keys.services import DEFAULT_EXPIRY_DAYS, MAX_EXPIRY_DAYS
from portal.forms import required_text
from portal.models import API_SCOPES, INERT_SCOPES

NAME_MAX_LENGTH = 100
REASON_MAX_LENGTH = 500
# The scopes that guard something; ticked at first: the read-only one (least privilege).
OFFERED_SCOPES = {scope: grants for scope, grants in API_SCOPES.items() if scope not in INERT_SCOPES}
DEFAULT_SCOPES = ["usage:read"]


def _expiry(form, field) -> None:
    """A whole number of days in range, unless the key never expires (then the box is ignored)."""
    field.errors[:] = []  # WTForms' own "Not a valid integer value." is replaced by one clear message
    if form.never_expires.data:
        raise StopValidation()
    if field.data is None:
        typed = (field.raw_data or [""])[0].strip()
        raise StopValidation(
            f"Enter a whole number of days from 1 to {MAX_EXPIRY_DAYS}."
            if typed
            else "Enter a number of days, or tick “Never expires”."
        )
    if not 1 <= field.data <= MAX_EXPIRY_DAYS:
        raise StopValidation(f"Enter a number of days from 1 to {MAX_EXPIRY_DAYS}.")


class CreateKeyForm(FlaskForm):
    # Field names match the service's ValidationFailed.field, so its messages land beside them.
    key_name = required_text(
        "Name",
        "Give the key a name you will recognise later.",
        NAME_MAX_LENGTH,
        "Where the key is used, e.g. “CI pipeline”.",
    )
    # Which scopes exist is the service's rule (check_scopes): no choice validation here.
    scopes = SelectMultipleField(
        "Scopes",
        choices=[SelectChoice(scope, grants) for scope, grants in OFFERED_SCOPES.items()],
        default=DEFAULT_SCOPES,
        validate_choice=False,
    )
    expires_in_days = IntegerField(
        "Expires after (days)",
        default=DEFAULT_EXPIRY_DAYS,
        validators=[_expiry],
    )
    never_expires = BooleanField("Never expires")

    @property
    def expiry(self) -> int | None:
        """Days until the key expires; None for a key that never does."""
        return None if self.never_expires.data else self.expires_in_days.data


class RevokeKeyForm(FlaskForm):
    reason = required_text("Reason", "Say why the key is revoked.", REASON_MAX_LENGTH)
