"""An invoice as an A4 PDF a customer can file: seller, buyer, lines, totals, status."""

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

from flask import Response, current_app, make_response
from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, XPos, YPos

from portal.billing.money import format_amount, format_money
from portal.billing.profile import address_lines, tax_id_lines
from portal.models.billing import Invoice

# The core fonts are drawn with WinAnsiEncoding, which is cp1252: it has "€", "–", "…" and
# curly quotes, which latin-1 lacks. fpdf2 ships no TTF font, so nothing is embedded.
ENCODING = "cp1252"
FONT = "Helvetica"
# Characters cp1252 lacks that have an obvious plain spelling; the rest go through NFKD.
REPLACEMENTS = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u2190": "<-",
        "\u2192": "->",
        "\u2194": "<->",
        "\u21d2": "=>",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u2260": "!=",
        "\u2248": "~",
        "\u2032": "'",
        "\u2033": '"',
        "\u2044": "/",
        "\u2215": "/",
        "\u2009": " ",
        "\u200a": " ",
        "\u2007": " ",
        "\u202f": " ",
        "\u2002": " ",
        "\u2003": " ",
        "\u200b": "",
        "\u200c": "",
        "\u200d": "",
        "\u2060": "",
        "\ufeff": "",
        "\u00ad": "",
        "\u0141": "L",
        "\u0142": "l",
        "\u0110": "D",
        "\u0111": "d",
        "\u0126": "H",
        "\u0127": "h",
        "\u0131": "i",
        "\u0166": "T",
        "\u0167": "t",  # letters with a stroke have no NFKD decomposition
        "\t": "    ",
        "\r": "",
    }
)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
SHADE = (241, 243, 245)
STAMPS = {"paid": ("PAID", (25, 135, 84)), "void": ("VOID", (200, 35, 51))}

MARGIN = 18
COLUMNS = (96, 22, 30, 26)  # description, quantity, unit price, amount: 174 mm, the A4 text width


def safe_text(text: object) -> str:
    """Text the core Helvetica font can draw: cp1252 kept, the rest spelled plainly or "?"."""
    text = unicodedata.normalize("NFC", str(text or "")).translate(REPLACEMENTS)
    out = []
    for char in text:
        if char == "\n" or _encodable(char):
            out.append(char)
        elif unicodedata.category(char).startswith("C"):  # control and unassigned characters
            out.append(" ")
        else:
            # "ő" -> "o", "ﬁ" -> "fi", "１" -> "1"; what cannot be spelled becomes "?".
            plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(plain if plain and _encodable(plain) else "?")
    return "".join(out)


def _encodable(text: str) -> bool:
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    # cp1252 maps C0 controls too; they are not text to draw.
    return all(char == "\n" or unicodedata.category(char) != "Cc" for char in text)


def format_date(value: datetime | None) -> str:
    """ "Mar 1, 2025", in UTC, whatever the server's locale."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{MONTHS[value.month - 1]} {value.day}, {value.year}"


def format_quantity(quantity: Decimal | int) -> str:
    """Decimal("1500000.000000") -> "1,500,000"; Decimal("2.500000") -> "2.5"."""
    whole, _, fraction = f"{Decimal(quantity):,f}".partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


class InvoiceDocument(FPDF):
    """A4 pages with the invoice number and page count in every page's footer."""

    def __init__(self, invoice: Invoice) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.invoice = invoice
        self.core_fonts_encoding = ENCODING
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=22)
        self.alias_nb_pages()

    def header(self) -> None:
        if self.page_no() == 1:
            return
        # Continuation pages say whose lines they carry; the table repeats its own heading.
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED)
        self.cell(
            0,
            5,
            safe_text(f"Invoice {self.invoice.number} (continued)"),
            align="R",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, safe_text(f"{self.invoice.number} \u00b7 Page {self.page_no()} of {{nb}}"), align="C")


