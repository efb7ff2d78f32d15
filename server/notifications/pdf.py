"""Invoice PDFs with fpdf2: one A4 page, core fonts, amounts formatted from integer cents.

Deterministic: the creation date is the invoice's issue time, so the same invoice renders to
the same bytes.
"""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF
from fpdf.enums import Align

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "EUR ", "GBP": "GBP "}
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
HEADER_FILL = (241, 243, 245)


def money(cents: int, currency: str) -> str:
    """1234567 USD -> '$12,345.67' (never through floats)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{CURRENCY_SYMBOLS.get(currency, currency + ' ')}{whole:,}.{frac:02d}"


def _date(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def render_invoice_pdf(invoice, line_items, subscription) -> bytes:
    """The invoice as PDF bytes; `line_items` in display order, `subscription` for the billing e-mail."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(invoice.issued_at)
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author("billing-service")
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    width = pdf.epw
    currency = invoice.currency

    # Title block: INVOICE on the left, number and status on the right.
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 26)
    pdf.cell(width / 2, 12, "INVOICE")
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(width / 2, 7, invoice.number, align=Align.R, new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(pdf.l_margin + width / 2)
    pdf.set_font("Helvetica", "", 10)
    pdf.set_text_color(*MUTED)
    pdf.cell(width / 2, 6, f"Status: {invoice.status}", align=Align.R, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_draw_color(*RULE)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(6)

    # Two columns: who is billed, and the dates.
    top = bottom = pdf.get_y()
    left = [("Billed to", invoice.tenant_id), ("Billing e-mail", subscription.billing_email),
            ("Subscription", subscription.id),
            ("Period", f"{_stamp(invoice.period_start)} to {_stamp(invoice.period_end)}")]
    right = [("Issued", _date(invoice.issued_at)), ("Due", _date(invoice.due_at)), ("Paid", _date(invoice.paid_at))]
    for column_x, column_w, rows in [(pdf.l_margin, width * 0.66, left),
                                     (pdf.l_margin + width * 0.70, width * 0.30, right)]:
        pdf.set_xy(column_x, top)
        for label, value in rows:
            pdf.set_x(column_x)
            pdf.set_font("Helvetica", "", 8)
            pdf.set_text_color(*MUTED)
            pdf.cell(column_w, 4.5, label.upper(), new_x="LEFT", new_y="NEXT")
            pdf.set_font("Helvetica", "", 10)
            pdf.set_text_color(*INK)
            pdf.cell(column_w, 5.5, value, new_x="LEFT", new_y="NEXT")
            pdf.ln(1.5)
        bottom = max(bottom, pdf.get_y())
    pdf.set_y(bottom + 6)

    # Line items.
    pdf.set_font("Helvetica", "", 9.5)
    pdf.set_draw_color(*RULE)
    with pdf.table(col_widths=(88, 20, 31, 31), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
                   headings_style=_headings(), line_height=5, borders_layout="HORIZONTAL_LINES",
                   padding=(2, 2)) as table:
        table.row(["Description", "Qty", "Unit price", "Amount"])
        for item in line_items:
            table.row([item.description, f"{item.quantity:,}", money(item.unit_amount_cents, currency),
                       money(item.amount_cents, currency)])

    # Totals, right-aligned under the amount column.
    pdf.ln(4)
    label_w, value_w = 40, 31
    for label, cents, bold in [("Subtotal", invoice.subtotal_cents, False), ("Total", invoice.total_cents, True)]:
        pdf.set_x(pdf.l_margin + width - label_w - value_w)
        pdf.set_font("Helvetica", "B" if bold else "", 11 if bold else 10)
        pdf.cell(label_w, 7, f"{label} ({currency})" if bold else label, align=Align.R)
        pdf.cell(value_w, 7, money(cents, currency), align=Align.R, new_x="LMARGIN", new_y="NEXT")

    # Footer.
    pdf.set_y(-25)
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(width, 4, f"Invoice {invoice.number} ({invoice.id}). Amounts in {currency}. "
                   f"Payment is due by {_date(invoice.due_at)}.", align=Align.C)
    return bytes(pdf.output())


def _headings():
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD", color=INK, fill_color=HEADER_FILL)
