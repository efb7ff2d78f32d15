"""Which database refusal generate_invoice turns into ALREADY_EXISTS: only the one-live-invoice-per-
period index's; any other integrity error is a fault and propagates. Both backends (PostgreSQL names
the index, SQLite its columns), each on a database of the test's own."""

from __future__ import annotations

import datetime as dt

import peewee as pw
import pytest

from factories import insert_subscription
from server.domain.access import SYSTEM
from server.domain.errors import AlreadyExists
from server.domain.issuer import Issuer
from server.persistence import db
from server.persistence.models import Invoice, NumberSequence
from server.services import invoices

ANCHOR = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.timezone.utc)
ISSUER = Issuer("Issuer", "Street 1", "T-1")


def generate(subscription_id: str) -> invoices.InvoiceView:
    return invoices.generate_invoice(subscription_id, now=ANCHOR, issuer=ISSUER, principal=SYSTEM)


def test_a_second_live_invoice_of_a_period_is_already_exists_naming_the_first(own_database_url):
    sub = insert_subscription("conflict-live", anchor=ANCHOR)
    with db.session():
        first = generate(sub.id)
        with pytest.raises(AlreadyExists, match=f"already has invoice {first.id} \\({first.number}\\)$") as error:
            generate(sub.id)
        assert error.value.reason == "INVOICE_EXISTS"


def test_another_integrity_error_propagates_and_writes_nothing(own_database_url):
    """An invoice number already taken (the sequence set back by hand) is no conflict of periods."""
    taken = insert_subscription("conflict-number-a", anchor=ANCHOR)
    sub = insert_subscription("conflict-number-b", anchor=ANCHOR)
    with db.session():
        generate(taken.id)
        NumberSequence.update(value=NumberSequence.value - 1).where(
            NumberSequence.name == invoices.NUMBER_SEQUENCE
        ).execute()
        with pytest.raises(pw.IntegrityError):
            generate(sub.id)
        assert Invoice.select().where(Invoice.subscription == sub.id).count() == 0
