from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from portal.billing.money import format_money
from portal.billing.plans import list_plans
from portal.forms import email_field, new_password_field
from portal.tenants.services import TENANT_ID_PATTERN

DEFAULT_PLAN = "starter"


def plan_choices() -> list[SelectChoice]:
    """The public plans, each with its price and any free trial, as sign-up offers them."""
    choices = []
    for plan in list_plans(public_only=True):
        version = plan.current_version
        label = f"{plan.name}: {format_money(version.price, version.currency)} / {version.interval}"
        if version.trial_days:
            label += f", {version.trial_days}-day free trial first"
        choices.append(SelectChoice(plan.key, label))
    return choices


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
    plan = RadioField(
        "Plan",
        choices=plan_choices,
        default=DEFAULT_PLAN,
        invalid_choice_message="Choose one of the plans listed.",
        description="You can change plan or cancel at any time on the Billing page.",
    )


class SignInForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class ForgotPasswordForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    password = new_password_field("New password")


class AccountForm(FlaskForm):
    timezone = SelectField(
        "Timezone",
        description="Dates and times everywhere in the portal are shown in this timezone. "
        "Billing itself always runs on UTC instants.",
        validate_choice=False,  # the service says what is wrong with an unknown zone
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    new_password = new_password_field("New password")
    new_password_confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new_password", message="The two new passwords are not the same.")],
    )


class ChangeEmailForm(FlaskForm):
    new_email = email_field("New email")
    # Named as the service names it (confirm_password complains about "password").
    password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
