from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length

from portal.forms import new_password_field


class AcceptAsNewUserForm(FlaskForm):
    name = StringField("Your name", validators=[Length(max=120)])
    password = new_password_field("Choose a password")


class AcceptAsMemberForm(FlaskForm):
    """Just the CSRF token: a signed-in person confirms joining."""
