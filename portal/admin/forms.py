from datetime import timedelta
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from portal.billing.credits import MAX_AMOUNT
from portal.billing.credits import REASON_MAX as CREDIT_REASON_MAX
from portal.billing.invoices import PAYMENT_REFERENCE_MAX
from portal.billing.invoices import REASON_MAX as INVOICE_REASON_MAX
from portal.forms import optional_text, required_text, utc_instant_field
from portal.models import SUSPENSION_REASONS, utcnow

# A run far in the future would issue years of invoices at once; more than this is a typo.
RUN_AHEAD_LIMIT = timedelta(days=366)
VOID_REASON_MAX = INVOICE_REASON_MAX
MAX_CREDIT = MAX_AMOUNT // 100  # in major units


class SuspendForm(FlaskForm):
    reason = SelectField("Reason", choices=list(SUSPENSION_REASONS.items()), validators=[DataRequired()])
    note = TextAreaField("Note to the customer", validators=[Length(max=1000)])
    notify = BooleanField("Email the customer's contact", default=True)


class ActivateForm(FlaskForm):
    # The customer was told of the suspension; by default they hear that it is over too.
    notify = BooleanField("Email the customer's contact", default=True)


class ExternalIdForm(FlaskForm):
    external_id = optional_text(
        "External id",
        100,
        "Your own id for this customer (e.g. cust_12345); events, entitlement checks and "
        "credits accept it in place of the tenant id. Empty: none.",
    )


class OperatorTokenForm(FlaskForm):
    name = required_text("Name", "Give the token a name.", 100, "The program that will use it, e.g. “billing sync”.")


class RevokeTokenForm(FlaskForm):
    """CSRF only: the confirmation button is the answer."""


class BillingRunForm(FlaskForm):
    as_of = utc_instant_field(
        "As of",
        "2026-01-31T00:00",
        "Blank means now. Every subscription whose period ended by then is renewed and invoiced; "
        "a future instant only previews what would be billed (unless the test clock is on).",
        leave_blank="leave it blank for now",
    )

    def validate_as_of(self, field):
        if field.data is not None and field.data > utcnow() + RUN_AHEAD_LIMIT:
            raise ValidationError("Choose a date at most a year from now: a later one would invoice years ahead.")


class MarkPaidForm(FlaskForm):
    reference = required_text(
        "Payment reference",
        "Give the payment reference, e.g. the bank transfer id.",
        PAYMENT_REFERENCE_MAX,
        "The bank transfer id or whatever identifies the payment.",
    )


def _invoice_reason(missing: str, max_length: int) -> TextAreaField:
    return required_text(
        "Reason", missing, max_length, "Kept with the invoice and in the tenant's activity log.", TextAreaField
    )


class VoidInvoiceForm(FlaskForm):
    reason = _invoice_reason("Say why the invoice is voided.", VOID_REASON_MAX)


class UncollectibleInvoiceForm(FlaskForm):
    reason = _invoice_reason("Say why the invoice cannot be collected.", INVOICE_REASON_MAX)


def _positive_cents(form, field):
    if field.data is None:
        return
    if field.data <= 0:
        raise ValidationError("Enter an amount more than zero.")
    if field.data != field.data.quantize(Decimal("0.01")):
        raise ValidationError("Use at most two decimal places (whole cents).")
    if field.data > MAX_CREDIT:
        raise ValidationError(f"Enter at most {MAX_CREDIT:,}.")


class CreditForm(FlaskForm):
    """A deduction; the grant adds an expiry. ``confirmed`` is set by the confirmation step."""

    amount = DecimalField(
        "Amount",
        places=2,
        validators=[InputRequired("Enter an amount, e.g. 25.00."), _positive_cents],
        description="In major units of the currency, e.g. 25.00.",
    )
    currency = StringField(
        "Currency", validators=[DataRequired(), Length(min=3, max=3, message="Use a three-letter code such as USD.")]
    )
    reason = TextAreaField(
        "Reason",
        validators=[DataRequired("Say why (it is kept in the ledger)."), Length(max=CREDIT_REASON_MAX)],
        description="Shown in the tenant's credit ledger.",
    )
    confirmed = HiddenField(default="")

    @property
    def cents(self) -> int:
        return int(self.data["amount"] * 100)


