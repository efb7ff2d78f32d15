"""A lost database is a clean 503 everywhere, and the server recovers by itself when it is back.

SQLite: the file is moved away (connections open it mode=rw, so nothing recreates it).
PostgreSQL: the test database stops accepting connections and its sessions are ended.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
import urllib.parse

import grpc
import psycopg2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from billing.v1 import plan_pb2, plan_pb2_grpc
from server.persistence.probe import APPLICATION_NAME, FRESH_SECONDS, DatabaseProbe
from stores import POSTGRES_URL, bound


@contextlib.contextmanager
def sqlite_moved_away(url: str):
    path = pathlib.Path(urllib.parse.urlparse(url).path)
    files = [p for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]
    for p in files:
        p.rename(p.with_name(p.name + ".away"))
    try:
        yield
    finally:
        for p in files:
            p.with_name(p.name + ".away").rename(p)


def postgres_admin(sql: str) -> None:
    with contextlib.closing(psycopg2.connect(POSTGRES_URL)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql)


@contextlib.contextmanager
def postgres_closed(url: str):
    name = urllib.parse.urlparse(url).path.lstrip("/")
    postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    postgres_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        yield
    finally:
        postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def database_lost(url: str):
    return sqlite_moved_away(url) if url.startswith("sqlite") else postgres_closed(url)


def grpc_health(stack) -> int:
    stub = stack.stub(health_pb2_grpc.HealthStub)
    return stub.Check(health_pb2.HealthCheckRequest(service="billing.v1.PlanService")).status


def within_fresh_seconds(check, expected):
    """`check()` until it returns `expected`; health may answer FRESH_SECONDS late, not later."""
    deadline = time.monotonic() + FRESH_SECONDS + 0.5  # the margin: a REST round trip on a busy machine
    while (got := check()) != expected:
        assert time.monotonic() < deadline, f"still {got!r}"
    return got


def test_lost_database_is_503_and_not_serving_then_recovers(stack):
    def rest_health():
        reply = stack.rest("GET", "/billing/health", key=None)
        return reply.status, reply.json()["status"], reply.json()["database"]

    with database_lost(stack.settings.database_url):
        within_fresh_seconds(rest_health, (503, "NOT_SERVING", "unavailable"))
        assert grpc_health(stack) == health_pb2.HealthCheckResponse.NOT_SERVING
        for _ in range(3):  # PostgreSQL: pooled connections each find the server gone once
            plans = stack.rest("GET", "/billing/plans")
            assert plans.status == 503, plans.body
            body = plans.json()
            assert body["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
            assert body["details"][0]["reason"] == "DATABASE_UNAVAILABLE"
            assert not any(word in plans.body.lower() for word in (b"sqlite", b"psycopg", b"select", b"table"))
        stub = stack.stub(plan_pb2_grpc.PlanServiceStub)
        try:
            stub.ListPlans(plan_pb2.ListPlansRequest(), metadata=stack.auth(stack.admin_key))
            raise AssertionError("ListPlans answered without a database")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE

    within_fresh_seconds(rest_health, (200, "SERVING", "ok"))
    assert grpc_health(stack) == health_pb2.HealthCheckResponse.SERVING
    deadline = time.monotonic() + 10  # PostgreSQL: a stale pooled connection may fail once more
    while (reply := stack.rest("GET", "/billing/plans")).status != 200 and time.monotonic() < deadline:
        assert reply.status == 503
    assert reply.status == 200


@pytest.mark.only_backend("sqlite")
def test_health_probe_reads_a_replaced_sqlite_file_afresh(stack):
    """The probe keeps its connection open, which would go on reading the old file: here the
    database (with its WAL) is moved away and another file put in its place, one that is not a
    database, and health must say so."""
    url = stack.settings.database_url
    with bound(url):  # other modules rebind the global handle
        probe = DatabaseProbe(fresh_seconds=0)
        assert probe.ok()
        with sqlite_moved_away(url):
            pathlib.Path(urllib.parse.urlparse(url).path).write_bytes(b"not a database " * 512)
            assert not probe.ok()
        assert probe.ok()


@pytest.mark.only_backend("postgresql")
def test_health_probe_replaces_an_ended_postgresql_session_at_once(stack):
    """An ended session is not a lost database: the check is tried again on a new connection."""
    url = stack.settings.database_url
    with bound(url):
        probe = DatabaseProbe(fresh_seconds=0)
        assert probe.ok()
        postgres_admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{APPLICATION_NAME}'"
        )
        assert probe.ok()


def test_health_probe_answers_are_at_most_fresh_seconds_old(stack):
    now = [0.0]
    with bound(stack.settings.database_url):
        probe = DatabaseProbe(clock=lambda: now[0])
        assert probe.ok()
        with database_lost(stack.settings.database_url):
            now[0] += FRESH_SECONDS / 2
            assert probe.ok()  # the answer given FRESH_SECONDS / 2 ago
            now[0] += FRESH_SECONDS / 2
            assert not probe.ok()  # asked again
        assert not probe.ok()
        now[0] += FRESH_SECONDS
        assert probe.ok()
