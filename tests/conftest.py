"""The real stack for tests: a gRPC server on a loopback port and Envoy in front of it, against
a fresh database per backend. SQLite always; PostgreSQL when reachable (else a visible skip)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import grpc
import pytest

from server import envoy_launcher
from server.bootstrap import prepare
from server.config import Settings
from server.persistence import db
from server.readiness import wait_for_grpc, wait_for_http
from server.services import keys
from server.transport.app import create_server

BIN = pathlib.Path(sys.executable).parent
# Processes the tests start serve no /metrics unless a test gives them a free port: the default
# ports would collide between parallel runs on one machine.
os.environ["BILLING_METRICS_PORT"] = os.environ["BILLING_SCHEDULER_METRICS_PORT"] = "0"

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def migrate(env: dict[str, str]) -> None:
    """`billing-server migrate`, as an operator runs it before starting servers on a new database."""
    done = subprocess.run([str(BIN / "billing-server"), "migrate"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def postgres_unreachable_reason() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=2).close()
    except Exception as error:  # noqa: BLE001 - any failure means skip, with the reason shown
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {error}".strip()
    return None


@contextlib.contextmanager
def fresh_postgres_database():
    """A new, empty PostgreSQL database for one test session, dropped afterwards."""
    import psycopg2

    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = urllib.parse.urlparse(POSTGRES_URL)
    try:
        yield base._replace(path=f"/{name}").geturl()
    finally:
        db.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def scratch_database(directory: pathlib.Path):
    """A SQLite database of its own in `directory`, prepared and bound as the global handle, the
    previous handle restored after: for modules that call services directly, without the stack
    (whose server is idle while they run)."""
    saved = db.database.obj
    url = f"sqlite:///{directory / 'billing.db'}"
    prepare(dataclasses.replace(Settings(), database_url=url))
    try:
        yield url
    finally:
        db.database.initialize(saved)


@contextlib.contextmanager
def new_database(backend: str, folder: pathlib.Path):
    """A new, empty database of `backend` ("sqlite" in `folder`, or "postgresql": skipped with the
    reason when unreachable)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'billing.db'}"
        db.close()
        return
    reason = postgres_unreachable_reason()
    if reason:
        pytest.skip(reason)
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path_factory):
    """Each backend in turn; tests on the stack run once per backend."""
    with new_database(request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@contextlib.contextmanager
def bound(url: str):
    """Point the global database handle at `url` for the block, in a session (the stack's
    in-process server must be idle meanwhile), then back."""
    saved = db.database.obj
    db.connect(url)
    try:
        with db.session():
            yield
    finally:
        db.database.obj.close()
        db.database.initialize(saved)


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


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

    def tenant_key(self, tenant_id: str) -> str:
        with db.session():
            return keys.create_key(now=dt.datetime.now(dt.timezone.utc), tenant_id=tenant_id)

    def stub(self, stub_class):
        return stub_class(self.channel)

    @staticmethod
    def auth(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    def rest(self, method: str, path: str, *, key: str | None = "admin", body=None, params=None,
             headers=None) -> Reply:
        """One REST call through Envoy; `key='admin'` uses the admin key, None sends none."""
        url = self.rest_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            headers["authorization"] = f"Bearer {self.admin_key if key == 'admin' else key}"
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        return http_call(method, url, headers, data)

    def gateway(self, method: str, path: str, *, key: str | None = None, headers=None) -> Reply:
        """One request to the platform's API through the gateway, the key as a Bearer token."""
        sent = {**({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return http_call(method, self.gateway_url + path, sent)


def http_call(method: str, url: str, headers: dict[str, str], data: bytes | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return Reply(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@contextlib.contextmanager
def running(process: subprocess.Popen, ready_url: str):
    """A started process, entered once `ready_url` answers 200, terminated on the way out."""
    try:
        wait_for_http(ready_url, alive=lambda: process.poll() is None)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def demo_upstream():
    """The demo echo upstream as a real process on a free port; yields its port."""
    port = free_port()
    with running(subprocess.Popen([sys.executable, "-m", "server.demo_upstream", str(port)]),
                 f"http://127.0.0.1:{port}/"):
        yield port


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
        Settings(), database_url=database_url, grpc_port=0, http_port=free_port(),
        envoy_admin_port=free_port(), outbox_dir=workdir / "outbox", grpc_threads=16,
        gateway_port=free_port(), demo_upstream_port=upstream_port, webhooks_allow_private=True)
    prepare(settings)
    server, port = create_server(settings, "127.0.0.1:0")
    server.start()
    grpc_address = f"127.0.0.1:{port}"
    wait_for_grpc(grpc_address)
    with db.session():
        admin_key = keys.create_key(now=dt.datetime.now(dt.timezone.utc), admin=True)
    rest_url = f"http://127.0.0.1:{settings.http_port}"
    try:
        with running_envoy(settings, [port], workdir, admin_key):
            wait_for_http(f"{rest_url}/billing/health")
            with grpc.insecure_channel(grpc_address) as channel:
                yield Stack(settings, grpc_address, rest_url, admin_key, channel,
                            gateway_url=f"http://127.0.0.1:{settings.gateway_port}", workdir=workdir)
    finally:
        server.stop(grace=None)


@contextlib.contextmanager
def running_envoy(settings: Settings, grpc_ports: list[int], workdir: pathlib.Path, metering_key: str):
    """Envoy (a real process) for `settings`, in front of the gRPC servers on `grpc_ports`, its
    access-log stream authenticated by `metering_key`; ready once its admin interface says so,
    whether or not those servers are up."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "envoy.log", "ab") as log, \
            running(envoy_launcher.start(settings, grpc_ports, workdir, metering_key, stdout=log, stderr=log),
                    f"http://127.0.0.1:{settings.envoy_admin_port}/ready") as envoy:
        yield envoy


@contextlib.contextmanager
def billing_server(env: dict[str, str], workdir: pathlib.Path, name: str, port: int):
    """A billing-server process on `port`, logging to workdir/name.log; yields it once SERVING,
    and stops it on the way out (SIGTERM) unless the test already has."""
    with open(workdir / f"{name}.log", "ab") as log:
        # A short grace: Envoy's access-log stream stays open, so a stop waits the whole grace for it.
        process = subprocess.Popen([str(BIN / "billing-server")],
                                   env={"BILLING_SHUTDOWN_GRACE_S": "2", **env, "BILLING_GRPC_PORT": str(port)},
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_grpc(f"127.0.0.1:{port}")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)


@pytest.fixture
def tenant_id() -> str:
    """A tenant no other test uses, so tests share one database without interfering."""
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1]
