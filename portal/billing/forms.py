"""Forms of the Billing pages: confirm a plan change (with its signed quote), cancel, billing
details, add a promotion code, and the billing emails a tenant wants."""

import re

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, ValidationError

from portal.billing.countries import COUNTRIES
from portal.billing.profile import LABELS, LIMITS, ProfileData
from portal.billing.tax_ids import KINDS
from portal.forms import required_text
from portal.models import CANCELLATION_REASONS

BLANK_TAX_ID_ROWS = 1

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
    code = required_text(
        "Promotion code",
        "Type the promotion code.",
        40,
        "As you received it; upper or lower case does not matter.",
        too_long="A promotion code has at most 40 characters.",
    )
    # Set by the preview step: the customer has seen the new price and confirms.
    confirmed = HiddenField(default="")


class TaxIdForm(Form):
    type = SelectField(
        "Kind",
        choices=[SelectChoice(kind.type, kind.label) for kind in KINDS.values()],
        default="eu_vat",
        invalid_choice_message="Choose one of the listed kinds of tax ID.",
    )
    value = StringField("Number", validators=[Length(max=60)])


def _text_field(name: str, description: str = "") -> StringField:
    return StringField(LABELS[name], validators=[Length(max=LIMITS[name])], description=description)


class BillingDetailsForm(FlaskForm):
    """The billing profile; the service checks every field (tax IDs by their check digits)."""

    legal_name = _text_field("legal_name", "As it should read on invoices; empty: the company name.")
    address_line1 = _text_field("address_line1")
    address_line2 = _text_field("address_line2")
    postal_code = _text_field("postal_code")
    city = _text_field("city")
    region = _text_field("region")
    country = SelectField(
        LABELS["country"],
        choices=[
            SelectChoice("", "Choose a country"),
            *(SelectChoice(code, name) for code, name in sorted(COUNTRIES.items(), key=lambda item: item[1])),
        ],
        default="",
        invalid_choice_message="Choose a country from the list.",
    )
    billing_email = StringField(
        LABELS["billing_email"],
        validators=[Length(max=254)],
        description="Invoices and receipts go here; empty: to the owner and admins.",
    )
    extra_recipients = TextAreaField(
        LABELS["extra_recipients"],
        validators=[Length(max=2000)],
        description="Up to 5 more email addresses that receive invoices, separated by commas or new lines.",
    )
    po_number = _text_field("po_number", "Printed on every invoice, if your finance team needs one.")
    tax_ids = FieldList(FormField(TaxIdForm), min_entries=0, max_entries=6)

    def profile_data(self) -> ProfileData:
        return ProfileData(
            **{name: getattr(self, name).data or "" for name in LIMITS},
            country=self.country.data or "",
            billing_email=self.billing_email.data or "",
            extra_recipients=[part for part in re.split(r"[,;\s]+", self.extra_recipients.data or "") if part],
            tax_ids=[
                {"type": entry.form.type.data, "value": entry.form.value.data}
                for entry in self.tax_ids.entries
                if (entry.form.value.data or "").strip()
            ],
        )
