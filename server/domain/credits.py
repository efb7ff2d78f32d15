"""Prepaid credit, credit notes and spend control, pure: which grants pay an invoice and how much,
what voiding it gives back, how far credit notes may go, and when a tenant's spend crosses a line
that webhooks announce and the gateway enforces.

Every change to a grant's remaining amount is a ledger entry whose signed `delta` is that change,
so a grant's entries always add up to what it has left. A grant's money leaves it by APPLIED (an
invoice took it), EXPIRED (its expiry passed) or VOIDED (an operator voided the grant) and comes
back by RESTORED (the invoice that took it was voided or deleted). What an invoice gives back to a
grant that has expired or been voided since is restored and leaves again at once (RESTORED, then
EXPIRED or VOIDED): the money is accounted for, and none of it can be spent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Sequence

from server.domain.errors import FailedPrecondition, InvalidArgument

MAX_GRANT_CENTS = 10**12
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 1, 100, 50
CREDIT_LINE = "Credits applied"
CREDIT_UNIT = "credit"
NOTE_STATUSES = frozenset({"SENT", "OVERDUE", "PAID"})


class EntryKind(enum.StrEnum):
    GRANTED = "GRANTED"
    APPLIED = "APPLIED"
    RESTORED = "RESTORED"
    EXPIRED = "EXPIRED"
    VOIDED = "VOIDED"


@dataclasses.dataclass(frozen=True)
class Grant:
    """What the rules read of a credit grant."""

    id: str
    currency: str
    remaining_cents: int
    priority: int
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    voided_at: dt.datetime | None = None

    def spendable(self, now: dt.datetime) -> bool:
        """Neither voided nor expired at `now` (a grant expires at its expires_at instant)."""
        return self.voided_at is None and (self.expires_at is None or now < self.expires_at)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ledger entry: `delta` is the change of the grant's remaining amount."""

    grant_id: str
    kind: EntryKind
    delta: int


def spending_order(grants: Iterable[Grant], currency: str, now: dt.datetime) -> list[Grant]:
    """The grants that can pay in `currency` at `now`, in the order they pay: lower priority
    first, then the earliest expiry (none last), then the oldest (then by id, for a total order)."""
    usable = [g for g in grants if g.currency == currency and g.remaining_cents > 0 and g.spendable(now)]
    return sorted(
        usable, key=lambda g: (g.priority, g.expires_at is None, g.expires_at or g.created_at, g.created_at, g.id)
    )


def apply(grants: Iterable[Grant], currency: str, total_cents: int, now: dt.datetime) -> list[Entry]:
    """The APPLIED entries that pay an invoice of `total_cents` from the grants, in spending
    order, each grant giving at most what it has left; they never take more than the total."""
    entries = []
    left = total_cents
    for grant in spending_order(grants, currency, now):
        if left <= 0:
            break
        taken = min(grant.remaining_cents, left)
        entries.append(Entry(grant.id, EntryKind.APPLIED, -taken))
        left -= taken
    return entries


def balance(grants: Iterable[Grant], currency: str, now: dt.datetime) -> int:
    """What the grants can still pay in `currency` at `now`."""
    return sum(g.remaining_cents for g in spending_order(grants, currency, now))


def restore(grant: Grant, taken_cents: int, now: dt.datetime) -> list[Entry]:
    """What voiding or deleting an invoice that took `taken_cents` from `grant` writes: RESTORED,
    and at once EXPIRED (or VOIDED) again if the grant can no longer be spent."""
    entries = [Entry(grant.id, EntryKind.RESTORED, taken_cents)]
    if grant.voided_at is not None:
        entries.append(Entry(grant.id, EntryKind.VOIDED, -taken_cents))
    elif not grant.spendable(now):
        entries.append(Entry(grant.id, EntryKind.EXPIRED, -taken_cents))
    return entries


def expire(grant: Grant, now: dt.datetime) -> Entry | None:
    """The EXPIRED entry of a grant past its expiry that still holds money, else None."""
    if grant.voided_at is None and grant.remaining_cents > 0 and not grant.spendable(now):
        return Entry(grant.id, EntryKind.EXPIRED, -grant.remaining_cents)
    return None


def void(grant: Grant) -> Entry:
    """Voiding takes what remains (an entry of 0 for a spent grant: the act is still recorded)."""
    if grant.voided_at is not None:
        raise FailedPrecondition(f"credit grant {grant.id!r} is already voided", reason="GRANT_VOIDED")
    return Entry(grant.id, EntryKind.VOIDED, -grant.remaining_cents)


def credit_line(applied: Entry) -> tuple[str, str, str, int]:
    """An invoice line for one grant used: (description, quantity, unit_amount, amount_cents),
    quantity 1 at a negative unit amount (an exact decimal string in minor units, as lines have)."""
    return CREDIT_LINE, "1", str(applied.delta), applied.delta


