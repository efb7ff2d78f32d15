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
from billing.v1 import plan_pb2, plan_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import POSTGRES_URL


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


@contextlib.contextmanager
def postgres_closed(url: str):
    name = urllib.parse.urlparse(url).path.lstrip("/")
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True

    def run(sql: str) -> None:
        with admin.cursor() as cur:
            cur.execute(sql)

    run(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        yield
    finally:
        run(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


def database_lost(url: str):
    return sqlite_moved_away(url) if url.startswith("sqlite") else postgres_closed(url)


def grpc_health(stack) -> int:
    stub = stack.stub(health_pb2_grpc.HealthStub)
    return stub.Check(health_pb2.HealthCheckRequest(service="billing.v1.PlanService")).status


def test_lost_database_is_503_and_not_serving_then_recovers(stack):
    with database_lost(stack.settings.database_url):
        health = stack.rest("GET", "/billing/health", key=None)
        assert health.status == 503
        assert health.json()["status"] == "NOT_SERVING" and health.json()["database"] == "unavailable"
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

    assert stack.rest("GET", "/billing/health", key=None).status == 200
    assert grpc_health(stack) == health_pb2.HealthCheckResponse.SERVING
    deadline = time.monotonic() + 10  # PostgreSQL: a stale pooled connection may fail once more
    while (reply := stack.rest("GET", "/billing/plans")).status != 200 and time.monotonic() < deadline:
        assert reply.status == 503
    assert reply.status == 200
