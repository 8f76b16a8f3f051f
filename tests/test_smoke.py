from tests.conftest import link_in


def test_sign_up_creates_tenant_and_owner(client, outbox):
    response = client.post(
        "/signup",
        data={
            "company_name": "Acme Inc",
            "tenant_id": "acme_smoke",
            "email": "founder@acme-smoke.com",
            "password": "long enough password",
            "name": "Fay Founder",
        },
    )
    assert response.status_code == 303
    page = client.get("/overview").get_data(as_text=True)
    assert "Acme Inc" in page
    assert "owner" in page


def test_invite_sends_link_that_accepts(client, make_tenant, make_user, login, outbox):
    tenant = make_tenant()
    owner = make_user(tenant, role="owner")
    login(client, owner)
    response = client.post(
        "/team/invitations", data={"email": "new@example.com", "role": "viewer", "expires_in_days": 7}
    )
    assert response.status_code == 303
    [email] = outbox("new@example.com")
    path = link_in(email.text_body, "/invite/")
    other = client.application.test_client()
    response = other.post(path, data={"name": "New Person", "password": "another long password"})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert "viewer" in other.get("/overview").get_data(as_text=True)
