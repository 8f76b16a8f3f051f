"""Forms for the Credentials page: one per provider, each with fields that fit its secret.

The field names match the validation's ``errors[].field`` where they can, so each message
lands beside its own field. Every form has a prefix, so three forms share one page.
"""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal.credentials.services import MAX_NAME
from portal.credentials.validation import AWS_REGIONS, MAX_PAYLOAD_CHARS

# The field's checks are the service's (validation.py): the form only carries the values.
NAME_DESCRIPTION = "How you will recognise it later, e.g. “Billing export”."


class _ProviderForm(FlaskForm):
    """A provider's form: the name, then the provider's own fields under its prefix."""

    provider: str
    SECRET_FIELDS: tuple[str, ...]

    credential_name = StringField(
        "Name",
        validators=[Length(max=MAX_NAME, message=f"Use at most {MAX_NAME} characters.")],
        description=NAME_DESCRIPTION,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, prefix=self.provider, **kwargs)


class GcpCredentialForm(_ProviderForm):
    provider = "gcp"
    # Every GCP complaint is about the key file's contents: shown beside the JSON input used.
    JSON_FIELDS = ("credentials", "type", "project_id", "client_email", "private_key", "token_uri")
    SECRET_FIELDS = ("key_json",)
    # The validator names the key file's own JSON members (the API's words); a person reads these.
    FIELD_NAMES = {
        "type": "The key file's type",
        "project_id": "The key file's project ID",
        "client_email": "The key file's client email",
        "private_key": "The key file's private key",
        "token_uri": "The key file's token URI",
    }

    key_json = TextAreaField(
        "Service account key (JSON)",
        validators=[Optional(), Length(max=MAX_PAYLOAD_CHARS, message="The key file is too large.")],
        description="Paste the key file's contents, or upload the file below.",
    )
    key_file = FileField("…or upload the key file (.json)")

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        upload = self.key_file.data
        if not (self.key_json.data or "").strip() and not (upload and getattr(upload, "filename", "")):
            self.key_json.errors = list(self.key_json.errors or []) + [
                "Paste the service account key file's contents here, or upload the file."
            ]
            return False
        return valid

    def key_text(self) -> tuple[str, str]:
        """(the key file's text, the form field it came from); an upload wins over a paste."""
        upload = self.key_file.data
        if upload and getattr(upload, "filename", ""):
            raw = upload.read(MAX_PAYLOAD_CHARS + 1)
            try:
                return raw.decode("utf-8-sig"), "key_file"
            except UnicodeDecodeError:
                return "\x00", "key_file"  # not JSON: the validator says so on the upload field
        return self.key_json.data or "", "key_json"

    def payload(self) -> tuple[str, dict[str, str]]:
        text, source = self.key_text()
        self._json_source = source
        return text, {field: source for field in self.JSON_FIELDS}


class AwsCredentialForm(_ProviderForm):
    provider = "aws"
    SECRET_FIELDS = ("aws_secret_access_key",)

    aws_access_key_id = StringField("Access key ID", description="AKIA… or ASIA…, 20 characters.")
    aws_secret_access_key = PasswordField("Secret access key", description="40 characters. It is never shown again.")
    region = SelectField(
        "Region",
        choices=[SelectChoice("", "Choose a region")] + [SelectChoice(r, r) for r in sorted(AWS_REGIONS)],
        validate_choice=False,
    )
    role_arn = StringField(
        "Role ARN (optional)", description="arn:aws:iam::123456789012:role/RoleName, to assume a role."
    )

    def payload(self) -> tuple[dict, dict[str, str]]:
        values = {
            "aws_access_key_id": (self.aws_access_key_id.data or "").strip(),
            "aws_secret_access_key": self.aws_secret_access_key.data or "",
            "region": self.region.data or "",
        }
        if (self.role_arn.data or "").strip():
            values["role_arn"] = self.role_arn.data.strip()
        return values, {}


class AzureCredentialForm(_ProviderForm):
    provider = "azure"
    SECRET_FIELDS = ("client_secret",)

    tenant_id = StringField("Tenant (directory) ID", description="A GUID.")
    client_id = StringField("Client (application) ID", description="A GUID.")
    subscription_id = StringField("Subscription ID", description="A GUID.")
    client_secret = PasswordField("Client secret", description="It is never shown again.")

    def payload(self) -> tuple[dict, dict[str, str]]:
        values = {
            field: (getattr(self, field).data or "").strip() for field in ("tenant_id", "client_id", "subscription_id")
        }
        values["client_secret"] = self.client_secret.data or ""
        return values, {}


ADD_FORMS = {"gcp": GcpCredentialForm, "aws": AwsCredentialForm, "azure": AzureCredentialForm}


def _in_words(form, field: str, message: str) -> str:
    """The validator's message with the API's field name (``aws_access_key_id``) swapped for the
    name the person sees on the form (``Access key ID``)."""
    if not message.startswith(field):
        return message
    named = getattr(form, "FIELD_NAMES", {}).get(field)
    if named is None and field in form._fields:
        named = form._fields[field].label.text.removesuffix(" (optional)")
    return f"{named}{message[len(field) :]}" if named else message


def apply_credential_errors(form, errors: list[dict[str, str]], aliases: dict[str, str]) -> None:
    """Each failing field's message beside that field; a field the form lacks goes on top."""
    for error in errors:
        name = aliases.get(error["field"], error["field"])
        field = form._fields.get(name)
        message = _in_words(form, error["field"], error["message"])
        if field is not None and name not in ("csrf_token",):
            field.errors = list(field.errors or []) + [message]
        else:
            form.form_errors.append(message)


def forget_secrets(form) -> None:
    """After a failure the page is shown again: never with the secret filled in."""
    for name in form.SECRET_FIELDS:
        form[name].data = ""
        form[name].raw_data = []


class RenameCredentialForm(FlaskForm):
    credential_name = StringField("New name", validators=[Length(max=MAX_NAME)])
