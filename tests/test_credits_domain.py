"""Pure rules of credits: spending order, application, restore, expiry, void, credit notes and the
spend lines the gateway and webhooks act on; the ledger invariant under any sequence of them."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import credits
from server.domain.credits import Crossing, Entry, EntryKind, Grant, Spend
from server.domain.errors import FailedPrecondition, InvalidArgument

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def grant(gid: str, remaining: int = 1000, *, priority: int = 50, age: int = 0, expires: int | None = None, **kw):
    """A grant created `age` hours before T0, expiring `expires` hours after T0 (None: never)."""
    return Grant(
        id=gid,
        currency=kw.pop("currency", "USD"),
        remaining_cents=remaining,
        priority=priority,
        created_at=T0 - age * HOUR,
        expires_at=None if expires is None else T0 + expires * HOUR,
        **kw,
    )


def test_order_is_priority_then_earliest_expiry_with_none_last_then_oldest():
    grants = [
        grant("no-expiry-old", age=9),
        grant("late", expires=50),
        grant("soon", expires=5),
        grant("first", priority=1),
        grant("no-expiry-new", age=1),
        grant("last", priority=100, expires=1),
    ]
    order = [g.id for g in credits.spending_order(grants, "USD", T0)]
    assert order == ["first", "soon", "late", "no-expiry-old", "no-expiry-new", "last"]


def test_same_priority_and_expiry_goes_by_age_then_id():
    grants = [grant("b", expires=3, age=1), grant("a", expires=3, age=1), grant("c", expires=3, age=2)]
    assert [g.id for g in credits.spending_order(grants, "USD", T0)] == ["c", "a", "b"]


def test_other_currency_spent_expired_and_voided_grants_pay_nothing():
    grants = [
        grant("eur", currency="EUR"),
        grant("empty", remaining=0),
        grant("expired", expires=0),  # expires exactly now: no longer spendable
        grant("voided", voided_at=T0 - HOUR),
        grant("ok", remaining=7, expires=1),
    ]
    assert [g.id for g in credits.spending_order(grants, "USD", T0)] == ["ok"]
    assert credits.balance(grants, "USD", T0) == 7
    assert credits.balance(grants, "EUR", T0) == 1000


def test_apply_takes_in_order_never_more_than_the_total():
    grants = [grant("a", 300, priority=1), grant("b", 500, priority=2), grant("c", 900, priority=3)]
    assert credits.apply(grants, "USD", 700, T0) == [
        Entry("a", EntryKind.APPLIED, -300),
        Entry("b", EntryKind.APPLIED, -400),
    ]
    assert credits.apply(grants, "USD", 800, T0) == [
        Entry("a", EntryKind.APPLIED, -300),
        Entry("b", EntryKind.APPLIED, -500),
    ]
    assert credits.apply(grants, "USD", 301, T0) == [
        Entry("a", EntryKind.APPLIED, -300),
        Entry("b", EntryKind.APPLIED, -1),
    ]
    assert credits.apply(grants, "USD", 0, T0) == []
    assert credits.apply(grants, "USD", 5000, T0)[-1] == Entry("c", EntryKind.APPLIED, -900)
    assert credits.apply(grants, "EUR", 100, T0) == []


def test_credit_line_is_quantity_one_at_a_negative_unit_amount():
    assert credits.credit_line(Entry("a", EntryKind.APPLIED, -250)) == ("Credits applied", "1", "-250", -250)


def test_restore_into_a_live_grant_then_into_an_expired_or_voided_one():
    live = grant("a", 0, expires=1)
    assert credits.restore(live, 300, T0) == [Entry("a", EntryKind.RESTORED, 300)]
    expired = grant("a", 0, expires=0)
    assert credits.restore(expired, 300, T0) == [
        Entry("a", EntryKind.RESTORED, 300),
        Entry("a", EntryKind.EXPIRED, -300),
    ]
    voided = grant("a", 0, voided_at=T0 - HOUR)
    assert credits.restore(voided, 300, T0) == [
        Entry("a", EntryKind.RESTORED, 300),
        Entry("a", EntryKind.VOIDED, -300),
    ]
    voided_and_expired = grant("a", 0, expires=-1, voided_at=T0 - 2 * HOUR)
    assert credits.restore(voided_and_expired, 1, T0)[-1].kind is EntryKind.VOIDED


def test_expire_only_a_grant_past_expiry_that_still_holds_money():
    assert credits.expire(grant("a", 40, expires=0), T0) == Entry("a", EntryKind.EXPIRED, -40)
    assert credits.expire(grant("a", 1, expires=0), T0) == Entry("a", EntryKind.EXPIRED, -1)
    assert credits.expire(grant("a", 40, expires=1), T0) is None
    assert credits.expire(grant("a", 40), T0) is None
    assert credits.expire(grant("a", 0, expires=-1), T0) is None
    assert credits.expire(grant("a", 40, expires=-1, voided_at=T0), T0) is None


def test_void_takes_what_remains_once():
    assert credits.void(grant("a", 40)) == Entry("a", EntryKind.VOIDED, -40)
    assert credits.void(grant("a", 0)) == Entry("a", EntryKind.VOIDED, 0)
    with pytest.raises(FailedPrecondition) as raised:
        credits.void(grant("a", 40, voided_at=T0))
    assert raised.value.reason == "GRANT_VOIDED"
    assert "'a'" in raised.value.message


@pytest.mark.parametrize(
    ("amount", "priority", "currency", "field"),
    [
        (0, 50, "USD", "amount_cents"),
        (10**12 + 1, 50, "USD", "amount_cents"),
        (1, 0, "USD", "priority"),
        (1, 101, "USD", "priority"),
        (1, 50, "usd", "currency"),
        (1, 50, "US", "currency"),
        (1, 50, "USDX", "currency"),
        (1, 50, "U1D", "currency"),
        (1, 50, "ÜSD", "currency"),
    ],
)
def test_check_grant_names_the_field(amount, priority, currency, field):
    with pytest.raises(InvalidArgument) as raised:
        credits.check_grant(amount, priority, currency)
    assert raised.value.violations[0].field == field


def test_check_grant_bounds_are_inclusive():
    credits.check_grant(1, 1, "USD")
    credits.check_grant(10**12, 100, "EUR")
    assert (credits.MIN_PRIORITY, credits.MAX_PRIORITY, credits.DEFAULT_PRIORITY) == (1, 100, 50)


def test_messages_state_the_bounds():
    with pytest.raises(InvalidArgument) as raised:
        credits.check_grant(0, 50, "USD")
    assert raised.value.message == "amount_cents must be between 1 and 1000000000000"
    with pytest.raises(InvalidArgument) as raised:
        credits.check_grant(1, 0, "USD")
    assert raised.value.message == "priority must be between 1 and 100"
    with pytest.raises(InvalidArgument) as raised:
        credits.check_grant(1, 1, "usd")
    assert raised.value.message == "currency must be three upper-case letters (ISO 4217)"


def test_limits():
    assert credits.check_limit(None, "spend_cap_cents") is None
    assert credits.check_limit(1, "spend_cap_cents") == 1
    assert credits.check_limit(10**12, "spend_cap_cents") == 10**12
    assert credits.check_limit(0, "spend_cap_cents", removable=True) is None
    assert credits.check_limit(5, "spend_cap_cents", removable=True) == 5
    with pytest.raises(InvalidArgument):
        credits.check_limit(0, "spend_cap_cents")  # on create, 0 is no cap value
    for value, removable in ((0, False), (-1, True), (10**12 + 1, True)):
        with pytest.raises(InvalidArgument) as raised:
            credits.check_limit(value, "low_balance_alert_cents", removable=removable)
        assert raised.value.violations[0].field == "low_balance_alert_cents"
        assert raised.value.message == "low_balance_alert_cents must be between 1 and 1000000000000"


@pytest.mark.parametrize("status", ["SENT", "OVERDUE", "PAID"])
def test_notes_up_to_the_total(status):
    credits.check_note(status, 1000, 400, 600)
    credits.check_note(status, 1000, 0, 1)
    for amount in (0, 601):
        with pytest.raises(InvalidArgument) as raised:
            credits.check_note(status, 1000, 400, amount)
        assert raised.value.reason == "CREDIT_NOTE_EXCEEDS_TOTAL"
        assert raised.value.violations[0].field == "amount_cents"
        assert raised.value.message == (
            "amount_cents must be between 1 and 600: the invoice's total is 1000 and credit notes already took 400"
        )


@pytest.mark.parametrize("status", ["PENDING", "VOID"])
def test_notes_only_on_issued_invoices(status):
    with pytest.raises(InvalidArgument) as raised:
        credits.check_note(status, 1000, 0, 1)
    assert raised.value.reason == "INVOICE_NOT_CREDITABLE"
    assert raised.value.violations[0].field == "invoice_id"
    assert raised.value.message == f"a credit note needs a SENT, OVERDUE or PAID invoice, not a {status} one"


def test_amount_due():
    assert credits.amount_due("SENT", 1000, 300) == 700
    assert credits.amount_due("OVERDUE", 1000, 1000) == 0
    assert credits.amount_due("PENDING", 1000, 0) == 1000
    assert credits.amount_due("PAID", 1000, 0) == 0
    assert credits.amount_due("VOID", 1000, 0) == 0


def spend(**kw) -> Spend:
    figures = {"balance_cents": 1000, "accrued_cents": 0, "prepaid": False, "has_credit": True} | kw
    return Spend(**figures)


def test_crossings_at_their_exact_bounds():
    assert spend(accrued_cents=400).available_cents == 600
    assert spend(accrued_cents=400, billed_cents=300).available_cents == 900
    assert credits.crossed(spend(low_balance_alert_cents=600, accrued_cents=400)) == []
    assert credits.crossed(spend(low_balance_alert_cents=600, accrued_cents=401)) == [Crossing.LOW]
    assert credits.crossed(spend(accrued_cents=999)) == []
    assert credits.crossed(spend(accrued_cents=1000)) == [Crossing.EXHAUSTED]
    assert credits.crossed(spend(accrued_cents=1000, low_balance_alert_cents=1)) == [Crossing.LOW, Crossing.EXHAUSTED]
    assert credits.crossed(spend(accrued_cents=499, spend_cap_cents=500)) == []
    assert credits.crossed(spend(accrued_cents=500, spend_cap_cents=500)) == [Crossing.SPEND_CAP]


def test_credit_crossings_need_credit_and_the_cap_does_not():
    never = spend(balance_cents=0, accrued_cents=900, has_credit=False, low_balance_alert_cents=100)
    assert credits.crossed(never) == []
    assert credits.crossed(dataclasses.replace(never, spend_cap_cents=900)) == [Crossing.SPEND_CAP]


def test_denial():
    assert credits.denial(spend(prepaid=True, accrued_cents=999)) is None
    assert credits.denial(spend(prepaid=True, accrued_cents=1000)) == "CREDITS_EXHAUSTED"
    # The period's invoice already took its credit: the balance left is not spent twice.
    assert credits.denial(spend(prepaid=True, balance_cents=1, accrued_cents=1000, billed_cents=1000)) is None
    assert credits.denial(spend(accrued_cents=500, billed_cents=500, spend_cap_cents=500)) == "SPEND_CAP_REACHED"
    assert credits.denial(spend(prepaid=True, accrued_cents=1000, spend_cap_cents=1)) == "CREDITS_EXHAUSTED"
    assert credits.denial(spend(accrued_cents=5000)) is None
    assert credits.denial(spend(accrued_cents=499, spend_cap_cents=500)) is None
    assert credits.denial(spend(accrued_cents=500, spend_cap_cents=500)) == "SPEND_CAP_REACHED"
    assert credits.denial(spend(prepaid=True, accrued_cents=500, spend_cap_cents=500)) == "SPEND_CAP_REACHED"


def test_crossing_key():
    assert credits.crossing_key(Crossing.LOW, "sub_1", [42, 100]) == "credits.low:sub_1:42:100"
    assert credits.crossing_key(Crossing.SPEND_CAP, "sub_1", []) == "spend_cap.reached:sub_1"


# --- the ledger invariant ------------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 5000), st.integers(1, 3), st.none() | st.integers(1, 20)),
        st.tuples(st.just("invoice"), st.integers(0, 8000)),
        st.tuples(st.just("void_invoice"), st.integers(0, 30)),
        st.tuples(st.just("void_grant"), st.integers(0, 30)),
        st.tuples(st.just("tick"), st.integers(1, 6)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_ledger_sums_to_every_grants_remaining_and_never_spends_twice(sequence):
    """Any sequence of grants, invoices, invoice voids, grant voids and passing hours: each grant's
    entries add up to what it has left, which is never negative; an invoice takes at most its
    total; the balance is what the spendable grants hold; a void gives back exactly what was taken."""
    now = T0
    grants: dict[str, Grant] = {}
    ledger: list[Entry] = []
    invoices: list[list[Entry]] = []

    def record(entries):
        for entry in entries:
            ledger.append(entry)
            g = grants[entry.grant_id]
            grants[entry.grant_id] = dataclasses.replace(g, remaining_cents=g.remaining_cents + entry.delta)

    for step in sequence:
        if step[0] == "grant":
            _, amount, priority, hours = step
            gid = f"g{len(grants)}"
            expires = None if hours is None else now + hours * HOUR
            grants[gid] = Grant(gid, "USD", 0, priority, now, expires)
            record([Entry(gid, EntryKind.GRANTED, amount)])
        elif step[0] == "invoice":
            before = credits.balance(grants.values(), "USD", now)
            taken = credits.apply(grants.values(), "USD", step[1], now)
            assert -sum(e.delta for e in taken) == min(step[1], before)
            record(taken)
            invoices.append(taken)
        elif step[0] == "void_invoice" and invoices:
            taken = invoices.pop(step[1] % len(invoices))
            restored = [e for t in taken for e in credits.restore(grants[t.grant_id], -t.delta, now)]
            assert sum(e.delta for e in restored if e.kind is EntryKind.RESTORED) == -sum(t.delta for t in taken)
            record(restored)
        elif step[0] == "void_grant" and grants:
            g = list(grants.values())[step[1] % len(grants)]
            if g.voided_at is None:
                record([credits.void(g)])
                grants[g.id] = dataclasses.replace(grants[g.id], voided_at=now)
        elif step[0] == "tick":
            now += step[1] * HOUR
            record([e for g in list(grants.values()) if (e := credits.expire(g, now))])
        for g in grants.values():
            assert g.remaining_cents == sum(e.delta for e in ledger if e.grant_id == g.id)
            assert g.remaining_cents >= 0
            if not g.spendable(now):
                assert g.remaining_cents == 0
        spendable = [g for g in grants.values() if g.spendable(now)]
        assert credits.balance(grants.values(), "USD", now) == sum(g.remaining_cents for g in spendable)
