from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from portal.forms import email_field, new_password_field
from portal.tenants.services import TENANT_ID_PATTERN


class SignUpForm(FlaskForm):
    company_name = StringField("Company name", validators=[DataRequired(), Length(max=200)])
    tenant_id = StringField(
        "Account ID",
        validators=[
            DataRequired(),
            Regexp(TENANT_ID_PATTERN, message="Use 3 to 50 letters, digits or underscores."),
        ],
        description="Letters, digits and underscores, 3 to 50. It appears in your API keys and cannot change.",
    )
    name = StringField("Your name", validators=[Length(max=120)])
    email = email_field("Work email")
    password = new_password_field()


class SignInForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class ForgotPasswordForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    password = new_password_field("New password")
