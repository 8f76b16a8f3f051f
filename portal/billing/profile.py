"""A tenant's billing profile: who its invoices are made out to (legal name, address, tax IDs,
purchase-order number) and who receives them. One row per tenant; invoices copy it when issued."""

from dataclasses import dataclass, field

from sqlalchemy import select

from portal import audit
from portal.access import Actor
from portal.auth.services import normalize_email
from portal.billing import tax_ids as tax_id_rules
from portal.billing.countries import COUNTRIES, country_name
from portal.errors import ServiceError, ValidationFailed
from portal.extensions import db
from portal.models import BillingProfile, Tenant
from portal.team.services import owner_and_admin_emails

MAX_RECIPIENTS = 5
MAX_TAX_IDS = 5
# Field -> the longest text it takes (the columns' sizes).
LIMITS = {
    "legal_name": 200,
    "address_line1": 200,
    "address_line2": 200,
    "city": 100,
    "postal_code": 20,
    "region": 100,
    "po_number": 100,
}
LABELS = {
    "legal_name": "Legal name",
    "address_line1": "Address line 1",
    "address_line2": "Address line 2",
    "city": "City",
    "postal_code": "Postal code",
    "region": "State, province or region",
    "po_number": "Purchase order number",
    "country": "Country",
    "billing_email": "Billing email",
    "extra_recipients": "Other invoice recipients",
    "tax_ids": "Tax IDs",
}
TEXT_FIELDS = tuple(LIMITS)
FIELDS = (*TEXT_FIELDS, "country", "billing_email", "extra_recipients", "tax_ids")


@dataclass
class ProfileData:
    """What the form or the API sends: the whole profile (a field left out is cleared)."""

    legal_name: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    postal_code: str = ""
    region: str = ""
    country: str = ""
    billing_email: str = ""
    extra_recipients: list[str] = field(default_factory=list)
    tax_ids: list[dict] = field(default_factory=list)  # [{"type": "eu_vat", "value": "FR..."}]
    po_number: str = ""


def profile_of(tenant: Tenant | str) -> BillingProfile | None:
    tenant_id = tenant if isinstance(tenant, str) else tenant.tenant_id
    return db.session.get(BillingProfile, tenant_id)


def profiles_of(tenant_ids: list[str]) -> dict[str, BillingProfile]:
    """The billing profiles of those tenants that have one, by tenant (one query)."""
    if not tenant_ids:
        return {}
    found = db.session.execute(select(BillingProfile).where(BillingProfile.tenant_id.in_(tenant_ids))).scalars()
    return {profile.tenant_id: profile for profile in found}


def data_of(profile: BillingProfile | None) -> ProfileData:
    if profile is None:
        return ProfileData()
    return ProfileData(**{name: getattr(profile, name) for name in FIELDS})


def _text(name: str, value: str | None) -> str:
    if "\x00" in (value or ""):
        raise ValidationFailed(f"{LABELS[name]} contains a NUL character; remove it.", field=name)
    value = " ".join((value or "").split())  # one line each: no tabs or line breaks on an invoice
    if len(value) > LIMITS[name]:
        raise ValidationFailed(f"{LABELS[name]} can be at most {LIMITS[name]} characters.", field=name)
    return value


def _email(value: str, name: str) -> str:
    try:
        return normalize_email(value)
    except ServiceError:
        raise ValidationFailed(f"{value.strip()[:80]} is not an email address.", field=name) from None


