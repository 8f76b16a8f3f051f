"""Settings: the company profile, metadata, and deleting the account (owner only)."""

import pytest

from portal.extensions import db
from portal.models import AuditEvent, Membership, Tenant
from tests.conftest import HTMX, field_error


def tenant_row(app, tenant_id: str) -> Tenant:
    with app.app_context():
        return db.session.get(Tenant, tenant_id)


def profile(tenant, company_name=None, contact_email=None, metadata=()):
    """The profile form as the browser posts it; metadata is a list of (key, value) rows."""
    data = {
        "company_name": tenant.company_name if company_name is None else company_name,
        "contact_email": tenant.contact_email if contact_email is None else contact_email,
    }
    for index, (key, value) in enumerate(metadata):
        data[f"metadata-{index}-key"] = key
        data[f"metadata-{index}-value"] = value
    return data


@pytest.fixture
def tenant(make_tenant):
    return make_tenant(company_name="Settings Co")


# --- who may edit ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_can_change_company_name_and_contact_email(client, tenant, make_user, login, app, role):
    login(client, make_user(tenant, role=role))
    response = client.post("/settings", data=profile(tenant, "Renamed Ltd", "billing@renamed.example"))
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/settings")
    page = client.get("/settings").get_data(as_text=True)
    assert "Settings saved." in page
    assert 'value="Renamed Ltd"' in page
    assert 'value="billing@renamed.example"' in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.company_name, saved.contact_email) == ("Renamed Ltd", "billing@renamed.example")


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developer_and_viewer_see_the_form_disabled(client, tenant, make_user, login, role):
    login(client, make_user(tenant, role=role))
    response = client.get("/settings")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<fieldset disabled>" in page
    assert "Save settings" not in page
    assert "Only the owner and admins can change these settings." in page
    assert "Delete account" not in page


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developer_and_viewer_cannot_save_settings(client, tenant, make_user, login, app, role):
    login(client, make_user(tenant, role=role))
    response = client.post("/settings", data=profile(tenant, "Hijacked", metadata=[("k", "v")]))
    assert response.status_code == 403
    assert "Your role does not allow this." in response.get_data(as_text=True)
    saved = tenant_row(app, tenant.tenant_id)
    assert saved.company_name == "Settings Co"
    assert saved.metadata_json == {}


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/settings")
    assert response.status_code == 302
    assert "/signin" in response.headers["Location"]
    response = client.post("/settings", data={"company_name": "x"})
    assert response.status_code == 302
    assert "/signin" in response.headers["Location"]


def test_owner_sees_the_delete_section(client, tenant, make_user, login):
    login(client, make_user(tenant, role="owner"))
    page = client.get("/settings").get_data(as_text=True)
    assert "<fieldset disabled>" not in page
    assert "Delete this account" in page
    assert f'placeholder="{tenant.tenant_id}"' in page


def test_admin_does_not_see_the_delete_section(client, tenant, make_user, login):
    login(client, make_user(tenant, role="admin"))
    page = client.get("/settings").get_data(as_text=True)
    assert "Save settings" in page
    assert "Delete this account" not in page


# --- validation ------------------------------------------------------------------------


def test_invalid_contact_email_shows_message_beside_the_field_and_saves_nothing(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings", data=profile(tenant, "New Name", "not-an-email"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "contact_email") == "Invalid email address."
    # What was typed stays in the form.
    assert 'value="not-an-email"' in page
    assert 'value="New Name"' in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.company_name, saved.contact_email) == ("Settings Co", tenant.contact_email)


def test_blank_company_name_is_refused(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="admin"))
    response = client.post("/settings", data=profile(tenant, "   "))
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "company_name") == "This field is required."
    assert tenant_row(app, tenant.tenant_id).company_name == "Settings Co"


