"""services/invoices.py on the paths SQLite does not walk by itself: the live-invoice unique
violation as PostgreSQL reports it (by the index's name, not the columns), and the plan history's
order where two changes share an instant (the SQL sent, since SQLite returns ties by rowid)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid

import peewee as pw
import pytest

from factories import insert_subscription
from server.domain.access import KeyScope, Principal
from server.domain.errors import AlreadyExists
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.persistence import db
from server.persistence.models import ONE_LIVE_INVOICE_INDEX
from server.services import invoices
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)


@pytest.fixture(scope="module", autouse=True)
def invoice_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("invoice-races")), db.session():
        yield


@dataclasses.dataclass
class Diagnostics:  # psycopg2's error.diag, as PostgreSQL fills it for a unique violation
    constraint_name: str


class PostgresError(Exception):
    def __init__(self, constraint: str):
        super().__init__(f'duplicate key value violates unique constraint "{constraint}"')
        self.diag = Diagnostics(constraint)


def violation(constraint: str) -> pw.IntegrityError:
    error = pw.IntegrityError(f'duplicate key value violates unique constraint "{constraint}"')
    error.orig = PostgresError(constraint)
    return error


def generate(monkeypatch, constraint: str):
    """generate_invoice with its insert refused as PostgreSQL refuses it, naming `constraint`."""
    sub = insert_subscription(f"race-{uuid.uuid4().hex[:8]}", anchor=ANCHOR)

    def refused(*args, **kwargs):
        raise violation(constraint)

    monkeypatch.setattr(invoices.Invoice, "create", refused)
    return lambda: invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)


def test_the_live_invoice_index_refusing_the_insert_is_already_exists(monkeypatch):
    with pytest.raises(AlreadyExists) as refused:
        generate(monkeypatch, ONE_LIVE_INVOICE_INDEX)()
    assert "already has an invoice" in refused.value.message


def test_another_constraint_refusing_the_insert_is_not_taken_for_a_duplicate(monkeypatch):
    with pytest.raises(pw.IntegrityError):
        generate(monkeypatch, "invoice_number_key")()


def test_the_plan_history_breaks_a_tie_of_instants_by_the_order_the_changes_were_made(caplog):
    sub = insert_subscription(f"ties-{uuid.uuid4().hex[:8]}", anchor=ANCHOR)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        invoices.plan_history(sub.id)
    sent = [record.getMessage() for record in caplog.records if '"plan_change"' in record.getMessage()]
    assert len(sent) == 1 and 'ORDER BY "t1"."effective_at", "t1"."id"' in sent[0], sent
