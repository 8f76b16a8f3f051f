from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length

from portal.models import SUSPENSION_REASONS


class SuspendForm(FlaskForm):
    reason = SelectField("Reason", choices=list(SUSPENSION_REASONS.items()), validators=[DataRequired()])
    note = TextAreaField("Note to the customer", validators=[Length(max=1000)])
    notify = BooleanField("Email the customer's contact", default=True)


class ActivateForm(FlaskForm):
    """CSRF only."""