def test_edits_are_recorded_in_the_activity_log(client, tenant, make_user, login, app):
    admin = make_user(tenant, role="admin")
    login(client, admin)
    client.post("/settings", data=profile(tenant, "Logged Co", metadata=[("region", "eu")]))
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="tenant.updated").one()
        assert event.actor_label == admin.email
        assert event.details["changes"]["company_name"] == {"from": "Settings Co", "to": "Logged Co"}
        assert event.details["changes"]["metadata"]["to"] == {"region": "eu"}


def test_saving_unchanged_settings_records_no_event(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    assert client.post("/settings", data=profile(tenant)).status_code == 303
    with app.app_context():
        assert db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="tenant.updated").count() == 0


# --- metadata --------------------------------------------------------------------------


def test_metadata_can_be_added_edited_and_removed_by_clearing_the_key(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    rows = [("cost_center", "42"), ("region", "eu-west"), ("", "")]
    assert client.post("/settings", data=profile(tenant, metadata=rows)).status_code == 303
    assert tenant_row(app, tenant.tenant_id).metadata_json == {"cost_center": "42", "region": "eu-west"}

    page = client.get("/settings").get_data(as_text=True)
    # Saved entries come back in rows of their own, plus empty rows for new ones.
    assert 'name="metadata-0-key" type="text" value="cost_center"' in page
    assert 'name="metadata-1-key" type="text" value="region"' in page
    assert page.count('data-testid="metadata-row"') == 5

    # Edit one value, clear the other key (removes it), add a new one.
    rows = [("cost_center", "43"), ("", "eu-west"), ("team.owner", "ops")]
    response = client.post("/settings", data=profile(tenant, metadata=rows))
    # A value left without its key is refused: the user must clear both to remove a row.
    assert response.status_code == 422
    assert "A value needs a key." in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).metadata_json == {"cost_center": "42", "region": "eu-west"}

    rows = [("cost_center", "43"), ("", ""), ("team.owner", "ops")]
    assert client.post("/settings", data=profile(tenant, metadata=rows)).status_code == 303
    assert tenant_row(app, tenant.tenant_id).metadata_json == {"cost_center": "43", "team.owner": "ops"}

    # A key with an empty value is kept, with an empty value.
    rows = [("cost_center", "43"), ("team.owner", "")]
    assert client.post("/settings", data=profile(tenant, metadata=rows)).status_code == 303
    assert tenant_row(app, tenant.tenant_id).metadata_json == {"cost_center": "43", "team.owner": ""}


@pytest.mark.parametrize("bad_key", ["has space", "semi;colon", "ünïcode", "k" * 41])
def test_metadata_key_with_invalid_characters_is_refused(client, tenant, make_user, login, app, bad_key):
    login(client, make_user(tenant, role="owner"))
    rows = [("good_key", "1"), (bad_key, "2")]
    response = client.post("/settings", data=profile(tenant, "Changed Too", metadata=rows))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "metadata-1-key").startswith(("Keys use letters, digits", "Field cannot be longer"))
    assert field_error(page, "metadata-0-key") == ""
    saved = tenant_row(app, tenant.tenant_id)
    assert saved.metadata_json == {}
    assert saved.company_name == "Settings Co"


def test_duplicate_metadata_keys_are_refused(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    rows = [("env", "prod"), ("other", "x"), ("env", "staging")]
    response = client.post("/settings", data=profile(tenant, metadata=rows))
    assert response.status_code == 422
    assert "Each key may appear once: env." in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).metadata_json == {}


