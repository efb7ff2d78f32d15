"""Servers and processes the tests start, each stopped on the way out: the gRPC server in this
process, billing-server processes, Envoy, the demo upstream; and the free ports they listen on."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import uuid

from server import envoy_launcher
from server.config import Settings
from server.readiness import wait_for_grpc, wait_for_http, wait_until
from server.transport.app import create_server

BIN = pathlib.Path(sys.executable).parent
# The bootstrap admin key of the billing-server processes tests start (BILLING_BOOTSTRAP_ADMIN_KEY).
ADMIN_KEY = "test-admin-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def migrate(env: dict[str, str]) -> None:
    """`billing-server migrate`, as an operator runs it before starting servers on a new database."""
    done = subprocess.run(
        [str(BIN / "billing-server"), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def create_key(env: dict[str, str], *scope: str) -> str:
    """`billing-keys create SCOPE...`, as an operator runs it; returns the key it prints."""
    done = subprocess.run(
        [str(BIN / "billing-keys"), "create", *scope], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[-1]


def create_tenant_key(env: dict[str, str], tenant_id: str) -> str:
    return create_key(env, "--tenant", tenant_id)


def create_gateway_key(env: dict[str, str]) -> str:
    """The key an Envoy in front of billing-server processes carries (billing-stack keeps its own)."""
    return create_key(env, "--gateway")


@contextlib.contextmanager
def in_process_server(settings: Settings, **options):
    """A gRPC server in this process on a port the OS picks, on the database bound now; yields
    the port, stopped on the way out. `options` go to create_server."""
    server, port = create_server(settings, "127.0.0.1:0", **options)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


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
    with running(
        subprocess.Popen([sys.executable, "-m", "server.demo_upstream", str(port)]), f"http://127.0.0.1:{port}/"
    ):
        yield port


# The grant listener of each server process these helpers start, by its gRPC port, whichever of
# Envoy and the server starts first (an in-process server has its own in its settings).
_AUTHZ_PORTS: dict[int, int] = {}


def authz_port_for(grpc_port: int) -> int:
    if grpc_port not in _AUTHZ_PORTS:
        _AUTHZ_PORTS[grpc_port] = free_port()
    return _AUTHZ_PORTS[grpc_port]


@contextlib.contextmanager
def running_envoy(settings: Settings, grpc_ports: list[int], workdir: pathlib.Path, gateway_key: str):
    """Envoy (a real process) for `settings`, in front of the gRPC servers on `grpc_ports`, its
    own calls authenticated by `gateway_key`; ready once its admin interface (the Unix
    socket in `workdir`) says so, whether or not those servers are up."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "envoy.log", "ab") as log:
        authz = settings.authz_ports(len(grpc_ports)) or [authz_port_for(port) for port in grpc_ports]
        envoy = envoy_launcher.start(
            settings, grpc_ports, workdir, gateway_key, authz_ports=authz, stdout=log, stderr=log
        )
        try:
            wait_until(
                lambda: envoy_launcher.admin(workdir, "/ready")[0] == 200,
                f"Envoy's admin socket in {workdir}",
                alive=lambda: envoy.poll() is None,
            )
            yield envoy
        finally:
            envoy.terminate()
            envoy.wait(timeout=10)


@contextlib.contextmanager
def billing_server(env: dict[str, str], workdir: pathlib.Path, name: str, port: int):
    """A billing-server process on `port`, logging to workdir/name.log; yields it once SERVING,
    and stops it on the way out (SIGTERM) unless the test already has."""
    with open(workdir / f"{name}.log", "ab") as log:
        # A short grace: Envoy's access-log stream stays open, so a stop waits the whole grace for it.
        process = subprocess.Popen(
            [str(BIN / "billing-server")],
            env={
                "BILLING_SHUTDOWN_GRACE_S": "2",
                **env,
                "BILLING_GRPC_PORT": str(port),
                "BILLING_GATEWAY_AUTHZ_PORT": str(authz_port_for(port)),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_grpc(f"127.0.0.1:{port}")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)


@contextlib.contextmanager
def server_process(env: dict[str, str], workdir: pathlib.Path, name: str, port: int | None = None):
    """A billing-server process on `port` (default: a free one); yields its address."""
    port = port or free_port()
    with billing_server(env, workdir, name, port):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def two_servers_sharing_redis(workdir: pathlib.Path, redis_url: str):
    """Two billing-server processes on one new SQLite file and one Redis, ADMIN_KEY their
    bootstrap admin key; yields (their environment, first address, second address)."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'billing.db'}",
        "REDIS_URL": redis_url,
        "BILLING_BIND": "127.0.0.1",
        "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "OUTBOX_DIR": str(workdir / "outbox"),
    }
    migrate(env)
    with server_process(env, workdir, "a") as first, server_process(env, workdir, "b") as second:
        yield env, first, second
