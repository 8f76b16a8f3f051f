"""Invoice PDFs: what a customer reads when they open the file, checked through its extracted text."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from portal.billing import pdf
from portal.billing.pdf import format_quantity, render_invoice_pdf, safe_text
from portal.models.billing import Invoice, InvoiceLine

SELLER = {"name": "Portal SaaS Inc.", "address": "1 Example Street, Springfield", "email": "billing@example.com"}


def make_line(
    description: str,
    amount: int,
    quantity: str = "1",
    unit_amount: str | None = None,
    type: str = "plan",
    position: int = 0,
) -> InvoiceLine:
    return InvoiceLine(
        position=position,
        type=type,
        description=description,
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit_amount if unit_amount is not None else amount),
        amount=amount,
        period_start=None,
        period_end=None,
    )


def standard_lines() -> list[InvoiceLine]:
    return [
        make_line("Pro plan (monthly), Mar 1, 2025 – Apr 1, 2025", 49900, unit_amount="49900.000000"),
        make_line("Unused time on Starter, Mar 10, 2025 – Apr 1, 2025", -1234, type="proration", position=1),
        make_line("API calls", 750, quantity="1500.000000", unit_amount="0.500000", type="usage", position=2),
    ]


def make_invoice(lines: list[InvoiceLine] | None = None, **fields) -> Invoice:
    """An invoice in memory, never added to a session: the renderer only reads attributes."""
    lines = standard_lines() if lines is None else lines
    subtotal = sum(line.amount for line in lines)
    values = dict(
        number="INV-2025-000042",
        tenant_id="t_acme123",
        subscription_id="sub_1",
        kind="period",
        period_start=datetime(2025, 3, 1, tzinfo=UTC),
        period_end=datetime(2025, 4, 1, tzinfo=UTC),
        currency="USD",
        subtotal=subtotal,
        credits_applied=0,
        total=subtotal,
        amount_paid=0,
        amount_refunded=0,
        status="open",
        issued_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        due_at=datetime(2025, 3, 15, tzinfo=UTC),
        paid_at=None,
        payment_reference=None,
        voided_at=None,
        void_reason=None,
        billing_name="Acme Widgets Ltd",
        billing_email="accounts@acme.test",
        plan_name="Pro",
    )
    values.update(fields)
    return Invoice(lines=lines, **values)


def pages_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def text_of(data: bytes) -> str:
    return "\n".join(pages_text(data))


def text_lines(data: bytes) -> list[str]:
    return [" ".join(line.split()) for line in text_of(data).splitlines()]


def test_invoice_pdf_shows_seller_buyer_lines_and_totals():
    invoice = make_invoice(credits_applied=500, total=48916)

    data = render_invoice_pdf(invoice, SELLER)

    assert data.startswith(b"%PDF-")
    text = text_of(data)
    for expected in (
        "Portal SaaS Inc.",
        "1 Example Street, Springfield",
        "billing@example.com",
        "INVOICE",
        "INV-2025-000042",
        "Acme Widgets Ltd",
        "accounts@acme.test",
        "t_acme123",
        "Mar 1, 2025",
        "Mar 15, 2025",
        "OPEN",
    ):
        assert expected in text
    for line in invoice.lines:
        assert line.description in text
    lines = text_lines(data)
    assert "Description Qty Unit price Amount" in lines
    assert "Pro plan (monthly), Mar 1, 2025 – Apr 1, 2025 1 $499.00 $499.00" in lines
    assert "Unused time on Starter, Mar 10, 2025 – Apr 1, 2025 1 -$12.34 -$12.34" in lines
    assert "Subtotal $494.16" in lines
    assert "Credits applied -$5.00" in lines
    assert "Total $489.16" in lines
    assert "Amount paid $0.00" in lines
    assert "Amount due $489.16" in lines
    assert "Please pay $489.16 by Mar 15, 2025." in lines
    assert "Thank you for your business. Questions about this invoice? Write to billing@example.com." in lines


def test_credits_line_is_left_out_when_no_credit_was_applied():
    text = text_of(render_invoice_pdf(make_invoice(), SELLER))

    assert "Credits applied" not in text
    assert "PAID" not in text and "VOID" not in text


def test_sub_cent_unit_price_and_quantity_are_shown_for_people():
    lines = [
        make_line("API calls", 617284, quantity="1234567.000000", unit_amount="0.500000", type="usage"),
        make_line("Storage (GB-months)", 250, quantity="2.500000", unit_amount="100.000000", position=1),
    ]

    text_rows = text_lines(render_invoice_pdf(make_invoice(lines), SELLER))

    assert "API calls 1,234,567 $0.005 $6,172.84" in text_rows
    assert "Storage (GB-months) 2.5 $1.00 $2.50" in text_rows


def test_paid_invoice_is_stamped_paid_with_its_payment_reference():
    invoice = make_invoice(
        status="paid", amount_paid=49416, paid_at=datetime(2025, 3, 2, tzinfo=UTC), payment_reference="pi_3PqXyZ"
    )

    lines = text_lines(render_invoice_pdf(invoice, SELLER))

    assert "PAID" in lines  # the stamp
    assert "Status PAID" in lines
    assert "Paid on Mar 2, 2025" in lines
    assert "Amount paid $494.16" in lines
    assert "Amount due $0.00" in lines
    assert "Payment reference: pi_3PqXyZ" in lines


def test_void_invoice_is_stamped_void_and_shows_the_reason():
    invoice = make_invoice(
        status="void", voided_at=datetime(2025, 3, 3, tzinfo=UTC), void_reason="Issued twice by mistake"
    )

    text = text_of(render_invoice_pdf(invoice, SELLER))

    assert "VOID" in text
    assert "This invoice has been voided and is not payable." in text
    assert "Reason: Issued twice by mistake" in text
    assert "Amount due $0.00" in text_lines(render_invoice_pdf(invoice, SELLER))


def test_long_description_wraps_inside_its_cell():
    description = "Usage of the reporting add-on across every workspace of the tenant, " * 4 + "end."
    lines = [make_line(description, 1999), make_line("X" * 200, 100, position=1)]

    data = render_invoice_pdf(make_invoice(lines), SELLER)

    assert len(pages_text(data)) == 1
    text = text_of(data)
    # Wrapped over several lines of the cell, yet every word is there in order.
    assert description not in text
    assert description.strip() in " ".join(text.split())
    assert "X" * 200 in "".join(text.split())


def test_sixty_line_invoice_spans_pages_and_repeats_the_table_header():
    lines = [make_line(f"Seat for user{i:02d}@acme.test", 1000, position=i) for i in range(60)]

    data = render_invoice_pdf(make_invoice(lines), SELLER)

    pages = pages_text(data)
    assert len(pages) > 1
    text = "\n".join(pages)
    for line in lines:
        assert f"{line.description} 1 $10.00 $10.00" in text
    for page in pages:
        assert "Description Qty Unit price Amount" in page
        assert f"Page {pages.index(page) + 1} of {len(pages)}" in page
    assert "Total $600.00" in text_lines(data)


def test_text_outside_latin1_renders_without_error():
    lines = [make_line("Priority support – 24/7 € plan… “fast” 漢字 naïve Łódź", 12345)]
    invoice = make_invoice(lines, currency="EUR", billing_name="Zürich GmbH – Łukasz")

    text = text_of(render_invoice_pdf(invoice, SELLER))

    assert "Priority support – 24/7 € plan… “fast” 漢字 naïve Łódź" in text
    assert "Zürich GmbH – Łukasz" in text
    assert "€123.45" in text


def test_a_buyer_in_any_script_is_printed_intact_with_the_tax_per_rate():
    line = make_line("Professional plan (monthly)", 4900)
    line.tax_name, line.tax_percentage, line.tax_inclusive, line.tax_amount = "VAT", Decimal(19), False, 931
    line.credit_allocated = 0
    buyer = {
        "legal_name": "Müller & Söhne 東京 Łódź Ltd",
        "address_line1": "Hauptstraße 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
        "tax_ids": [{"type": "eu_vat", "value": "DE123456788"}],
        "po_number": "PO-東京-7",
    }
    invoice = make_invoice([line], billing_name=buyer["legal_name"], buyer=buyer, tax=931, total=5831)

    text = text_of(render_invoice_pdf(invoice, {**SELLER, "vat_id": "DE999999995"}))

    assert "Müller & Söhne 東京 Łódź" in text
    assert "10115 Berlin" in text and "Germany" in text
    assert "EU VAT number: DE123456788" in text and "Purchase order: PO-東京-7" in text
    assert "VAT ID: DE999999995" in text
    assert "VAT 19% $9.31" in text
    assert "Total $58.31" in text


def test_the_reverse_charge_mention_is_printed():
    invoice = make_invoice(
        tax_note="Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"
    )
    text = " ".join(text_of(render_invoice_pdf(invoice, SELLER)).split())
    assert "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC" in text


def test_right_to_left_text_renders_and_an_emoji_no_font_has_is_a_visible_box_never_a_question_mark():
    lines = [make_line("Launch 🚀 שלום مرحبا Ελληνικά Привет", 100)]
    text = text_of(render_invoice_pdf(make_invoice(lines, billing_name="Rocket 🚀 Ltd"), SELLER))
    assert "Rocket □ Ltd" in text
    assert "?" not in text.replace("Questions about this invoice?", "")
    assert "Ελληνικά" in text and "Привет" in text


def test_without_the_unicode_fonts_the_pdf_still_renders_with_the_core_font_and_a_warning(
    monkeypatch, tmp_path, caplog
):
    monkeypatch.setattr(pdf, "FONT_DIR", tmp_path)
    pdf.unicode_fonts.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="portal.billing.pdf"):
            text = text_of(render_invoice_pdf(make_invoice(billing_name="Zürich 東京"), SELLER))
    finally:
        pdf.unicode_fonts.cache_clear()
    assert "Zürich ??" in text
    assert "fonts-dejavu-core" in caplog.text


def test_pdf_metadata_names_the_invoice_and_seller_and_output_is_deterministic():
    invoice = make_invoice()

    data = render_invoice_pdf(invoice, SELLER)

    reader = PdfReader(io.BytesIO(data))
    assert reader.metadata.title == "INV-2025-000042"
    assert reader.metadata.author == "Portal SaaS Inc."
    assert reader.metadata.creation_date == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    assert render_invoice_pdf(make_invoice(), SELLER) == data


@pytest.mark.parametrize(
    ("quantity", "shown"),
    [
        (Decimal("1.000000"), "1"),
        (Decimal("2.500000"), "2.5"),
        (Decimal("1234567"), "1,234,567"),
        (Decimal("1E+6"), "1,000,000"),
        (Decimal("0.000100"), "0.0001"),
        (Decimal("-3"), "-3"),
    ],
)
def test_quantities_have_no_trailing_zeros_and_group_thousands(quantity, shown):
    assert format_quantity(quantity) == shown


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("plain", "plain"),
        ("€ – … “” ü", "€ – … “” ü"),
        ("Łódź", "Lódz"),
        ("a\u2212b → c", "a-b -> c"),
        ("ﬁne", "fine"),
        ("漢", "?"),
        ("tab\there\x00", "tab    here "),
        (None, ""),
    ],
)
def test_safe_text_keeps_what_helvetica_can_draw(raw, safe):
    assert safe_text(raw) == safe


def test_a_pdf_is_rendered_again_once_its_invoice_changes():
    invoice = make_invoice(id="inv_cache", updated_at=datetime(2025, 3, 1, tzinfo=UTC))
    first = pdf.invoice_pdf(invoice, SELLER)
    assert pdf.invoice_pdf(invoice, SELLER) is first  # the same invoice: this process's copy
    invoice.status, invoice.paid_at, invoice.amount_paid = "paid", datetime(2025, 3, 2, tzinfo=UTC), invoice.total
    invoice.updated_at = datetime(2025, 3, 2, tzinfo=UTC)
    assert "PAID" in text_of(pdf.invoice_pdf(invoice, SELLER))