def test_metadata_value_without_key_is_refused(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings", data=profile(tenant, "Other Name", metadata=[("", "orphan value")]))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "A value needs a key." in page
    assert 'value="orphan value"' in page
    saved = tenant_row(app, tenant.tenant_id)
    assert (saved.company_name, saved.metadata_json) == ("Settings Co", {})


def test_too_long_metadata_value_is_refused(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings", data=profile(tenant, metadata=[("notes", "x" * 501)]))
    assert response.status_code == 422
    assert (
        field_error(response.get_data(as_text=True), "metadata-0-value")
        == "Field cannot be longer than 500 characters."
    )
    assert tenant_row(app, tenant.tenant_id).metadata_json == {}


def test_more_than_fifty_metadata_entries_are_refused(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    rows = [(f"key_{i}", str(i)) for i in range(51)]
    response = client.post("/settings", data=profile(tenant, metadata=rows))
    assert response.status_code == 422
    assert "At most 50 metadata entries." in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).metadata_json == {}


def test_metadata_rows_beyond_the_form_limit_are_refused_not_dropped(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    rows = [(f"key_{i}", str(i)) for i in range(65)]
    response = client.post("/settings", data=profile(tenant, metadata=rows))
    assert response.status_code == 422
    assert tenant_row(app, tenant.tenant_id).metadata_json == {}


# --- htmx ------------------------------------------------------------------------------


def test_htmx_post_with_errors_returns_only_the_form_fragment(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings", data=profile(tenant, contact_email="nope"), headers=HTMX)
    # htmx swaps only 2xx responses, so the fragment comes back with 200.
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<form method="post" action="/settings" id="profile-form"')
    assert "<html" not in page and "<nav" not in page
    assert field_error(page, "contact_email") == "Invalid email address."
    assert "HX-Request" in response.headers.get("Vary", "")
    assert tenant_row(app, tenant.tenant_id).contact_email == tenant.contact_email


def test_htmx_post_that_succeeds_redirects_the_browser(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings", data=profile(tenant, "Htmx Co"), headers=HTMX)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/settings"
    assert tenant_row(app, tenant.tenant_id).company_name == "Htmx Co"


# --- deleting the account --------------------------------------------------------------


def test_admin_cannot_delete_the_account(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="admin"))
    response = client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id})
    assert response.status_code == 403
    assert tenant_row(app, tenant.tenant_id).status == "active"


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_other_roles_cannot_delete_the_account(client, tenant, make_user, login, app, role):
    login(client, make_user(tenant, role=role))
    response = client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id})
    assert response.status_code == 403
    assert tenant_row(app, tenant.tenant_id).status == "active"


@pytest.mark.parametrize("typed", ["wrong_id", "", "  ", None, "x" * 60])
def test_delete_with_wrong_or_missing_typed_id_says_what_to_type_and_changes_nothing(
    client, tenant, make_user, login, app, typed
):
    login(client, make_user(tenant, role="owner"))
    data = {} if typed is None else {"confirm_tenant_id": typed}
    response = client.post("/settings/delete", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "confirm_tenant_id") == f"Type {tenant.tenant_id} exactly to confirm."
    assert tenant_row(app, tenant.tenant_id).status == "active"
    assert client.get("/overview").status_code == 200


def test_delete_with_the_id_in_other_case_changes_nothing(client, tenant, make_user, login, app):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id.upper()})
    assert response.status_code == 422
    assert f"Type {tenant.tenant_id} exactly to confirm." in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).status == "active"


def test_htmx_delete_with_wrong_id_returns_only_the_delete_form(client, tenant, make_user, login):
    login(client, make_user(tenant, role="owner"))
    response = client.post("/settings/delete", data={"confirm_tenant_id": "nope"}, headers=HTMX)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<form method="post" action="/settings/delete" id="delete-form"')
    assert f"Type {tenant.tenant_id} exactly to confirm." in page
    assert 'value="nope"' in page


