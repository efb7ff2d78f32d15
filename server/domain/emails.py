"""The e-mails the service sends, by template: each names its files
(server/notifications/templates/NAME.txt and NAME.html) and the outbox rows that queue it."""

from __future__ import annotations

import enum


class EmailTemplate(enum.StrEnum):
    INVOICE_ISSUED = "invoice_issued"
    INVOICE_OVERDUE = "invoice_overdue"
    USAGE_ALERT = "usage_alert"
    CREDIT_NOTE = "credit_note"
