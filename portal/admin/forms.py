from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from portal.models import SUSPENSION_REASONS


class SuspendForm(FlaskForm):
    reason = SelectField("Reason", choices=list(SUSPENSION_REASONS.items()), validators=[DataRequired()])
    note = TextAreaField("Note to the customer", validators=[Length(max=1000)])
    notify = BooleanField("Email the customer's contact", default=True)


class ActivateForm(FlaskForm):
    """CSRF only."""


class OperatorTokenForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired("Give the token a name."), Length(max=100, message="Use at most 100 characters.")],
        description="The program that will use it, e.g. “billing sync”.",
    )


class RevokeTokenForm(FlaskForm):
    """CSRF only: the confirmation button is the answer."""
