from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField
from wtforms.validators import DataRequired, NumberRange, Optional

from portal.forms import email_field
from portal.invitations.services import MAX_EXPIRY_DAYS
from portal.models import INVITABLE_ROLES

ROLE_CHOICES = [(role, role.capitalize()) for role in INVITABLE_ROLES]


class InviteForm(FlaskForm):
    email = email_field()
    role = SelectField("Role", choices=ROLE_CHOICES, default="developer")
    expires_in_days = IntegerField(
        "Expires in (days)", default=7, validators=[Optional(), NumberRange(min=1, max=MAX_EXPIRY_DAYS)]
    )


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class ConfirmForm(FlaskForm):
    """CSRF only: the button itself is the confirmation."""


class TransferOwnershipForm(FlaskForm):
    # The route looks the id up within the tenant (another tenant's member is a 404, like every
    # other object id), so the choice list is for display only.
    new_owner = SelectField("New owner", validators=[DataRequired()], choices=[], validate_choice=False)
    password = PasswordField("Your password", validators=[DataRequired()])