def check_grant(amount_cents: int, priority: int, currency: str) -> None:
    """A grant's own figures: 1..10^12 cents, priority 1..100, an ISO 4217-shaped currency."""
    if not 1 <= amount_cents <= MAX_GRANT_CENTS:
        raise InvalidArgument(f"amount_cents must be between 1 and {MAX_GRANT_CENTS}", field="amount_cents")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidArgument(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}", field="priority")
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()):
        raise InvalidArgument("currency must be three upper-case letters (ISO 4217)", field="currency")


def check_limit(value: int | None, field: str, *, removable: bool = False) -> int | None:
    """A spend cap or low-balance alert: None (unset), 1..10^12 cents, or 0 where `removable`
    (an update removing it: None)."""
    if value is None or (removable and value == 0):
        return None
    if not 1 <= value <= MAX_GRANT_CENTS:
        raise InvalidArgument(f"{field} must be between 1 and {MAX_GRANT_CENTS}", field=field)
    return value


def check_note(status: str, total_cents: int, credited_cents: int, amount_cents: int) -> None:
    """A credit note is taken on a SENT, OVERDUE or PAID invoice, and the invoice's notes together
    never exceed its total."""
    if status not in NOTE_STATUSES:
        raise InvalidArgument(
            f"a credit note needs a SENT, OVERDUE or PAID invoice, not a {status} one",
            field="invoice_id",
            reason="INVOICE_NOT_CREDITABLE",
        )
    left = total_cents - credited_cents
    if not 1 <= amount_cents <= left:
        raise InvalidArgument(
            f"amount_cents must be between 1 and {left}: the invoice's total is {total_cents} "
            f"and credit notes already took {credited_cents}",
            field="amount_cents",
            reason="CREDIT_NOTE_EXCEEDS_TOTAL",
        )


def amount_due(status: str, total_cents: int, credited_cents: int) -> int:
    """What the customer still owes: nothing on a PAID or VOID invoice, else the total less its
    credit notes."""
    if status in ("PAID", "VOID"):
        return 0
    return total_cents - credited_cents


class Crossing(enum.StrEnum):
    """A line a tenant's spend crosses, each announced once per crossing (webhook event types)."""

    LOW = "credits.low"
    EXHAUSTED = "credits.exhausted"
    SPEND_CAP = "spend_cap.reached"


@dataclasses.dataclass(frozen=True)
class Spend:
    """A subscription's spend now: its tenant's credit balance in its currency, what the period's
    invoice would total if generated now (or, once generated, did total before credits), and the
    subscription's optional lines. The cap counts the whole period; the credit only what no
    invoice has taken it for yet."""

    balance_cents: int
    accrued_cents: int
    prepaid: bool
    has_credit: bool  # the tenant was ever granted credit in the currency
    spend_cap_cents: int | None = None
    low_balance_alert_cents: int | None = None
    billed_cents: int = 0  # of accrued, what an invoice of the period already took credit for

    @property
    def available_cents(self) -> int:
        """Credit left once what the period owes and no invoice has billed yet is paid."""
        return self.balance_cents - (self.accrued_cents - self.billed_cents)


def crossed(spend: Spend) -> list[Crossing]:
    """The lines the spend is past now. Credit lines only concern a tenant that had credit."""
    found = []
    low = spend.low_balance_alert_cents
    if spend.has_credit and low is not None and spend.available_cents < low:
        found.append(Crossing.LOW)
    if spend.has_credit and spend.available_cents <= 0:
        found.append(Crossing.EXHAUSTED)
    if spend.spend_cap_cents is not None and spend.accrued_cents >= spend.spend_cap_cents:
        found.append(Crossing.SPEND_CAP)
    return found


def denial(spend: Spend) -> str | None:
    """The gateway's answer for this spend: a PREPAID plan stops once available is 0 or less
    (CREDITS_EXHAUSTED), any plan once accrued reaches its cap (SPEND_CAP_REACHED)."""
    if spend.prepaid and spend.available_cents <= 0:
        return "CREDITS_EXHAUSTED"
    if spend.spend_cap_cents is not None and spend.accrued_cents >= spend.spend_cap_cents:
        return "SPEND_CAP_REACHED"
    return None


def crossing_key(crossing: Crossing, subscription_id: str, episode: Sequence[object]) -> str:
    """The dedup key that makes a crossing announced once: the same line, subscription and
    episode (for credit lines, the latest credit that came in; for the cap, the period and cap
    value) are one crossing; a new grant or a new cap or period starts another."""
    return ":".join([str(crossing), subscription_id, *map(str, episode)])