def clean(data: ProfileData) -> ProfileData:
    """Every field checked and normalised, or ValidationFailed naming the first problem in words."""
    cleaned = ProfileData(**{name: _text(name, getattr(data, name)) for name in TEXT_FIELDS})
    country = (data.country or "").strip().upper()
    if country and country not in COUNTRIES:
        raise ValidationFailed(
            f"{data.country.strip()[:20]} is not a country code; use ISO 3166 two letters, e.g. DE, FR, US.",
            field="country",
        )
    cleaned.country = country
    cleaned.billing_email = _email(data.billing_email, "billing_email") if (data.billing_email or "").strip() else ""
    recipients = []
    for value in data.extra_recipients or []:
        if (value or "").strip():
            email = _email(value, "extra_recipients")
            if email not in recipients and email != cleaned.billing_email:
                recipients.append(email)
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationFailed(f"At most {MAX_RECIPIENTS} other invoice recipients.", field="extra_recipients")
    cleaned.extra_recipients = recipients
    ids = []
    for tax_id in data.tax_ids or []:
        checked = tax_id_rules.validate(tax_id.get("type", ""), tax_id.get("value", ""), field="tax_ids")
        if checked in ids:
            raise ValidationFailed(f"{checked['value']} is listed twice.", field="tax_ids")
        ids.append(checked)
    if len(ids) > MAX_TAX_IDS:
        raise ValidationFailed(f"At most {MAX_TAX_IDS} tax IDs.", field="tax_ids")
    if ids and not country:
        raise ValidationFailed("Choose the country of the billing address: the tax depends on it.", field="country")
    cleaned.tax_ids = ids
    return cleaned


def update(actor: Actor, tenant: Tenant, data: ProfileData) -> BillingProfile:
    """Replace the tenant's billing profile (created on first save); the change is audited by
    field. Issued invoices keep the profile they copied."""
    cleaned = clean(data)
    profile = profile_of(tenant)
    created = profile is None
    if created:
        profile = BillingProfile(tenant_id=tenant.tenant_id, extra_recipients=[], tax_ids=[])
        db.session.add(profile)
    before = data_of(None if created else profile)
    changed = [name for name in FIELDS if getattr(before, name) != getattr(cleaned, name)]
    for name in changed:
        setattr(profile, name, getattr(cleaned, name))
    db.session.flush()
    if changed:
        audit.record(
            actor,
            "billing_profile.updated",
            tenant,
            "billing_profile",
            tenant.tenant_id,
            fields=[LABELS[name] for name in changed],
            **{name: _shown(getattr(cleaned, name)) for name in changed if name in ("country", "tax_ids")},
        )
    return profile


def _shown(value):
    if isinstance(value, list):
        return ", ".join(f"{tax_id_rules.label_of(item['type'])} {item['value']}" for item in value) or "none"
    return value or "none"


def billing_recipients(tenant: Tenant) -> list[str]:
    """Who receives the tenant's invoices and billing emails: the profile's billing email and
    other recipients; without a billing email, the owner and admins."""
    profile = profile_of(tenant)
    if profile is None or not profile.billing_email:
        fallback = owner_and_admin_emails(tenant.tenant_id)
        extra = [email for email in (profile.extra_recipients if profile else []) if email not in fallback]
        return fallback + extra
    return [profile.billing_email, *(e for e in profile.extra_recipients if e != profile.billing_email)]


def snapshot(profile: BillingProfile | None) -> dict | None:
    """The profile as an invoice keeps it (``Invoice.buyer``); None without a profile."""
    if profile is None:
        return None
    return {
        "legal_name": profile.legal_name,
        "address_line1": profile.address_line1,
        "address_line2": profile.address_line2,
        "city": profile.city,
        "postal_code": profile.postal_code,
        "region": profile.region,
        "country": profile.country,
        "tax_ids": [dict(tax_id) for tax_id in profile.tax_ids or []],
        "po_number": profile.po_number,
    }


def address_lines(buyer: dict | None) -> list[str]:
    """A snapshot's address as printed: street lines, "postal code city", region, country."""
    if not buyer:
        return []
    city = " ".join(part for part in (buyer.get("postal_code"), buyer.get("city")) if part)
    lines = [buyer.get("address_line1"), buyer.get("address_line2"), city, buyer.get("region")]
    if buyer.get("country"):
        lines.append(country_name(buyer["country"]))
    return [line for line in lines if line]


def tax_id_lines(buyer: dict | None) -> list[str]:
    """ "EU VAT number: FR40303265045", one per tax ID of a snapshot."""
    return [f"{tax_id_rules.label_of(item['type'])}: {item['value']}" for item in (buyer or {}).get("tax_ids", [])]
