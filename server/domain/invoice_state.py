"""The invoice status workflow of docs/api.md, as data: which moves are allowed, which may be deleted."""

from __future__ import annotations

import enum

from server.domain.errors import InvalidArgument


class InvoiceStatus(enum.StrEnum):
    """The stored status (Invoice.Status in the proto, by name)."""

    PENDING = "PENDING"
    SENT = "SENT"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOID = "VOID"


TRANSITIONS: frozenset[tuple[InvoiceStatus, InvoiceStatus]] = frozenset(
    {
        (InvoiceStatus.PENDING, InvoiceStatus.SENT),
        (InvoiceStatus.PENDING, InvoiceStatus.VOID),
        (InvoiceStatus.SENT, InvoiceStatus.PAID),
        (InvoiceStatus.SENT, InvoiceStatus.OVERDUE),
        (InvoiceStatus.SENT, InvoiceStatus.VOID),
        (InvoiceStatus.OVERDUE, InvoiceStatus.PAID),
        (InvoiceStatus.OVERDUE, InvoiceStatus.VOID),
    }
)
DELETABLE = frozenset({InvoiceStatus.PENDING, InvoiceStatus.VOID})


def check_transition(current: InvoiceStatus, target: InvoiceStatus) -> None:
    """Raise InvalidArgument naming both states unless current → target is a workflow move."""
    if (current, target) not in TRANSITIONS:
        raise InvalidArgument(
            f"status cannot change from {current} to {target}", field="status", reason="ILLEGAL_TRANSITION"
        )


def check_deletable(status: InvoiceStatus) -> None:
    """Only PENDING and VOID invoices may be (soft-)deleted: anything else is or was owed."""
    if status not in DELETABLE:
        raise InvalidArgument(
            f"an invoice in status {status} cannot be deleted; only PENDING or VOID can",
            field="status",
            reason="NOT_DELETABLE",
        )