def test_owner_deleting_the_account_cancels_it_and_every_member_loses_access(client, tenant, make_user, login, app):
    owner = make_user(tenant, role="owner")
    admin = make_user(tenant, role="admin")
    viewer = make_user(tenant, role="viewer")
    admin_client, viewer_client = app.test_client(), app.test_client()
    login(admin_client, admin)
    login(viewer_client, viewer)
    login(client, owner)
    client.post("/settings", data=profile(tenant, metadata=[("keep", "me")]))

    response = client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/signin")
    assert "was deleted" in client.get("/signin").get_data(as_text=True)

    saved = tenant_row(app, tenant.tenant_id)
    assert saved.status == "cancelled"
    assert saved.cancelled_at is not None

    # Every member, the owner included, is signed out on the server.
    for browser in (client, admin_client, viewer_client):
        response = browser.get("/overview")
        assert response.status_code == 302
        assert "/signin" in response.headers["Location"]
    # Signing in again leads to the no-account page, not into the deleted account.
    login(admin_client, admin)
    response = admin_client.get("/overview")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/no-account")
    assert "You are not in any account" in admin_client.get("/no-account").get_data(as_text=True)
    assert admin_client.get("/settings").status_code == 302
    assert admin_client.post("/settings", data=profile(tenant, "Zombie")).status_code == 302

    # Nothing is silently dropped: the records stay.
    with app.app_context():
        assert db.session.query(Membership).filter_by(tenant_id=tenant.tenant_id).count() == 3
        actions = {e.action for e in db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id)}
        assert {"tenant.created", "tenant.updated", "tenant.cancelled"} <= actions
        assert db.session.get(Tenant, tenant.tenant_id).metadata_json == {"keep": "me"}


def test_member_of_another_account_keeps_that_account_after_deletion(client, make_tenant, make_user, login, app):
    doomed = make_tenant(company_name="Doomed Co")
    other = make_tenant(company_name="Surviving Co")
    owner = make_user(doomed, role="owner")
    shared = make_user(doomed, role="developer")
    with app.app_context():
        db.session.add(Membership(tenant_id=other.tenant_id, user_id=shared.user.id, role="viewer"))
        db.session.commit()
    shared_client = app.test_client()
    login(shared_client, shared)
    shared_client.post("/switch-tenant", data={"tenant_id": doomed.tenant_id})
    assert "Doomed Co" in shared_client.get("/overview").get_data(as_text=True)

    login(client, owner)
    assert client.post("/settings/delete", data={"confirm_tenant_id": doomed.tenant_id}).status_code == 303

    page = shared_client.get("/overview").get_data(as_text=True)
    assert "Surviving Co" in page
    assert "Doomed Co" not in page
    # The deleted account cannot be switched back to.
    shared_client.post("/switch-tenant", data={"tenant_id": doomed.tenant_id})
    page = shared_client.get("/overview").get_data(as_text=True)
    assert "Surviving Co" in page and "Doomed Co" not in page


def test_deleting_an_account_is_recorded_with_who_did_it(client, tenant, make_user, login, app):
    owner = make_user(tenant, role="owner")
    login(client, owner)
    client.post("/settings/delete", data={"confirm_tenant_id": tenant.tenant_id})
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(tenant_id=tenant.tenant_id, action="tenant.cancelled").one()
        assert event.actor_label == owner.email
        assert event.ip == "127.0.0.1"


def test_settings_of_another_account_cannot_be_changed(client, make_tenant, make_user, login, app):
    mine = make_tenant(company_name="Mine Co")
    theirs = make_tenant(company_name="Theirs Co")
    login(client, make_user(mine, role="owner"))
    # The tenant comes from the session, never from the form: a forged switch is refused.
    response = client.post("/switch-tenant", data={"tenant_id": theirs.tenant_id})
    assert response.status_code == 303
    client.post("/settings", data=profile(mine, "Edited Mine"))
    client.post("/settings/delete", data={"confirm_tenant_id": theirs.tenant_id})
    assert tenant_row(app, theirs.tenant_id).company_name == "Theirs Co"
    assert tenant_row(app, theirs.tenant_id).status == "active"
    assert tenant_row(app, mine.tenant_id).company_name == "Edited Mine"
    assert tenant_row(app, mine.tenant_id).status == "active"


def test_suspended_account_cannot_change_settings(client, make_tenant, make_user, login, app):
    tenant = make_tenant(status="suspended")
    login(client, make_user(tenant, role="owner"))
    page = client.get("/settings").get_data(as_text=True)
    assert "This account is suspended" in page
    response = client.post("/settings", data=profile(tenant, "Sneaky Rename"))
    assert response.status_code == 403
    assert "Your account is suspended" in response.get_data(as_text=True)
    assert tenant_row(app, tenant.tenant_id).company_name != "Sneaky Rename"
