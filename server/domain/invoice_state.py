"""The invoice status workflow of API.md, as data: which moves are allowed, which may be deleted."""

from __future__ import annotations

from server.domain.errors import InvalidArgument

PENDING, SENT, PAID, OVERDUE, VOID = "PENDING", "SENT", "PAID", "OVERDUE", "VOID"
STATUSES = (PENDING, SENT, PAID, OVERDUE, VOID)

TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    (PENDING, SENT), (PENDING, VOID),
    (SENT, PAID), (SENT, OVERDUE), (SENT, VOID),
    (OVERDUE, PAID), (OVERDUE, VOID),
})
DELETABLE = frozenset({PENDING, VOID})


def check_transition(current: str, target: str) -> None:
    """Raise InvalidArgument naming both states unless current → target is a workflow move."""
    if (current, target) not in TRANSITIONS:
        raise InvalidArgument(f"status cannot change from {current} to {target}",
                              field="status", reason="ILLEGAL_TRANSITION")


def check_deletable(status: str) -> None:
    """Only PENDING and VOID invoices may be (soft-)deleted: anything else is or was owed."""
    if status not in DELETABLE:
        raise InvalidArgument(f"an invoice in status {status} cannot be deleted; only PENDING or VOID can",
                              field="status", reason="NOT_DELETABLE")
