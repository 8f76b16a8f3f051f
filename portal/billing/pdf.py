"""An invoice as an A4 PDF a customer can file: seller, buyer, lines, totals, status."""

import copy
import logging
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from flask import Response, current_app, make_response
from fontTools import ttLib
from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, XPos, YPos

from portal import mail
from portal.billing.money import format_amount, format_money
from portal.billing.profile import address_lines, tax_id_lines
from portal.extensions import db
from portal.models.billing import Invoice

log = logging.getLogger(__name__)

# Embedded fonts (Debian's fonts-dejavu-core and fonts-wqy-microhei; .ci/run installs them):
# DejaVu Sans has Latin, Greek, Cyrillic, Arabic and Hebrew; the first CJK font found fills in
# Chinese, Japanese and Korean. A character none has (most emoji) is drawn as MISSING_GLYPH.
FONT_DIR = Path("/usr/share/fonts/truetype")
CJK_FONTS = (
    FONT_DIR / "wqy/wqy-microhei.ttc",
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
UNICODE_FAMILY = "DejaVuSans"
MISSING_GLYPH = "\u25a1"  # □, in DejaVu Sans

# Without them, the core fonts are drawn with WinAnsiEncoding, which is cp1252: it has "€", "–", "…" and
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


@dataclass(frozen=True)
class UnicodeFonts:
    """The embedded fonts found on this machine and the characters they can draw together."""

    main: dict[str, Path]  # style ("" or "B") -> file
    fallbacks: list[Path]
    in_main: frozenset[int]  # what DejaVu Sans has
    covered: frozenset[int]  # ...and the fallbacks

    def clean(self, text: object) -> str:
        """Text as drawn: NFC, controls as spaces, and anything no font has (an emoji, say) as a
        visible □ rather than a blank or a "?"."""
        out = []
        for char in unicodedata.normalize("NFC", str(text or "")).replace("\t", "    ").replace("\r", ""):
            if char == "\n" or ord(char) in self.covered:
                out.append(char)
            elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
                # Controls and invisible format characters (joiners, variation selectors' kin).
                out.append(" " if unicodedata.category(char) == "Cc" else "")
            elif unicodedata.category(char) == "Mn" or 0xFE00 <= ord(char) <= 0xFE0F or 0x1F3FB <= ord(char) <= 0x1F3FF:
                continue  # a mark or emoji modifier no font has: drop it, its base is already shown
            else:
                out.append(MISSING_GLYPH)
        return "".join(out)


@cache
def unicode_fonts() -> UnicodeFonts | None:
    """DejaVu Sans (regular and bold) and the first CJK font installed; None, with a warning,
    when DejaVu is missing (the PDF then falls back to the core Helvetica: Latin-1 only)."""
    main = {"": FONT_DIR / "dejavu/DejaVuSans.ttf", "B": FONT_DIR / "dejavu/DejaVuSans-Bold.ttf"}
    missing = [str(path) for path in main.values() if not path.is_file()]
    if missing:
        log.warning(
            "Invoice PDFs use the core Helvetica font (Latin only, other scripts spelled plainly or as ?): "
            "%s not found. Install Debian's fonts-dejavu-core (and fonts-wqy-microhei for Chinese, Japanese "
            "and Korean).",
            ", ".join(missing),
        )
        return None
    fallbacks = [path for path in CJK_FONTS if path.is_file()][:1]
    if not fallbacks:
        log.warning(
            "Invoice PDFs cannot draw Chinese, Japanese or Korean (shown as %s): none of %s is installed "
            "(Debian: fonts-wqy-microhei).",
            MISSING_GLYPH,
            ", ".join(str(path) for path in CJK_FONTS),
        )
    cmaps = []
    for path in [main[""], *fallbacks]:
        with ttLib.TTFont(str(path), fontNumber=0, lazy=True) as font:
            cmaps.append(frozenset(font.getBestCmap() or {}))
    return UnicodeFonts(main, fallbacks, cmaps[0], frozenset().union(*cmaps))


@cache
def _font_template(family: str, style: str, path: Path):
    """The font as fpdf2 reads it (glyph widths and ids: most of the cost of a document), once
    per process; ``InvoiceDocument._add_font`` copies it."""
    reader = FPDF()
    reader.add_font(family, style, str(path))
    return reader.fonts[f"{family.lower()}{style}"]


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
    """A4 pages with the invoice number and page count in every page's footer, in embedded
    Unicode fonts (DejaVu Sans, CJK from a fallback font, right-to-left text shaped), or in the
    core Helvetica when those fonts are missing."""

    def __init__(self, invoice: Invoice, texts: list[str] | None = None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.invoice = invoice
        fonts = unicode_fonts()
        # Loading a font costs more than the rest of the document: the CJK font (5 MB) and text
        # shaping only for a document whose text needs them.
        used = {ord(char) for text in texts or [] for char in str(text or "")}
        if fonts is None:
            self.family, self.clean = FONT, safe_text
            self.core_fonts_encoding = ENCODING
        else:
            self.family, self.clean = UNICODE_FAMILY, fonts.clean
            for style, path in fonts.main.items():
                self._add_font(UNICODE_FAMILY, style, path)
            if used - fonts.in_main and used & fonts.covered:
                for index, path in enumerate(fonts.fallbacks):
                    self._add_font(f"fallback{index}", "", path)  # bold CJK lines use it too
                self.set_fallback_fonts([f"fallback{i}" for i in range(len(fonts.fallbacks))], exact_match=False)
            if any(unicodedata.bidirectional(chr(code)) in ("R", "AL") for code in used):
                # Arabic and Hebrew joined and ordered right to left (HarfBuzz, through uharfbuzz).
                self.set_text_shaping(True)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=22)
        self.alias_nb_pages()

    def _add_font(self, family: str, style: str, path: Path) -> None:
        """``add_font`` without reading the font again: a copy of the one this process read
        first (fpdf2's own copy, which keeps per-document state apart), with the file opened
        afresh, since writing the document subsets that object in place."""
        font = copy.deepcopy(_font_template(family, style, path))
        font.i = len(self.fonts) + 1
        font.ttfont = ttLib.TTFont(str(path), recalcTimestamp=False, fontNumber=0, lazy=True)
        self.fonts[font.fontkey] = font

    def header(self) -> None:
        if self.page_no() == 1:
            return
        # Continuation pages say whose lines they carry; the table repeats its own heading.
        self.set_font(self.family, "", 8)
        self.set_text_color(*MUTED)
        self.cell(
            0,
            5,
            self.clean(f"Invoice {self.invoice.number} (continued)"),
            align="R",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(self.family, "", 8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.clean(f"{self.invoice.number} \u00b7 Page {self.page_no()} of {{nb}}"), align="C")


def render_invoice_pdf(invoice: Invoice, seller: dict) -> bytes:
    """The invoice as PDF bytes; the same invoice always gives the same bytes."""
    buyer = invoice.buyer or {}
    texts = [
        *(str(value) for value in seller.values()),
        invoice.billing_name,
        invoice.billing_email,
        invoice.plan_name,
        invoice.tax_note,
        invoice.void_reason,
        invoice.payment_reference,
        *address_lines(buyer),
        *tax_id_lines(buyer),
        buyer.get("po_number"),
        *(line.description for line in invoice.lines),
    ]
    pdf = InvoiceDocument(invoice, texts)
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
    pdf.set_font(pdf.family, "B", 13)
    pdf.multi_cell(left_width, 6, pdf.clean(seller.get("name")), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "", 9)
    pdf.set_text_color(*MUTED)
    vat_id = f"VAT ID: {seller['vat_id']}" if seller.get("vat_id") else ""
    for part in (seller.get("address"), seller.get("email"), vat_id):
        if part:
            pdf.multi_cell(left_width, 4.5, pdf.clean(part), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    seller_bottom = pdf.get_y()

    right_x, right_width = pdf.w - MARGIN - 80, 80
    pdf.set_xy(right_x, top)
    pdf.set_text_color(*INK)
    pdf.set_font(pdf.family, "B", 26)
    pdf.cell(right_width, 11, "INVOICE", align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "", 11)
    pdf.cell(right_width, 6, pdf.clean(invoice.number), align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
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
        pdf.set_font(pdf.family, "", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(28, 5, label, align="R")
        pdf.set_font(pdf.family, "B" if label == "Status" else "", 9)
        pdf.set_text_color(*INK)
        pdf.cell(right_width - 28, 5, pdf.clean(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

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
    pdf.set_font(pdf.family, "", 9.5)
    pdf.multi_cell(0, 5, pdf.clean(text), border=1, padding=2.5, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)


def _draw_bill_to(pdf: FPDF, invoice: Invoice) -> None:
    top = pdf.get_y()
    width = 100
    pdf.set_font(pdf.family, "B", 8)
    pdf.set_text_color(*MUTED)
    pdf.cell(width, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.set_font(pdf.family, "B", 11)
    pdf.multi_cell(width, 5.5, pdf.clean(invoice.billing_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "", 9.5)
    buyer = invoice.buyer or {}
    lines = [*address_lines(buyer), *tax_id_lines(buyer)]
    if buyer.get("po_number"):
        lines.append(f"Purchase order: {buyer['po_number']}")
    lines.append(invoice.billing_email)
    for line in filter(None, lines):
        pdf.multi_cell(width, 5, pdf.clean(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(width, 5, pdf.clean(f"Tenant ID: {invoice.tenant_id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if invoice.plan_name:
        pdf.multi_cell(width, 5, pdf.clean(f"Plan: {invoice.plan_name}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
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
            pdf.set_font(pdf.family, "B", 30)
            pdf.rect(center_x - width / 2, center_y - height / 2, width, height)
            pdf.set_xy(center_x - width / 2, center_y - height / 2)
            pdf.cell(width, height, word, align="C")


def _draw_lines(pdf: FPDF, invoice: Invoice) -> None:
    pdf.set_text_color(*INK)
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.2)
    pdf.set_font(pdf.family, "", 9.5)
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
        # The discount is shown under the subtotal, where it is taken off (_draw_totals).
        for line in (line for line in invoice.lines if line.type != "discount"):
            table.row(
                (
                    pdf.clean(line.description),
                    format_quantity(line.quantity),
                    pdf.clean(format_amount(line.unit_amount, invoice.currency)),
                    pdf.clean(format_money(line.amount, invoice.currency)),
                )
            )
        if not invoice.lines:
            table.row(("No charges", "", "", ""))
    pdf.ln(4)


def _draw_totals(pdf: FPDF, invoice: Invoice) -> None:
    def money(cents: int) -> str:
        return pdf.clean(format_money(cents, invoice.currency))

    rows = [("Subtotal", money(invoice.subtotal), False)]
    discount_lines = [line for line in invoice.lines if line.type == "discount"]
    rows += [(safe_text(line.description)[:60], money(line.amount), False) for line in discount_lines]
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
    # A discount's row names its coupon: wider labels then.
    label_width, value_width = (100 if discount_lines else 50), 32
    x = pdf.w - MARGIN - label_width - value_width
    pdf.set_draw_color(*RULE)
    for label, value, strong in rows:
        if strong:
            pdf.line(x, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
        pdf.set_x(x)
        pdf.set_text_color(*(INK if strong else MUTED))
        pdf.set_font(pdf.family, "B" if strong else "", 10.5 if strong else 9.5)
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
        pdf.set_font(pdf.family, style, 9.5)
        pdf.multi_cell(0, 5, pdf.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
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


# Recently rendered PDFs, per process: a document takes a few hundred milliseconds of CPU, and the
# same invoice is often fetched again (a customer's second click, an email attachment, the API).
_recent_pdfs: OrderedDict[tuple, bytes] = OrderedDict()
_recent_lock = threading.Lock()
RECENT_PDFS = 32


def invoice_pdf(invoice: Invoice, seller: dict | None = None) -> bytes:
    """``render_invoice_pdf``, reusing this process's copy while the invoice row is unchanged
    (every change to it moves ``updated_at``; its lines never change) and the seller is the same."""
    seller = seller if seller is not None else seller_from_config()
    key = (invoice.id, invoice.updated_at, invoice.status, invoice.amount_paid, invoice.amount_refunded, repr(seller))
    data = _recent_pdfs.get(key)
    if data is None:
        data = render_invoice_pdf(invoice, seller)
        with _recent_lock:  # gthread workers render in threads
            _recent_pdfs[key] = data
            while len(_recent_pdfs) > RECENT_PDFS:
                _recent_pdfs.popitem(last=False)
    return data


def _drawn(invoice_id: str) -> bytes:
    return invoice_pdf(db.session.get(Invoice, invoice_id))


# An email's "invoice_pdf:<id>" attachment is drawn when SMTP sends it (portal.mail.Drawn).
mail.SOURCES["invoice_pdf"] = _drawn


def pdf_download(invoice: Invoice) -> Response:
    """The invoice as a PDF attachment named after its number (the customer's and the operator's)."""
    response = make_response(invoice_pdf(invoice))
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
    return response
