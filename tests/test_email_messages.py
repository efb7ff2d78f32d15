"""E-mail building and the folder sender, without a database (usage alerts carry their figures, invoice
e-mails are handed their invoice)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from server.config import Settings
from server.domain.invoicing import InvoiceLine
from server.notifications import sender as senders
from server.notifications.email import build_message, message_id
from server.persistence.read_models import InvoiceView

ALERT = {
    "subscription_id": "sub_1",
    "tenant_id": "<script>alert(1)</script>",
    "plan": "Standard",
    "threshold": 80,
    "requests": 80_000,
    "included": 100_000,
    "period_start": "2025-01-01T00:00:00+00:00",
    "period_end": "2025-02-01T00:00:00+00:00",
}


def test_usage_alert_has_text_and_autoescaped_html():
    message = build_message(
        template="usage_alert",
        recipient="ops@example.com",
        payload=ALERT,
        from_address="billing@localhost",
        dedup_key="usage_alert:sub_1:2025-01-01T00:00:00+00:00:80",
    )
    assert message["To"] == "ops@example.com" and message["From"] == "billing@localhost"
    assert message["Subject"] == "Usage alert: 80% of included requests used (Standard plan)"
    assert message["Message-ID"] == message_id("usage_alert:sub_1:2025-01-01T00:00:00+00:00:80")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "80,000 of the 100,000" in text and "<script>alert(1)</script>" in text
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_folder_sender_writes_eml_named_by_dedup_key(tmp_path):
    sender = senders.from_settings(Settings(outbox_dir=tmp_path / "outbox"))
    assert isinstance(sender, senders.FolderSender)
    key = "usage_alert:sub_1:2025-01-01T00:00:00+00:00:100"
    message = build_message(
        template="usage_alert",
        recipient="ops@example.com",
        payload={**ALERT, "threshold": 100, "requests": 100_000},
        from_address="billing@localhost",
        dedup_key=key,
    )
    sender.send(message, key)
    sender.send(message, key)  # a resend overwrites the same file
    [path] = list((tmp_path / "outbox").iterdir())
    assert path == sender.path_for(key) and path.suffix == ".eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"].startswith("Usage alert: 100%")


def test_smtp_url_selects_smtp_sender():
    sender = senders.from_settings(Settings(smtp_url="smtp://127.0.0.1:2525"))
    assert isinstance(sender, senders.SmtpSender) and (sender.host, sender.port) == ("127.0.0.1", 2525)


def test_an_invoice_email_without_its_invoice_is_refused_not_rendered_from_a_query():
    with pytest.raises(LookupError, match="^the invoice_issued e-mail needs its invoice$"):
        build_message(
            template="invoice_issued",
            recipient="ops@example.com",
            payload={"invoice_id": "inv_1"},
            from_address="billing@localhost",
            dedup_key="invoice_issued:inv_1",
        )


def test_an_invoice_email_shows_the_invoice_it_is_handed():
    at = dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc)
    line = InvoiceLine("Standard plan, January", "1", "month", "2900", 2900, 2900)
    invoice = InvoiceView(
        *("inv_1", "INV-000042", "sub_1", "acme", "OVERDUE", at - dt.timedelta(days=31), at, 2900, 2900, "USD"),
        *("ops@example.com", "Issuer", "Street 1", "T-1", at, at + dt.timedelta(days=14), None, None, (line,)),
    )
    message = build_message(
        template="invoice_overdue",
        recipient="ops@example.com",
        payload={"invoice_id": "inv_1"},
        from_address="billing@localhost",
        dedup_key="invoice_overdue:inv_1",
        invoice=invoice,
    )
    assert message["Subject"] == "Overdue: invoice INV-000042 for $29.00"
    text = message.get_body(("plain",)).get_content()
    assert "invoice INV-000042 for $29.00 was due on 2025-02-15" in text and "sub_1 (acme)" in text
