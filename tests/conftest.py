"""Fixtures. The real stack for tests: a gRPC server on a loopback port and Envoy in front of it,
against a fresh database per backend, SQLite always, PostgreSQL when reachable (else a visible
skip); a database of a test's own where it counts rows; the PlanService alone for pytest-grpc.
Helpers the test modules import live beside it (calls, processes, stores, factories, ...)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import urllib.parse
import uuid

import grpc
import pytest
import webhook_receiver

from billing.v1 import plan_pb2_grpc
from calls import Reply, http_call
from processes import demo_upstream, free_port, in_process_server, running_envoy
from server.bootstrap import prepare
from server.config import Settings
from server.persistence import catalogue, db
from server.readiness import wait_for_grpc, wait_for_http
from server.services import keys
from server.transport.interceptors import Chain, ErrorInterceptor
from stores import BACKENDS, new_database, own_database, prepared

pytest_plugins = ["require_backends"]

# webhooks.target("127.0.0.1", 9) spelled out: a call into server.domain at import fails mutmut's
# forced-fail check (every mutated function raises there), so the mutation gate could not start.
DISCARD = ("127.0.0.1", 9)

# Processes the tests start serve no /metrics unless a test gives them a free port: the default
# ports would collide between parallel runs on one machine.
os.environ["BILLING_METRICS_PORT"] = os.environ["BILLING_SCHEDULER_METRICS_PORT"] = "0"


def pytest_collection_modifyitems(config, items):
    """A test marked `only_backend(name)` runs on that backend's stack alone: the other
    parametrization is deselected, not skipped (nothing there to report)."""
    keep, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("only_backend")
        params = getattr(item, "callspec", None) and item.callspec.params
        backend = params and (params.get("database_url") or params.get("own_database_url"))
        (dropped if marker and backend and backend != marker.args[0] else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory):
    """Each backend in turn; tests on the stack run once per backend."""
    with new_database(request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url
        db.close()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """The URL of a migrated and seeded database of a backend, made once a session, for
    `own_database_url` to copy."""
    with contextlib.ExitStack() as kept:
        made = {}

        def template(backend: str) -> str:
            if backend not in made:
                made[backend] = kept.enter_context(new_database(backend, tmp_path_factory.mktemp("template")))
                with prepared(made[backend]):
                    pass
            return made[backend]

        yield template


@pytest.fixture(params=BACKENDS)
def own_database_url(request, database_template, tmp_path):
    """Each backend in turn, a database of the test's own bound meanwhile, so it can count rows
    exactly: for tests that call services and jobs directly, not through the stack."""
    with new_database(request.param, tmp_path, database_template(request.param)) as url, prepared(url):
        yield url


@dataclasses.dataclass
class Stack:
    """Doors into the running stack, and keys to open them."""

    settings: Settings
    grpc_address: str
    rest_url: str
    admin_key: str
    channel: grpc.Channel
    gateway_url: str = ""
    workdir: pathlib.Path | None = None  # Envoy's config and its log (envoy.log)
    gateway_key: str = ""  # what Envoy's grant and access-log calls carry

    def tenant_key(self, tenant_id: str) -> str:
        with db.session():
            return keys.create_key(now=dt.datetime.now(dt.timezone.utc), tenant_id=tenant_id)

    def stub(self, stub_class):
        return stub_class(self.channel)

    @staticmethod
    def auth(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    def rest(self, method: str, path: str, *, key: str | None = "admin", body=None, params=None, headers=None) -> Reply:
        """One REST call through Envoy; `key='admin'` uses the admin key, None sends none."""
        url = self.rest_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            headers["authorization"] = f"Bearer {self.admin_key if key == 'admin' else key}"
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        return http_call(method, url, headers, data)

    def gateway(
        self, method: str, path: str, *, key: str | None = None, headers=None, body: bytes | None = None
    ) -> Reply:
        """One request to the platform's API through the gateway, the key as a Bearer token."""
        sent = {**({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return http_call(method, self.gateway_url + path, sent, body)

    def subscribe(self, tenant_id: str, plan: str = "standard", billing_email: str = "ops@example.com") -> dict:
        """A subscription created over REST by the admin; its JSON."""
        reply = self.rest(
            "POST",
            "/billing/subscriptions",
            body={"tenant_id": tenant_id, "plan_id": plan, "billing_email": billing_email},
        )
        assert reply.status == 200, reply.body
        return reply.json()

    def track(self, subscription_id: str, events: list[dict], key: str | None = "admin") -> Reply:
        return self.rest(
            "POST", "/billing/metrics/track", key=key, body={"subscription_id": subscription_id, "events": events}
        )

    def generate_invoice(self, subscription_id: str, key: str | None = "admin", **body) -> Reply:
        return self.rest(
            "POST", "/billing/invoices/generate", key=key, body={"subscription_id": subscription_id, **body}
        )

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.settings.database_url.split(":")[0]

    def total_requests(self, subscription_id: str) -> int:
        """The subscription's requests this period, as the usage endpoint reports them."""
        return int(self.rest("GET", f"/billing/metrics/usage/{subscription_id}").json()["total_requests"])


@pytest.fixture(scope="session")
def upstream_port() -> int:
    with demo_upstream() as port:
        yield port


@pytest.fixture(scope="session")
def stack(database_url, upstream_port, tmp_path_factory) -> Stack:
    """gRPC server (in this process, on a free loopback port) and Envoy (a real process) with
    the REST door and the gateway in front of the demo upstream (a real process)."""
    workdir = tmp_path_factory.mktemp("stack")
    settings = dataclasses.replace(
        Settings(),
        database_url=database_url,
        grpc_port=0,
        http_port=free_port(),
        outbox_dir=workdir / "outbox",
        grpc_threads=16,
        gateway_port=free_port(),
        demo_upstream_port=upstream_port,
        # The tests' receivers, and the discard port for URLs that are registered, never served.
        webhooks_allow=webhook_receiver.allowed() | {DISCARD},
    )
    prepare(settings)
    # The gateway's admission listener belongs to this server alone: tests that start another
    # server from stack.settings must not bind its port again.
    served = dataclasses.replace(settings, gateway_authz_port=free_port())
    with in_process_server(served) as port:
        grpc_address = f"127.0.0.1:{port}"
        wait_for_grpc(grpc_address)
        with db.session():
            admin_key = keys.create_key(now=dt.datetime.now(dt.timezone.utc), admin=True)
            gateway_key = keys.create_gateway_key(now=dt.datetime.now(dt.timezone.utc))
        rest_url = f"http://127.0.0.1:{settings.http_port}"
        with running_envoy(served, [port], workdir, gateway_key):
            wait_for_http(f"{rest_url}/billing/health")
            with grpc.insecure_channel(grpc_address) as channel:
                yield Stack(
                    settings,
                    grpc_address,
                    rest_url,
                    admin_key,
                    channel,
                    gateway_url=f"http://127.0.0.1:{settings.gateway_port}",
                    workdir=workdir,
                    gateway_key=gateway_key,
                )


@pytest.fixture
def tenant_id() -> str:
    """A tenant no other test uses, so tests share one database without interfering."""
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def capped_plan(stack, tmp_path) -> str:
    """A plan from a test catalogue (the BILLING_CATALOGUE shape): 30 included requests, no overage."""
    plan_id = f"capped-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "plans.json"
    path.write_text(
        json.dumps(
            {
                "currency": "USD",
                "plans": [
                    {
                        "id": plan_id,
                        "name": "Capped test",
                        "tier": "FREE",
                        "monthly_fee_cents": 0,
                        "rate_limit_per_minute": 1000,
                        "included_requests": 30,
                        "overage_per_1k_cents": 0,
                    }
                ],
            }
        )
    )
    with db.session():
        catalogue.seed(catalogue.load(path))
    return plan_id


@pytest.fixture(scope="module")
def calls_per_backend(request) -> collections.Counter:
    """The generated calls a fuzz module made per backend, printed past the output capture after
    the module: for the record, not a check."""
    counts = collections.Counter()
    yield counts
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{request.module.__name__}: generated calls per backend: {dict(counts)}")


@pytest.fixture
def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1]


# pytest-grpc: the PlanService on its in-process server behind the error interceptor, on a
# database of the module's own. A module using `grpc_stub` defines `grpc_servicer` on top of
# `plan_service_database`.


@pytest.fixture(scope="module")
def plan_service_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("plans")) as url:
        yield url


@pytest.fixture(scope="module")
def grpc_add_to_server():
    return plan_pb2_grpc.add_PlanServiceServicer_to_server


@pytest.fixture(scope="module")
def grpc_interceptors():
    return [Chain([ErrorInterceptor()])]


@pytest.fixture(scope="module")
def grpc_stub_cls(grpc_channel):
    return plan_pb2_grpc.PlanServiceStub
