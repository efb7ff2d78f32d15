"""Migration 0002 on a database that 0001 made and that holds data: nothing is lost, the new
columns are filled in, and the period of a VOID invoice can be invoiced again."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from conftest import fresh_postgres_database, postgres_unreachable_reason
from server.persistence import db, migrations
from server.persistence.models import Invoice, InvoiceLineItem, UsageDay

ANCHOR = dt.datetime(2026, 1, 10, 12, 0)


@contextlib.contextmanager
def bound(url):
    """Point the global handle at `url` for the block (the stack's server is idle meanwhile)."""
    saved = db.database.obj
    db.connect(url)
    try:
        with db.session():
            yield
    finally:
        db.database.obj.close()
        db.database.initialize(saved)


def _at_0001() -> None:
    db.database.create_tables([migrations.SchemaMigration])
    migrations._0001_initial(None)
    migrations.SchemaMigration.insert(name="0001_initial", applied_at=ANCHOR).execute()
    sql = db.database.execute_sql
    p = db.database.obj.param
    sql("INSERT INTO plan (id, name, tier, position, monthly_fee_cents, currency, rate_limit_per_minute,"
        " included_requests, overage_per_1k_cents) VALUES ('standard', 'Standard', 'STANDARD', 1, 2900, 'USD', 200,"
        " 100000, 50)")
    sql(f"INSERT INTO subscription (id, tenant_id, plan_id, billing_email, status, anchor_at, current_period_start,"
        f" current_period_end, created_at, updated_at) VALUES ('sub_1', 'acme', 'standard', 'acme@example.com',"
        f" 'ACTIVE', {p}, {p}, {p}, {p}, {p})", (ANCHOR, ANCHOR, ANCHOR + dt.timedelta(days=31), ANCHOR, ANCHOR))
    sql(f"INSERT INTO usage_event (subscription_id, event_id, endpoint, count, occurred_at, received_at)"
        f" VALUES ('sub_1', 'e1', '/a', 5, {p}, {p}), ('sub_1', 'e2', '/a', 7, {p}, {p})",
        (ANCHOR + dt.timedelta(hours=1), ANCHOR, ANCHOR + dt.timedelta(days=2, hours=1), ANCHOR))
    sql(f"INSERT INTO invoice (id, number, subscription_id, tenant_id, status, period_start, period_end,"
        f" subtotal_cents, total_cents, currency, issued_at, due_at, created_at) VALUES ('inv_1', 'INV-000001',"
        f" 'sub_1', 'acme', 'VOID', {p}, {p}, 3017, 3017, 'USD', {p}, {p}, {p})",
        (ANCHOR, ANCHOR + dt.timedelta(days=31), ANCHOR, ANCHOR, ANCHOR))
    sql("INSERT INTO invoice_line_item (invoice_id, position, description, quantity, unit_amount_cents, amount_cents)"
        " VALUES ('inv_1', 0, 'Standard plan, 12 of 31 days', 1, 2900, 1123),"
        " ('inv_1', 1, 'Overage: 2,345 requests over 100,000 included', 2345, 50, 117)")


def backends():
    yield "sqlite"
    yield pytest.param("postgresql", marks=pytest.mark.postgres)


@pytest.mark.parametrize("backend", backends())
def test_0002_keeps_data_and_fills_new_columns(backend, tmp_path):
    if backend == "sqlite":
        context = contextlib.nullcontext(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        reason = postgres_unreachable_reason()
        if reason:
            pytest.skip(reason)
        context = fresh_postgres_database()
    with context as url, bound(url):
        _at_0001()
        assert migrations.migrate() == ["0002_segments_snapshots_dead_letters", "0003_webhooks"]
        assert migrations.migrate() == []
        invoice = Invoice.get_by_id("inv_1")
        assert (invoice.billing_email, invoice.total_cents, invoice.number) == ("acme@example.com", 3017, "INV-000001")
        lines = [(i.quantity_milli, i.unit, i.unit_amount_cents, i.amount_cents)
                 for i in InvoiceLineItem.select().order_by(InvoiceLineItem.position)]
        assert lines == [(1000, "month", 1123, 1123), (2345, "1,000 requests", 50, 117)]
        assert {r.day: r.requests for r in UsageDay.select()} == {0: 5, 2: 7}
        # The VOID invoice no longer holds its period.
        Invoice.insert({**{f.name: getattr(invoice, f.name) for f in Invoice._meta.sorted_fields},
                        "id": "inv_2", "number": "INV-000002", "status": "PENDING"}).execute()
        assert Invoice.select().count() == 2
