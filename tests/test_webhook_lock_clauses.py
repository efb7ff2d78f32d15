"""The row locks of services/events.py and services/webhook_delivery.py: PostgreSQL only (SQLite's
BEGIN IMMEDIATE already serializes writers, and peewee refuses a locking clause on SQLite), so
each is checked at the SQL its query renders for PostgreSQL, the statement PostgreSQL receives,
while the service runs on a SQLite database of its own: emit locks the endpoints it queues for
FOR KEY SHARE (a concurrent delete waits, an update of the endpoint does not), and claim locks
only the deliveries it may take (FOR UPDATE OF the delivery table, never the endpoint or event
rows joined to them) and skips those another replica holds (SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
import uuid

import peewee as pw
import pytest

from billing.v1 import subscription_pb2
from server.domain import webhooks as rules
from server.domain.access import KeyScope, Principal
from server.persistence import db
from server.services import events, webhook_delivery, webhooks
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALLOWED = frozenset({rules.target("127.0.0.1", 9)})
POSTGRES = pw.PostgresqlDatabase(None)


@pytest.fixture(autouse=True)
def lock_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


@pytest.fixture
def locks(monkeypatch):
    """Spy on `for_update` in the services: the SQL each locked query renders for PostgreSQL
    (through db.for_update as PostgreSQL gets it), while SQLite runs the query as it gets it."""
    rendered: list[str] = []
    real = db.for_update

    def spy(query, **options):
        with monkeypatch.context() as patch:
            patch.setattr(db, "is_postgres", lambda: True)
            locked = real(query, **options)
        rendered.append(POSTGRES.get_sql_context().sql(locked).query()[0])
        return real(query, **options)

    monkeypatch.setattr(events, "for_update", spy)
    monkeypatch.setattr(webhook_delivery, "for_update", spy)
    return rendered


def endpoint(tenant: str) -> str:
    request = webhooks.NewEndpoint(tenant, "http://127.0.0.1:9/hook", ())
    return webhooks.create_endpoint(ADMIN, request, now=T0, allowed=ALLOWED).id


def emit(tenant: str) -> str | None:
    resource = subscription_pb2.Subscription(id=f"sub_{tenant}", tenant_id=tenant, plan_id="standard")
    with db.database.atomic():
        return events.emit(rules.EventType.SUBSCRIPTION_CREATED, tenant, resource, now=T0)


def test_emit_locks_the_endpoints_it_queues_for_for_key_share(locks):
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    endpoint_id = endpoint(tenant)
    assert emit(tenant) is not None
    [sql] = locks
    assert sql.startswith('SELECT "t1"."id" FROM "webhook_endpoint" AS "t1" WHERE ("t1"."id" IN (')
    assert sql.endswith(") FOR KEY SHARE")
    assert [a.endpoint_id for a in webhook_delivery.claim(T0, busy=set(), limit=5)] == [endpoint_id]


def test_claim_locks_only_the_deliveries_and_skips_the_locked(locks):
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    endpoint_id = endpoint(tenant)
    emit(tenant)
    assert [a.endpoint_id for a in webhook_delivery.claim(T0, busy=set(), limit=5)] == [endpoint_id]
    [*_, sql] = locks
    assert ' FROM "webhook_delivery" AS "t1" INNER JOIN ' in sql  # t1: the deliveries, and no other table
    assert sql.endswith(' LIMIT %s FOR UPDATE OF "t1" SKIP LOCKED')
