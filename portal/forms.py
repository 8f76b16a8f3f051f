"""Form pieces shared by several areas."""

from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length

from portal.security import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH


def email_field(label: str = "Email") -> StringField:
    return StringField(label, validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])


def new_password_field(label: str = "Password") -> PasswordField:
    return PasswordField(
        label,
        validators=[DataRequired(), Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH)],
        description=f"At least {PASSWORD_MIN_LENGTH} characters. A passphrase is best.",
    )


def apply_service_error(form, error) -> None:
    """Show a service's complaint beside the field it names (or at the top of the form)."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = list(field.errors or []) + [error.message]
    else:
        form.form_errors.append(error.message)
