"""Tax IDs on a billing profile: which kinds there are, and each checked by format and check
digit with python-stdnum, with the answer in plain words."""

import re
from dataclasses import dataclass

from stdnum import exceptions
from stdnum.au import abn
from stdnum.ch import vat as ch_vat
from stdnum.eu import vat as eu_vat
from stdnum.gb import vat as gb_vat
from stdnum.in_ import gstin
from stdnum.no import mva
from stdnum.us import ein

from portal.billing.countries import EU_COUNTRIES, country_name
from portal.errors import ValidationFailed
from portal.models import TAX_ID_TYPES

MAX_LENGTH = 40


@dataclass(frozen=True)
class TaxIdKind:
    type: str
    label: str  # what the number is called, in the messages and on the invoice
    country: str | None  # the country it belongs to; None: EU VAT, whose prefix says
    module: object
    example: str


KINDS = {
    kind.type: kind
    for kind in (
        TaxIdKind("eu_vat", "EU VAT number", None, eu_vat, "FR40303265045"),
        TaxIdKind("gb_vat", "UK VAT number", "GB", gb_vat, "GB980780684"),
        TaxIdKind("ch_vat", "Swiss VAT number", "CH", ch_vat, "CHE-113.947.518 MWST"),
        TaxIdKind("no_vat", "Norwegian VAT number (MVA)", "NO", mva, "NO 995 525 828 MVA"),
        TaxIdKind("us_ein", "US EIN", "US", ein, "04-2103594"),
        TaxIdKind("au_abn", "Australian ABN", "AU", abn, "51 824 753 556"),
        TaxIdKind("in_gst", "Indian GSTIN", "IN", gstin, "27AAPFU0939F1ZV"),
    )
}
assert set(KINDS) == set(TAX_ID_TYPES)  # noqa: S101 - the model's list and this one are the same


def vat_country(value: str) -> str:
    """The ISO country of an EU VAT number: its prefix, Greece's "EL" as GR."""
    prefix = value[:2].upper()
    return "GR" if prefix == "EL" else prefix


def country_of(tax_id: dict) -> str:
    """The country a (validated) tax ID belongs to."""
    kind = KINDS[tax_id["type"]]
    return kind.country or vat_country(tax_id["value"])


def label_of(tax_id_type: str) -> str:
    kind = KINDS.get(tax_id_type)
    return kind.label if kind else tax_id_type


def validate(tax_id_type: str, value: str, field: str = "tax_ids") -> dict:
    """``{"type", "value"}`` with the value in its compact form, or ValidationFailed saying what is
    wrong: an unknown type, a number of another country, a wrong format or check digit."""
    kind = KINDS.get((tax_id_type or "").strip())
    if kind is None:
        raise ValidationFailed(f"Choose the kind of tax ID: {', '.join(KINDS)}.", field=field)
    value = (value or "").strip()
    if not value:
        raise ValidationFailed(f"Enter the {kind.label}, e.g. {kind.example}.", field=field)
    if len(value) > MAX_LENGTH:
        raise ValidationFailed(f"A {kind.label} is at most {MAX_LENGTH} characters.", field=field)
    compact = re.sub(r"[\s.\-/,:]", "", value).upper()
    if kind.type == "eu_vat":
        country = vat_country(compact)
        if not compact[:2].isalpha():
            raise ValidationFailed(
                f"An EU VAT number starts with its country's two letters, e.g. {kind.example}.", field=field
            )
        if country not in EU_COUNTRIES:
            raise ValidationFailed(
                f"{compact[:2]} is not an EU country's VAT prefix ({country_name(country)} is not in the EU)"
                + (": choose UK VAT for a GB number." if country == "GB" else "."),
                field=field,
            )
        what = f"a valid {_adjective(country)} VAT number"
    else:
        what = f"a valid {kind.label}"
        prefix = compact[:2]
        if prefix.isalpha() and kind.type in ("gb_vat", "no_vat") and prefix != kind.country:
            # A VAT number of another country typed under this kind.
            raise ValidationFailed(
                f"{value} is not {what}: it starts with {prefix}, and a {kind.label} is from "
                f"{country_name(kind.country)}.",
                field=field,
            )
    try:
        compact = kind.module.validate(compact)
    except exceptions.InvalidChecksum:
        raise ValidationFailed(
            f"That {_noun(kind)}'s check digit is wrong: check {value} for a typo.", field=field
        ) from None
    except exceptions.ValidationError:
        raise ValidationFailed(f"{value} is not {what}, e.g. {kind.example}.", field=field) from None
    if kind.type in ("gb_vat", "no_vat") and not compact.startswith(kind.country):
        compact = kind.country + compact  # stdnum drops the prefix; invoices show it
    return {"type": kind.type, "value": compact}


def _noun(kind: TaxIdKind) -> str:
    return {"us_ein": "EIN", "au_abn": "ABN", "in_gst": "GSTIN"}.get(kind.type, "VAT number")


def _adjective(country: str) -> str:
    """ "DE" -> "German", for "not a valid German VAT number"."""
    return ADJECTIVES.get(country, country_name(country))


ADJECTIVES = {
    "AT": "Austrian",
    "BE": "Belgian",
    "BG": "Bulgarian",
    "CY": "Cypriot",
    "CZ": "Czech",
    "DE": "German",
    "DK": "Danish",
    "EE": "Estonian",
    "ES": "Spanish",
    "FI": "Finnish",
    "FR": "French",
    "GR": "Greek",
    "HR": "Croatian",
    "HU": "Hungarian",
    "IE": "Irish",
    "IT": "Italian",
    "LT": "Lithuanian",
    "LU": "Luxembourgish",
    "LV": "Latvian",
    "MT": "Maltese",
    "NL": "Dutch",
    "PL": "Polish",
    "PT": "Portuguese",
    "RO": "Romanian",
    "SE": "Swedish",
    "SI": "Slovenian",
    "SK": "Slovak",
}
