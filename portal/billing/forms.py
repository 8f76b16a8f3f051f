"""Forms of the Billing pages: confirm a plan change (with its signed quote), cancel, add a
promotion code, and the billing emails a tenant wants."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from portal.models import CANCELLATION_REASONS

FEEDBACK_MAX_LENGTH = 2000


def _no_nul(form, field) -> None:
    # A NUL cannot be stored (PostgreSQL refuses it); say so instead of failing on save.
    if field.data and "\x00" in field.data:
        raise ValidationError("Remove the NUL character from the feedback; it cannot be stored.")


class ConfirmChangeForm(FlaskForm):
    # The preview's instant and figures, signed: confirming charges exactly what was shown.
    quote = HiddenField()


class CancelForm(FlaskForm):
    reason = SelectField(
        "Why are you cancelling?",
        choices=[
            SelectChoice("", "Prefer not to say"),
            *(SelectChoice(value, label) for value, label in CANCELLATION_REASONS.items()),
        ],
        default="",
        invalid_choice_message="Choose one of the listed reasons.",
    )
    feedback = TextAreaField(
        "Anything we could do better? (optional)",
        validators=[
            Length(max=FEEDBACK_MAX_LENGTH, message=f"Keep the feedback under {FEEDBACK_MAX_LENGTH:,} characters."),
            _no_nul,
        ],
    )
    when = RadioField(
        "When should it end?",
        choices=[SelectChoice("period_end", "At the end of the current period"), SelectChoice("now", "Immediately")],
        default="period_end",
        invalid_choice_message="Choose when the subscription ends.",
    )

    @property
    def at_period_end(self) -> bool:
        return self.when.data != "now"


class BillingEmailsForm(FlaskForm):
    """One switch per billing email that can be turned off (the receipt cannot)."""

    invoice_issued = BooleanField("Invoice issued", description="Each new invoice, with its PDF attached.")
    renewal_upcoming = BooleanField(
        "Upcoming renewal", description="Seven days before a yearly plan renews, with what it will cost."
    )
    trial_ending = BooleanField("Trial ending", description="Three days before a free trial ends.")
    cancellation_confirmed = BooleanField("Cancellation confirmed", description="When the subscription is cancelled.")
    plan_changed = BooleanField(
        "Plan changed", description="When the plan changes or a change is scheduled, with what it was charged."
    )


class PromotionCodeForm(FlaskForm):
    code = StringField(
        "Promotion code",
        validators=[
            DataRequired("Type the promotion code."),
            Length(max=40, message="A promotion code has at most 40 characters."),
        ],
        description="As you received it; upper or lower case does not matter.",
    )
    # Set by the preview step: the customer has seen the new price and confirms.
    confirmed = HiddenField(default="")
