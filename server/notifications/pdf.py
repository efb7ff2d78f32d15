"""Invoice PDFs with fpdf2: one A4 page laid out here; every amount, price and quantity is
formatted by server/domain/money.py (exact, from integer cents and decimal strings).

Text is set in Noto Sans (the fontpkg-noto-sans package), so any tenant id or e-mail renders; a
character the font lacks becomes U+FFFD, never an error. The packaged font is variable and has
every script Noto Sans covers: parsing and subsetting all of it for each PDF dominated a page's
cost. Once per machine (cached in the temp folder, keyed by the package version) it is cut to its
default instance (Regular: emphasis is size and colour), without layout tables, and to the scripts
an invoice needs (Latin with its extensions, Greek, Cyrillic, punctuation, currency signs).
Everything shown comes from the invoice's own snapshot, so a later change of the subscription,
catalogue or settings never alters it.

Deterministic: the creation date is the invoice's issue time, so the same invoice renders to
the same bytes.

Rendered once per version (`invoice_pdf_bytes`): a page is costly to render, and an issued
invoice changes only in its status, paid date and deletion. The cache is keyed by the whole read
model (every field, the lines included), so a change is a new key: nothing to invalidate, never
stale, and each replica keeps its own cache without talking to the others (they render the same
bytes). It is a bounded LRU in memory: at most PDF_CACHE_SIZE small PDFs with their read models
per process. Storing the bytes with the invoice was the alternative: it would add a
migration, and a render to every status change inside its transaction whether or not the PDF is
ever read.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import pathlib
import tempfile

import fontpkg_noto_sans
from fpdf import FPDF
from fpdf.enums import Align
from fpdf.fonts import FontFace

from server.domain.money import money, quantity, unit_money
from server.persistence.read_models import InvoiceView

FONT = "NotoSans"
PACKAGED_FONT = fontpkg_noto_sans.ROOT / "files" / "NotoSans[wdth,wght].ttf"
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"
SCRIPTS = (
    (0x20, 0x24F),
    (0x370, 0x3FF),
    (0x400, 0x52F),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
    (0xFFFD, 0xFFFD),
)
VARIATION_AND_LAYOUT = ("fvar", "gvar", "avar", "cvar", "HVAR", "MVAR", "STAT", "GSUB", "GPOS", "GDEF")

INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
HEADER_FILL = (241, 243, 245)
PDF_CACHE_SIZE = 1024


def _date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def font_file() -> pathlib.Path:
    """The cut-down font (see the module's docstring), made on first use and written atomically,
    so processes rendering at once never read half a file."""
    version = importlib.metadata.version("fontpkg-noto-sans")
    target = pathlib.Path(tempfile.gettempdir()) / f"billing-notosans-{version}-v1.ttf"
    if not target.exists():
        from fontTools import subset
        from fontTools.ttLib import TTFont

        font = TTFont(str(PACKAGED_FONT))
        for tag in VARIATION_AND_LAYOUT:
            if tag in font:
                del font[tag]
        options = subset.Options()
        options.layout_features, options.hinting, options.name_IDs = [], False, ["*"]
        cutter = subset.Subsetter(options)
        cutter.populate(unicodes=[c for first, last in SCRIPTS for c in range(first, last + 1)])
        cutter.subset(font)
        handle, partial = tempfile.mkstemp(suffix=".ttf", dir=target.parent)
        os.close(handle)
        font.save(partial)
        os.replace(partial, target)
    return target


@functools.cache
def _glyphs() -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(font_file()), lazy=True).getBestCmap())


def printable(text: str) -> str:
    """`text` with every character the font cannot draw replaced by U+FFFD."""
    glyphs = _glyphs()
    return "".join(c if ord(c) in glyphs or c in "\n" else REPLACEMENT for c in text)


@functools.lru_cache(maxsize=PDF_CACHE_SIZE)
def invoice_pdf_bytes(invoice: InvoiceView) -> bytes:
    """render_invoice_pdf, once per version of the invoice (see the module's docstring)."""
    return render_invoice_pdf(invoice)


def render_invoice_pdf(invoice: InvoiceView) -> bytes:
    """The invoice as PDF bytes: its header, lines, totals and footer, top to bottom."""
    pdf = FPDF(format="A4")
    pdf.add_font(FONT, "", str(font_file()))
    pdf.set_creation_date(invoice.issued_at)
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author(printable(invoice.issuer_name))
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    _header(pdf, invoice)
    _lines(pdf, invoice)
    _totals(pdf, invoice)
    _credit_notes(pdf, invoice)
    _footer(pdf, invoice)
    return bytes(pdf.output())


def _header(pdf: FPDF, invoice: InvoiceView) -> None:
    """INVOICE and the issuer on the left, number and status on the right; then two columns: who
    is billed, and the dates."""
    width = pdf.epw
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "", 26)
    pdf.cell(width / 2, 12, "INVOICE")
    pdf.set_font(FONT, "", 13)
    pdf.cell(width / 2, 7, invoice.number, align=Align.R, new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(pdf.l_margin + width / 2)
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*MUTED)
    pdf.cell(width / 2, 6, f"Status: {invoice.status}", align=Align.R, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*INK)
    issuer = [invoice.issuer_name, *invoice.issuer_address.splitlines()]
    if invoice.issuer_tax_id:
        issuer.append(f"Tax id: {invoice.issuer_tax_id}")
    for text in filter(None, issuer):
        pdf.cell(width, 5, printable(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_draw_color(*RULE)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(6)

    top = bottom = pdf.get_y()
    left = [
        ("Billed to", invoice.billing_email),
        ("Account", invoice.tenant_id),
        ("Subscription", invoice.subscription_id),
        ("Period", f"{_stamp(invoice.period_start)} to {_stamp(invoice.period_end)}"),
    ]
    right = [("Issued", _date(invoice.issued_at)), ("Due", _date(invoice.due_at)), ("Paid", _date(invoice.paid_at))]
    for column_x, column_w, rows in [
        (pdf.l_margin, width * 0.66, left),
        (pdf.l_margin + width * 0.70, width * 0.30, right),
    ]:
        pdf.set_xy(column_x, top)
        for label, value in rows:
            pdf.set_x(column_x)
            pdf.set_font(FONT, "", 8)
            pdf.set_text_color(*MUTED)
            pdf.cell(column_w, 4.5, label.upper(), new_x="LEFT", new_y="NEXT")
            pdf.set_font(FONT, "", 10)
            pdf.set_text_color(*INK)
            pdf.multi_cell(column_w, 5.5, printable(value), new_x="LEFT", new_y="NEXT")
            pdf.ln(1.5)
        bottom = max(bottom, pdf.get_y())
    pdf.set_y(bottom + 6)


def _lines(pdf: FPDF, invoice: InvoiceView) -> None:
    """The line items: exact quantities with separators, the unit and the exact unit price (a
    sub-cent price shows every digit), the amount."""
    pdf.set_font(FONT, "", 9)
    pdf.set_draw_color(*RULE)
    with pdf.table(
        col_widths=(66, 24, 26, 24, 26),
        text_align=("LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT"),
        headings_style=FontFace(color=INK, fill_color=HEADER_FILL),
        line_height=5,
        borders_layout="HORIZONTAL_LINES",
        padding=2,
    ) as table:
        table.row(["Description", "Qty", "Unit", "Unit price", "Amount"])
        for item in invoice.line_items:
            table.row(
                [
                    printable(item.description),
                    quantity(item.quantity),
                    printable(item.unit),
                    unit_money(item.unit_amount, invoice.currency),
                    money(item.amount_cents, invoice.currency),
                ]
            )


def _totals(pdf: FPDF, invoice: InvoiceView) -> None:
    """Subtotal and total, right-aligned under the amount column."""
    pdf.ln(4)
    label_w, value_w = 40, 31
    for label, cents, bold in [("Subtotal", invoice.subtotal_cents, False), ("Total", invoice.total_cents, True)]:
        pdf.set_x(pdf.l_margin + pdf.epw - label_w - value_w)
        pdf.set_font(FONT, "", 12 if bold else 10)
        pdf.cell(label_w, 7, f"{label} ({invoice.currency})" if bold else label, align=Align.R)
        pdf.cell(value_w, 7, money(cents, invoice.currency), align=Align.R, new_x="LMARGIN", new_y="NEXT")


def _credit_notes(pdf: FPDF, invoice: InvoiceView) -> None:
    """The invoice's credit notes under its totals, and what is still due after them. Credits
    applied at issue are lines of the table above ("Credits applied"), already in the total."""
    if not invoice.credit_notes:
        return
    width = pdf.epw
    pdf.ln(4)
    pdf.set_font(FONT, "", 10)
    pdf.cell(width, 6, "Credit notes", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    for note in invoice.credit_notes:
        text = f"{note.number}, {_date(note.created_at)}" + (f": {note.reason}" if note.reason else "")
        pdf.cell(width - 31, 5, printable(text)[:120])
        pdf.cell(31, 5, money(-note.amount_cents, invoice.currency), align=Align.R, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 12)
    pdf.set_x(pdf.l_margin + width - 71)
    pdf.cell(40, 7, f"Amount due ({invoice.currency})", align=Align.R)
    pdf.cell(31, 7, money(invoice.amount_due_cents, invoice.currency), align=Align.R, new_x="LMARGIN", new_y="NEXT")


def _footer(pdf: FPDF, invoice: InvoiceView) -> None:
    pdf.set_y(-25)
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(
        pdf.epw,
        4,
        f"Invoice {invoice.number} ({invoice.id}). Amounts in {invoice.currency}. "
        f"Payment is due by {_date(invoice.due_at)}.",
        align=Align.C,
    )
