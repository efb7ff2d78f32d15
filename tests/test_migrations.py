"""Migrations on a database that 0001 made and that holds data: nothing is lost, 0002's new
columns are filled in and the period of a VOID invoice can be invoiced again, 0005 counts the raw
events per plan segment; a further
(throwaway) migration applies the same way; `billing-server migrate` runs under a lock; and
servers refuse a schema that is behind."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess

import peewee as pw
import pytest
from playhouse import migrate as operations

from processes import BIN, migrate
from server.persistence import db, migrations
from server.persistence.models import Invoice, InvoiceLineItem, UsageSegment
from stores import bound, new_database

ANCHOR = dt.datetime(2026, 1, 10, 12, 0)


def _at_0001() -> None:
    db.database.create_tables([migrations.SchemaMigration])
    migrations._0001_initial(None)
    migrations.SchemaMigration.insert(name="0001_initial", applied_at=ANCHOR).execute()
    sql = db.database.execute_sql
    p = db.database.obj.param
    sql(
        "INSERT INTO plan (id, name, tier, position, monthly_fee_cents, currency, rate_limit_per_minute,"
        " included_requests, overage_per_1k_cents) VALUES ('standard', 'Standard', 'STANDARD', 1, 2900, 'USD', 200,"
        " 100000, 50)"
    )
    sql(
        f"INSERT INTO subscription (id, tenant_id, plan_id, billing_email, status, anchor_at, current_period_start,"
        f" current_period_end, created_at, updated_at) VALUES ('sub_1', 'acme', 'standard', 'acme@example.com',"
        f" 'ACTIVE', {p}, {p}, {p}, {p}, {p})",
        (ANCHOR, ANCHOR, ANCHOR + dt.timedelta(days=31), ANCHOR, ANCHOR),
    )
    sql(
        f"INSERT INTO plan_change (subscription_id, plan_id, effective_at) VALUES ('sub_1', 'standard', {p}),"
        f" ('sub_1', 'standard', {p})",
        (ANCHOR, ANCHOR + dt.timedelta(days=1)),
    )
    sql(
        f"INSERT INTO usage_event (subscription_id, event_id, endpoint, count, occurred_at, received_at)"
        f" VALUES ('sub_1', 'e1', '/a', 5, {p}, {p}), ('sub_1', 'e2', '/a', 7, {p}, {p})",
        (ANCHOR + dt.timedelta(hours=1), ANCHOR, ANCHOR + dt.timedelta(days=2, hours=1), ANCHOR),
    )
    sql(
        f"INSERT INTO invoice (id, number, subscription_id, tenant_id, status, period_start, period_end,"
        f" subtotal_cents, total_cents, currency, issued_at, due_at, created_at) VALUES ('inv_1', 'INV-000001',"
        f" 'sub_1', 'acme', 'VOID', {p}, {p}, 3017, 3017, 'USD', {p}, {p}, {p})",
        (ANCHOR, ANCHOR + dt.timedelta(days=31), ANCHOR, ANCHOR, ANCHOR),
    )
    sql(
        "INSERT INTO invoice_line_item (invoice_id, position, description, quantity, unit_amount_cents, amount_cents)"
        " VALUES ('inv_1', 0, 'Standard plan, 12 of 31 days', 1, 2900, 1123),"
        " ('inv_1', 1, 'Overage: 2,345 requests over 100,000 included', 2345, 50, 117)"
    )


def segment_counts() -> dict[dt.datetime, int]:
    """0005's backfill: each raw event under the plan change (or period start) at or before it."""
    assert {r.period_start for r in UsageSegment.select()} == {ANCHOR.replace(tzinfo=dt.timezone.utc)}
    return {r.segment_start.replace(tzinfo=None): r.requests for r in UsageSegment.select()}


def backends():
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", backends())
def test_0002_keeps_data_and_fills_new_columns(backend, tmp_path):
    with new_database(backend, tmp_path) as url, bound(url):
        _at_0001()
        assert migrations.migrate()[0] == "0002_segments_snapshots_dead_letters"
        assert migrations.migrate() == []
        invoice = Invoice.get_by_id("inv_1")
        assert (invoice.billing_email, invoice.total_cents, invoice.number) == ("acme@example.com", 3017, "INV-000001")
        lines = [
            (i.quantity_milli, i.unit, i.unit_amount_cents, i.amount_cents)
            for i in InvoiceLineItem.select().order_by(InvoiceLineItem.position)
        ]
        assert lines == [(1000, "month", 1123, 1123), (2345, "1,000 requests", 50, 117)]
        assert segment_counts() == {ANCHOR: 5, ANCHOR + dt.timedelta(days=1): 7}
        assert "usage_day" not in db.database.get_tables()
        # The VOID invoice no longer holds its period.
        Invoice.insert(
            {
                **{f.name: getattr(invoice, f.name) for f in Invoice._meta.sorted_fields},
                "id": "inv_2",
                "number": "INV-000002",
                "status": "PENDING",
            }
        ).execute()
        assert Invoice.select().count() == 2


THROWAWAY = "9001_test_throwaway_plan_note"  # a name no real migration will take


def _throwaway(migrator) -> None:
    """A frozen change of the kind real migrations make: a new column with a default, backfilled."""
    operations.migrate(migrator.add_column("plan", "test_note", pw.CharField(max_length=64, default="")))
    db.database.execute_sql("UPDATE plan SET test_note = name")


@pytest.mark.parametrize("backend", backends())
def test_a_new_migration_on_a_0001_database_keeps_its_data(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (THROWAWAY, _throwaway)])
    with new_database(backend, tmp_path) as url, bound(url):
        _at_0001()
        assert migrations.pending()[-1] == THROWAWAY
        assert migrations.migrate()[-1] == THROWAWAY
        assert migrations.pending() == [] and migrations.migrate() == []
        rows = db.database.execute_sql("SELECT id, name, test_note, monthly_fee_cents FROM plan").fetchall()
        assert [tuple(r) for r in rows] == [("standard", "Standard", "Standard", 2900)]
        assert Invoice.get_by_id("inv_1").total_cents == 3017
        assert segment_counts() == {ANCHOR: 5, ANCHOR + dt.timedelta(days=1): 7}


@pytest.mark.parametrize("backend", backends())
def test_concurrent_migrate_commands_apply_each_migration_once(backend, tmp_path):
    """Without the lock, the second migrator re-runs a migration (a duplicate table or history row) and fails."""
    with new_database(backend, tmp_path) as url:
        env = {**os.environ, "DATABASE_URL": url}
        runs = [
            subprocess.Popen([str(BIN / "billing-server"), "migrate"], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
        assert [code for code, _ in results] == [0, 0], results
        with bound(url):
            names = [row.name for row in migrations.SchemaMigration.select().order_by(migrations.SchemaMigration.name)]
        assert names == [name for name, _ in migrations.MIGRATIONS]


def test_server_and_scheduler_refuse_a_schema_that_is_behind_in_one_line(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}", "BILLING_GRPC_PORT": "0"}
    migrate(env)
    last = migrations.MIGRATIONS[-1][0]
    with sqlite3.connect(tmp_path / "billing.db") as conn:
        conn.execute("DELETE FROM schema_migration WHERE name = ?", (last,))
    for command in (["billing-server"], ["billing-scheduler", "run"]):
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert f"pending: {last}" in lines[0] and "run `billing-server migrate`" in lines[0]