class CreditGrantForm(CreditForm):
    expires_at = utc_instant_field("Expires", "2026-12-31T23:59", "Blank: the credit never expires.")

    def validate_expires_at(self, field):
        if field.data is not None and field.data <= utcnow():
            raise ValidationError("Choose a moment in the future.")


class MeterForm(FlaskForm):
    """A meter as the catalog file writes it; the filter as seed 003's JSON."""

    key = StringField(
        "Feature key",
        validators=[DataRequired(), Length(max=64)],
        description="The plan feature it measures, e.g. pipeline_runs.",
    )
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    event_name = StringField(
        "Event name",
        validators=[DataRequired(), Length(max=128)],
        description="The eventName the product backend posts, e.g. pipeline_run.",
    )
    aggregation = SelectField(
        "Aggregation", choices=[(a, a) for a in ("count", "sum", "unique_count", "max", "min", "avg", "first", "last")]
    )
    property = optional_text("Property", 128, "A key of the event's properties; empty: the event's quantity.")
    filter = optional_text(
        "Filter (JSON)",
        20_000,
        '{"conditions": [{"criteria": [{"field": "status", "operator": "equals", '
        '"value": "ok"}]}]} — conditions OR\'ed, criteria AND\'ed. Empty: every event.',
        TextAreaField,
    )


class CouponForm(FlaskForm):
    """A coupon; the rules (one of percent or amount, a repeating coupon's periods...) are the
    service's, shown beside the field they concern."""

    name = required_text(
        "Name", "Give the coupon a name.", 100, "Printed on the invoice's discount line, e.g. “Spring offer”."
    )
    percent_off = DecimalField(
        "Percentage off",
        places=2,
        validators=[Optional()],
        description="e.g. 20 for 20 %; leave it blank for an amount off.",
    )
    amount_off = DecimalField(
        "Amount off",
        places=2,
        validators=[Optional(), _positive_cents],
        description="In major units, e.g. 10.00; leave it blank for a percentage.",
    )
    currency = StringField(
        "Currency of the amount",
        validators=[Optional(), Length(min=3, max=3, message="Use a three-letter code such as USD.")],
        description="Only for an amount off: it applies to plans billed in this currency.",
    )
    duration = SelectField(
        "Duration",
        choices=[
            SelectChoice("once", "Once: one billing period"),
            SelectChoice("repeating", "Repeating: a number of billing periods"),
            SelectChoice("forever", "For ever"),
        ],
        default="once",
        invalid_choice_message="Choose a duration.",
    )
    duration_periods = IntegerField(
        "Billing periods", validators=[Optional()], description="Only for a repeating coupon, e.g. 3."
    )
    plan_keys = SelectMultipleField(
        "Only for plans", choices=[], validate_choice=False, description="None chosen: every plan."
    )
    redeem_by = utc_instant_field("Redeem by", "2027-12-31T23:59", "Blank: it can be redeemed until deactivated.")
    max_redemptions = IntegerField(
        "Maximum redemptions", validators=[Optional()], description="Blank: no limit. Counts every tenant."
    )

    @property
    def amount_cents(self) -> int | None:
        return int(self.amount_off.data * 100) if self.amount_off.data is not None else None


class PromotionCodeForm(FlaskForm):
    code = required_text(
        "Code",
        "Give the code customers will type.",
        40,
        "3 to 40 letters, digits, - or _; customers may type it in any case.",
    )
    expires_at = utc_instant_field("Expires", "2027-12-31T23:59", "Blank: the coupon's own expiry only.")
    max_redemptions = IntegerField(
        "Maximum redemptions", validators=[Optional()], description="Blank: only the coupon's limit."
    )


class ApplyDiscountForm(FlaskForm):
    """The operator applies a coupon (or a promotion code) to a tenant's subscription."""

    # Typed, not chosen from a list: the tenant's page stays within its statement budget, and the
    # Coupons page lists every coupon with its ID.
    coupon_id = optional_text("Coupon ID", 40, "As listed on the Coupons page (coup_…).")
    code = optional_text("or a promotion code", 40, "Instead of choosing a coupon.")
    replace = BooleanField("Replace the tenant's current discount")
