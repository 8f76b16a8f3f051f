"""``GET|PUT /tenants/{id}/billing-profile``: who the tenant's invoices are made out and sent to."""

from portal.api.billing import READ_SCOPE, tenant_billing
from portal.api.schemas import billing_profiles as schemas
from portal.billing import profile as profiles
from portal.billing import tax_ids
from portal.infra.transactions import commit
from portal.models import ADMIN_SCOPE, Tenant

TAGS = ["billing"]


def profile_out(tenant: Tenant) -> schemas.BillingProfileOut:
    profile = profiles.profile_of(tenant)
    data = profiles.data_of(profile)
    return schemas.BillingProfileOut(
        tenant_id=tenant.tenant_id,
        **{name: getattr(data, name) for name in profiles.LIMITS},
        country=data.country or None,
        billing_email=data.billing_email or None,
        extra_recipients=data.extra_recipients,
        tax_ids=[
            schemas.TaxIdOut(
                type=item["type"],
                value=item["value"],
                country=tax_ids.country_of(item),
                label=tax_ids.label_of(item["type"]),
            )
            for item in data.tax_ids
        ],
        recipients=profiles.billing_recipients(tenant),
        updated_at=profile.updated_at if profile is not None else None,
    )


@tenant_billing("GET", "/tenants/<tenant_id>/billing-profile", scope=READ_SCOPE)
def get_billing_profile(principal, tenant: Tenant) -> schemas.BillingProfileOut:
    """The billing profile: legal name, address, tax IDs, PO number and invoice recipients

    A tenant that never set one gets the empty profile (`updated_at: null`). Invoices copy the
    profile when they are issued.
    """
    return profile_out(tenant)


@tenant_billing("PUT", "/tenants/<tenant_id>/billing-profile", scope=ADMIN_SCOPE)
def put_billing_profile(principal, tenant: Tenant, body: schemas.BillingProfileIn) -> schemas.BillingProfileOut:
    """Replace the billing profile (tax IDs checked by format and check digit)

    The whole profile: a field left out is cleared. A tax ID with a wrong check digit, of another
    country than its type, or tax IDs without `country`, are a 400 naming the problem. Invoices
    issued from now on carry the new profile; issued ones keep theirs.
    """
    data = profiles.ProfileData(
        **{name: getattr(body, name) for name in profiles.LIMITS},
        country=body.country or "",
        billing_email=body.billing_email or "",
        extra_recipients=list(body.extra_recipients),
        tax_ids=[{"type": item.type, "value": item.value} for item in body.tax_ids],
    )
    profiles.update(principal.actor(), tenant, data)
    commit()
    return profile_out(tenant)
