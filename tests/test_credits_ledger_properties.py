"""The credit ledger in the database under any sequence of grants, invoices issued, voided and
deleted, credit notes, grant voids and passing time, through the services on both backends: each
grant's remaining amount is the sum of its ledger entries (checked in SQL), never negative and
never more than was granted (nothing is given back twice);
the balance is what the spendable grants hold; every invoice's credits come to its subtotal less
its total, which is never below 0."""

from __future__ import annotations

import datetime as dt
import uuid

import peewee as pw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from server.domain import credits as rules
from server.domain.access import KeyScope, Principal
from server.domain.errors import DomainError
from server.domain.invoice_state import InvoiceStatus
from server.domain.issuer import Issuer
from server.persistence import db
from server.persistence.models import CreditGrant, CreditLedgerEntry, Invoice
from server.services import credits, invoices
from stores import BACKENDS, own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
START = dt.datetime(2026, 5, 1, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module", params=BACKENDS)
def ledger_database(request, tmp_path_factory):
    with own_database(request.param, tmp_path_factory.mktemp("ledger")), db.session():
        yield


operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 6000), st.integers(1, 3), st.none() | st.integers(1, 48)),
        st.tuples(st.just("issue"), st.sampled_from(["free", "standard", "premium"])),
        st.tuples(st.just("void"), st.integers(0, 20)),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("note"), st.integers(0, 20), st.integers(1, 12000)),
        st.tuples(st.just("void_grant"), st.integers(0, 20)),
        st.tuples(st.just("tick"), st.integers(1, 30)),
    ),
    min_size=1,
    max_size=14,
)


def check(tenant_id: str, now: dt.datetime) -> None:
    sums = dict(
        CreditLedgerEntry.select(CreditLedgerEntry.grant, pw.fn.SUM(CreditLedgerEntry.amount_cents))
        .where(CreditLedgerEntry.tenant_id == tenant_id)
        .group_by(CreditLedgerEntry.grant)
        .tuples()
    )
    grants = list(CreditGrant.select().where(CreditGrant.tenant_id == tenant_id))
    assert {g.id: g.remaining_cents for g in grants} == {gid: int(total) for gid, total in sums.items()}
    assert all(0 <= g.remaining_cents <= g.amount_cents for g in grants)  # nothing restored twice
    spendable = [g for g in grants if g.voided_at is None and (g.expires_at is None or now < g.expires_at)]
    assert credits.balances(tenant_id, now).get("USD", 0) == sum(g.remaining_cents for g in spendable)
    for invoice in Invoice.select().where(Invoice.tenant_id == tenant_id):
        applied = (
            CreditLedgerEntry.select(pw.fn.SUM(CreditLedgerEntry.amount_cents))
            .where((CreditLedgerEntry.invoice_id == invoice.id) & (CreditLedgerEntry.kind == rules.EntryKind.APPLIED))
            .scalar()
            or 0
        )
        assert invoice.total_cents == invoice.subtotal_cents + applied >= 0
        assert invoice.credited_cents <= invoice.total_cents


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_ledger_holds_under_any_sequence(ledger_database, steps):
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    now = START
    issued: list[str] = []
    grant_ids: list[str] = []
    for step in steps:
        try:
            if step[0] == "grant":
                _, amount, priority, hours = step
                expires = None if hours is None else now + hours * HOUR
                request = credits.NewGrant(tenant_id, amount, priority=priority, expires_at=expires)
                grant_ids.append(credits.create_grant(ADMIN, request, now=now).id)
            elif step[0] == "issue":
                sub = insert_subscription(tenant_id, plan=step[1], anchor=START - 3 * 24 * HOUR, status="CANCELED")
                issued.append(invoices.generate_invoice(sub.id, now=now, issuer=ISSUER, principal=ADMIN).id)
            elif step[0] == "void" and issued:
                invoices.set_status(issued[step[1] % len(issued)], InvoiceStatus.VOID, now=now, principal=ADMIN)
            elif step[0] == "delete" and issued:
                invoices.delete_invoice(issued[step[1] % len(issued)], now=now, principal=ADMIN)
            elif step[0] == "note" and issued:
                invoice_id = issued[step[1] % len(issued)]
                if Invoice.get_by_id(invoice_id).status == InvoiceStatus.PENDING:
                    invoices.set_status(invoice_id, InvoiceStatus.SENT, now=now, principal=ADMIN)
                invoices.add_credit_note(invoice_id, step[2], "", now=now, principal=ADMIN)
            elif step[0] == "void_grant" and grant_ids:
                credits.void_grant(ADMIN, grant_ids[step[1] % len(grant_ids)], now=now)
            elif step[0] == "tick":
                now += step[1] * HOUR
        except DomainError:
            pass  # a refused step (a second void, a note past the total, ...) changes nothing
        check(tenant_id, now)