def render_invoice_pdf(invoice: Invoice, seller: dict) -> bytes:
    """The invoice as PDF bytes; the same invoice always gives the same bytes."""
    pdf = InvoiceDocument(invoice)
    seller_name = str(seller.get("name") or "")
    pdf.set_title(invoice.number)
    pdf.set_author(seller_name)
    pdf.set_subject(f"Invoice {invoice.number} for {invoice.billing_name}")
    pdf.set_creator(seller_name)
    pdf.set_lang("en")
    issued = invoice.issued_at
    if issued is not None:
        # A fixed creation date also fixes the document /ID, which fpdf2 hashes from it and the content.
        pdf.set_creation_date(issued.astimezone(UTC) if issued.tzinfo else issued.replace(tzinfo=UTC))
    pdf.add_page()

    _draw_header(pdf, invoice, seller)
    _draw_notices(pdf, invoice)
    _draw_bill_to(pdf, invoice)
    _draw_lines(pdf, invoice)
    _draw_totals(pdf, invoice)
    _draw_closing(pdf, invoice, seller)
    return bytes(pdf.output())


def _draw_header(pdf: FPDF, invoice: Invoice, seller: dict) -> None:
    top = pdf.get_y()
    left_width = 88
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "B", 13)
    pdf.multi_cell(left_width, 6, safe_text(seller.get("name")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(*MUTED)
    vat_id = f"VAT ID: {seller['vat_id']}" if seller.get("vat_id") else ""
    for part in (seller.get("address"), seller.get("email"), vat_id):
        if part:
            pdf.multi_cell(left_width, 4.5, safe_text(part), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    seller_bottom = pdf.get_y()

    right_x, right_width = pdf.w - MARGIN - 80, 80
    pdf.set_xy(right_x, top)
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "B", 26)
    pdf.cell(right_width, 11, "INVOICE", align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 11)
    pdf.cell(right_width, 6, safe_text(invoice.number), align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.ln(2)

    facts = [
        ("Issue date", format_date(invoice.issued_at)),
        ("Due date", format_date(invoice.due_at)),
        ("Status", invoice.status.upper()),
    ]
    if invoice.status == "paid" and invoice.paid_at:
        facts.append(("Paid on", format_date(invoice.paid_at)))
    if invoice.status == "void" and invoice.voided_at:
        facts.append(("Voided on", format_date(invoice.voided_at)))
    facts.append(("Period", f"{format_date(invoice.period_start)} \u2013 {format_date(invoice.period_end)}"))
    for label, value in facts:
        pdf.set_x(right_x)
        pdf.set_font(FONT, "", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(28, 5, label, align="R")
        pdf.set_font(FONT, "B" if label == "Status" else "", 9)
        pdf.set_text_color(*INK)
        pdf.cell(right_width - 28, 5, safe_text(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.set_y(max(seller_bottom, pdf.get_y()) + 6)
    pdf.set_draw_color(*RULE)
    pdf.line(MARGIN, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
    pdf.ln(6)


def _draw_notices(pdf: FPDF, invoice: Invoice) -> None:
    if invoice.status != "void":
        return
    # A void invoice must not be paid by mistake: say so in words, not only with the stamp.
    text = "This invoice has been voided and is not payable."
    if invoice.void_reason:
        text += f"\nReason: {invoice.void_reason}"
    red = STAMPS["void"][1]
    pdf.set_draw_color(*red)
    pdf.set_text_color(*red)
    pdf.set_font(FONT, "", 9.5)
    pdf.multi_cell(0, 5, safe_text(text), border=1, padding=2.5, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)


def _draw_bill_to(pdf: FPDF, invoice: Invoice) -> None:
    top = pdf.get_y()
    width = 100
    pdf.set_font(FONT, "B", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(width, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "B", 11)
    pdf.multi_cell(width, 5.5, safe_text(invoice.billing_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9.5)
    buyer = invoice.buyer or {}
    lines = [*address_lines(buyer), *tax_id_lines(buyer)]
    if buyer.get("po_number"):
        lines.append(f"Purchase order: {buyer['po_number']}")
    lines.append(invoice.billing_email)
    for line in filter(None, lines):
        pdf.multi_cell(width, 5, safe_text(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(width, 5, safe_text(f"Tenant ID: {invoice.tenant_id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if invoice.plan_name:
        pdf.multi_cell(width, 5, safe_text(f"Plan: {invoice.plan_name}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    bottom = pdf.get_y()

    stamp = STAMPS.get(invoice.status)
    if stamp:
        _draw_stamp(pdf, *stamp, center_x=pdf.w - MARGIN - 38, center_y=top + 12)
    pdf.set_y(max(bottom, top + 26) + 6)


def _draw_stamp(pdf: FPDF, word: str, color: tuple[int, int, int], center_x: float, center_y: float) -> None:
    """A rubber stamp: the status in a box, tilted, in the empty space beside the buyer."""
    width, height = 52, 17
    with pdf.local_context(draw_color=color, text_color=color, line_width=1.2):
        with pdf.rotation(12, x=center_x, y=center_y):
            pdf.set_font(FONT, "B", 30)
            pdf.rect(center_x - width / 2, center_y - height / 2, width, height)
            pdf.set_xy(center_x - width / 2, center_y - height / 2)
            pdf.cell(width, height, word, align="C")


def _draw_lines(pdf: FPDF, invoice: Invoice) -> None:
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.2)
    pdf.set_font(FONT, "", 9.5)
    headings = FontFace(emphasis="BOLD", color=INK, fill_color=SHADE)
    with pdf.table(
        col_widths=COLUMNS,
        width=sum(COLUMNS),
        align="LEFT",
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        v_align="TOP",
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        headings_style=headings,
        line_height=5,
        padding=(2, 2),
        repeat_headings=1,
    ) as table:
        table.row(("Description", "Qty", "Unit price", "Amount"))
        for line in invoice.lines:
            table.row(
                (
                    safe_text(line.description),
                    format_quantity(line.quantity),
                    safe_text(format_amount(line.unit_amount, invoice.currency)),
                    safe_text(format_money(line.amount, invoice.currency)),
                )
            )
        if not invoice.lines:
            table.row(("No charges", "", "", ""))
    pdf.ln(4)


def _draw_totals(pdf: FPDF, invoice: Invoice) -> None:
    def money(cents: int) -> str:
        return safe_text(format_money(cents, invoice.currency))

    rows = [("Subtotal", money(invoice.subtotal), False)]
    if invoice.discount:
        rows.append(("Discount", money(-invoice.discount), False))
    if invoice.credits_applied:
        rows.append(("Credits applied", money(-invoice.credits_applied), False))
    for rate in invoice.tax_lines:
        rows.append((rate.label, money(rate.amount), False))
    rows.append(("Total", money(invoice.total), True))
    rows.append(("Amount paid", money(invoice.amount_paid), False))
    if invoice.amount_refunded:
        rows.append(("Amount refunded", money(invoice.amount_refunded), False))
    rows.append(("Amount due", money(invoice.amount_due), True))

    row_height = 6.5
    if pdf.will_page_break(row_height * len(rows) + 4):
        pdf.add_page()
    label_width, value_width = 50, 32
    x = pdf.w - MARGIN - label_width - value_width
    pdf.set_draw_color(*RULE)
    for label, value, strong in rows:
        if strong:
            pdf.line(x, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
        pdf.set_x(x)
        pdf.set_text_color(*(INK if strong else MUTED))
        pdf.set_font(FONT, "B" if strong else "", 10.5 if strong else 9.5)
        pdf.cell(label_width, row_height, label)
        pdf.set_text_color(*INK)
        pdf.cell(value_width, row_height, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)


def _draw_closing(pdf: FPDF, invoice: Invoice, seller: dict) -> None:
    paragraphs = []
    if invoice.tax_note:
        paragraphs.append((invoice.tax_note, "B"))
    if invoice.amount_due:
        due = format_money(invoice.amount_due, invoice.currency)
        paragraphs.append((f"Please pay {due} by {format_date(invoice.due_at)}.", ""))
    if invoice.payment_reference:
        paragraphs.append((f"Payment reference: {invoice.payment_reference}", "B"))
    contact = f" Questions about this invoice? Write to {seller['email']}." if seller.get("email") else ""
    paragraphs.append((f"Thank you for your business.{contact}", ""))

    pdf.set_text_color(*INK)
    for text, style in paragraphs:
        pdf.set_font(FONT, style, 9.5)
        pdf.multi_cell(0, 5, safe_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.5)


def seller_from_config() -> dict:
    config = current_app.config
    return {
        "name": config["BILLING_SELLER_NAME"],
        "address": config["BILLING_SELLER_ADDRESS"],
        "email": config["BILLING_SELLER_EMAIL"],
        "country": config.get("BILLING_SELLER_COUNTRY", ""),
        "vat_id": config.get("BILLING_SELLER_VAT_ID", ""),
    }


def pdf_download(invoice: Invoice) -> Response:
    """The invoice as a PDF attachment named after its number (the customer's and the operator's)."""
    response = make_response(render_invoice_pdf(invoice, seller_from_config()))
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
    return response
