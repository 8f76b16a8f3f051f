"""Form pieces shared by several areas."""

from datetime import UTC

from wtforms import DateTimeLocalField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional

from portal.security import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH


def email_field(label: str = "Email") -> StringField:
    return StringField(label, validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])


def new_password_field(label: str = "Password") -> PasswordField:
    return PasswordField(
        label,
        validators=[DataRequired(), Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH)],
        description=f"At least {PASSWORD_MIN_LENGTH} characters. A passphrase is best.",
    )


def required_text(
    label: str, missing: str, max_length: int, description: str = "", field=StringField, too_long: str | None = None
):
    """A text field that must be filled in, up to ``max_length`` characters, each refusal in
    words (``missing``; ``too_long``, by default "Use at most N characters.")."""
    return field(
        label,
        validators=[
            DataRequired(missing),
            Length(max=max_length, message=too_long or f"Use at most {max_length} characters."),
        ],
        description=description,
    )


def optional_text(label: str, max_length: int, description: str, field=StringField):
    """A text field that may stay empty, up to ``max_length`` characters."""
    return field(label, validators=[Optional(), Length(max=max_length)], description=description)


def apply_service_error(form, error) -> None:
    """Show a service's complaint beside the field it names (or at the top of the form)."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = list(field.errors or []) + [error.message]
    else:
        form.form_errors.append(error.message)


def utc_instant_field(
    label: str, example: str, description: str, leave_blank: str = "leave it blank"
) -> DateTimeLocalField:
    """An optional instant typed into a datetime-local input and read as UTC (the label says
    so): pages show times in the viewer's timezone, but the operator's inputs are UTC."""
    return DateTimeLocalField(
        f"{label} (UTC)",
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"],
        tz=UTC,
        invalid_value_message=f"Enter a date and time such as {example} (UTC), or {leave_blank}.",
        validators=[Optional()],
        description=description,
    )
