import re

from flask_wtf import FlaskForm
from wtforms import BooleanField, FieldList, Form, FormField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.forms import email_field

METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
BLANK_METADATA_ROWS = 3


class MetadataEntryForm(Form):
    key = StringField("Key", validators=[Optional(), Length(max=40)])
    value = StringField("Value", validators=[Length(max=500)])

    def validate_key(self, field):
        if field.data and not METADATA_KEY.match(field.data):
            raise ValidationError("Keys use letters, digits, '.', '_' or '-' (at most 40).")


class ProfileForm(FlaskForm):
    company_name = StringField("Company name", validators=[DataRequired(), Length(max=200)])
    contact_email = email_field("Contact email")
    metadata = FieldList(FormField(MetadataEntryForm), min_entries=0, max_entries=60)

    def validate_metadata(self, field):
        keys = [entry.form.key.data for entry in field.entries if entry.form.key.data]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValidationError(f"Each key may appear once: {', '.join(duplicates)}.")
        for entry in field.entries:
            if entry.form.value.data and not entry.form.key.data:
                raise ValidationError("A value needs a key.")

    def metadata_dict(self) -> dict:
        return {e.form.key.data: e.form.value.data or "" for e in self.metadata.entries if e.form.key.data}


class DeleteTenantForm(FlaskForm):
    confirm_tenant_id = StringField("Type the account ID to confirm", validators=[DataRequired(), Length(max=50)])


class TwoFactorPolicyForm(FlaskForm):
    require_two_factor = BooleanField(
        "Require two-factor authentication for every member",
        description="Members without an authenticator app or a passkey are sent to set one up and "
        "cannot use this account until they have.",
    )
