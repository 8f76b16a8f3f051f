from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.webhooks.catalog import EVENT_TYPES


class EndpointForm(FlaskForm):
    # Field names match the service's ValidationFailed.field, so its messages land beside them.
    url = StringField(
        "Endpoint URL",
        validators=[DataRequired("Enter the URL that should receive the events.")],
        description="Where we POST each event, e.g. https://example.com/webhooks/portal.",
    )
    description = StringField(
        "Description",
        validators=[Length(max=200, message="Use at most 200 characters.")],
        description="Optional: what this endpoint is for.",
    )
    all_events = BooleanField("All events, including those added later", default=True)
    # Which events exist is the service's rule (check_event_types): no choice validation here.
    event_types = SelectMultipleField(
        "Events", choices=[SelectChoice(name, about) for name, about in EVENT_TYPES.items()], validate_choice=False
    )
    enabled = BooleanField("Enabled", default=True)

    @property
    def chosen_events(self) -> list[str]:
        return ["*"] if self.all_events.data else list(self.event_types.data or [])


class ActionForm(FlaskForm):
    """The buttons (test, rotate, resend, delete): only the CSRF token."""
