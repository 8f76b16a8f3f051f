"""Forms of the two-factor pages (account, sign-in's second step, the operator's reset)."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

# A WebAuthn answer is a few hundred bytes of JSON; a generous cap keeps junk out.
CREDENTIAL_MAX = 20_000


def code_field(label: str = "Code", description: str | None = None) -> StringField:
    return StringField(
        label,
        validators=[DataRequired(message="Enter the code."), Length(max=40, message="That is not a code.")],
        description=description,
    )


def password_field() -> PasswordField:
    return PasswordField("Your password", validators=[DataRequired(message="Enter your password."), Length(max=1024)])


class ConfirmTotpForm(FlaskForm):
    code = code_field("Code from the app", "The 6 digits your authenticator app shows now.")


class SecondStepForm(FlaskForm):
    code = code_field("Code", "The 6 digits from your authenticator app, or one of your recovery codes.")


class DisableTotpForm(FlaskForm):
    password = password_field()
    code = code_field("Code from the app, or a recovery code")


class RegenerateCodesForm(FlaskForm):
    password = password_field()
    code = code_field("Code from the app, or a recovery code")


class AddPasskeyForm(FlaskForm):
    name = StringField(
        "Name of this passkey",
        validators=[DataRequired(message="Give the passkey a name, such as “Work laptop”."), Length(max=100)],
        description="So you can tell your passkeys apart, e.g. “Work laptop” or “Phone”.",
    )
    credential = HiddenField(validators=[Length(max=CREDENTIAL_MAX)])


class PasskeyAnswerForm(FlaskForm):
    credential = HiddenField(validators=[Length(max=CREDENTIAL_MAX)])


class RemovePasskeyForm(FlaskForm):
    password = password_field()


class OperatorResetForm(FlaskForm):
    reason = TextAreaField(
        "Reason",
        validators=[DataRequired(message="Say why (the person is told)."), Length(max=500)],
        description="Sent to the person and kept in the activity log of each of their accounts.",
    )
