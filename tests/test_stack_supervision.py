"""`billing-stack` as `make run` starts it, supervising its processes: SIGTERM under gateway load
bills every request Envoy forwarded (on SQLite, and on PostgreSQL + Redis with two replicas); a
replica killed under load is started again while reads keep succeeding; a child that keeps
failing as it starts stops the stack with one line."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import uuid
from concurrent import futures

import pytest

from calls import http_call, poll
from factories import recorded_event_ids
from processes import ADMIN_KEY, BIN, create_tenant_key, free_port
from server.demo_upstream import EchoHandler
from server.readiness import wait_for_grpc, wait_for_http
from stores import REDIS_URL, bound, needs_redis, new_database

BACKENDS = [
    pytest.param("sqlite", 1, id="sqlite-1-replica"),
    pytest.param(
        "postgresql", 2, id="postgresql-redis-2-replicas", marks=[pytest.mark.postgres, pytest.mark.redis, needs_redis]
    ),
]


def free_port_pair() -> int:
    """A port whose successor is free too (two replicas listen on BILLING_GRPC_PORT and +1)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def stack_env(workdir: pathlib.Path, database_url: str, replicas: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OUTBOX_DIR": str(workdir / "outbox"),
        "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "BILLING_HTTP_PORT": str(free_port()),
        "BILLING_GATEWAY_PORT": str(free_port()),
        "BILLING_DEMO_UPSTREAM_PORT": str(free_port()),
        "BILLING_GRPC_PORT": str(free_port_pair()),
        "BILLING_REPLICAS": str(replicas),
        **extra,
    }
    if replicas > 1:
        env["REDIS_URL"] = REDIS_URL
    return env


@contextlib.contextmanager
def running_stack(env: dict[str, str], workdir: pathlib.Path):
    """`billing-stack` logging to workdir/stack.log; yields it once REST answers through Envoy,
    stopped on the way out (SIGTERM) unless the test already has."""
    with open(workdir / "stack.log", "wb") as log:
        stack = subprocess.Popen([str(BIN / "billing-stack")], env=env, cwd=workdir, stdout=log, stderr=log)
        try:
            wait_for_http(f"{rest_url(env)}/billing/health", timeout=60, alive=lambda: stack.poll() is None)
            yield stack
        finally:
            if stack.poll() is None:
                stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=60)


def rest_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['BILLING_HTTP_PORT']}"


@contextlib.contextmanager
def counting_upstream():
    """The platform's API as the gateway's upstream, in this process; yields (port, the
    x-request-id of every request it received)."""
    received: set[str] = set()

    class Counting(EchoHandler):
        def _echo(self) -> None:
            received.add(self.headers.get("x-request-id", ""))
            super()._echo()

        do_GET = _echo

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def subscribe(env: dict[str, str], tenant: str) -> str:
    reply = http_call(
        "POST",
        f"{rest_url(env)}/billing/subscriptions",
        {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
        f'{{"tenant_id": "{tenant}", "plan_id": "enterprise", "billing_email": "ops@example.com"}}'.encode(),
    )
    assert reply.status == 200, reply.body
    return reply.json()["id"]


def children(pid: int) -> list[int]:
    return [int(child) for child in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def dead(pid: int) -> bool:
    """Exited (a zombie until the stack reaps it, or gone)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def server_pid(stack: subprocess.Popen, port: int) -> int:
    """The billing-server child of the stack listening on `port`."""
    for pid in children(stack.pid):
        environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"billing-server" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes() and (
            f"BILLING_GRPC_PORT={port}".encode() in environ
        ):
            return pid
    raise LookupError(f"no billing-server child on port {port}")


@pytest.mark.parametrize(("backend", "replicas"), BACKENDS)
def test_sigterm_under_gateway_load_meters_every_forwarded_request(tmp_path, backend, replicas):
    """Every request the upstream received through the gateway is stored as usage, those of the
    last moments before SIGTERM included (before, Envoy exited with up to 0.2 s of access-log
    entries unsent)."""
    with new_database(backend, tmp_path) as url, counting_upstream() as (upstream_port, received):
        env = stack_env(tmp_path, url, replicas, BILLING_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}")
        with running_stack(env, tmp_path) as stack:
            tenant = f"stop-{uuid.uuid4().hex[:8]}"
            subscription_id = subscribe(env, tenant)
            key = create_tenant_key(env, tenant)
            gateway = f"http://127.0.0.1:{env['BILLING_GATEWAY_PORT']}/v1/items/1"

            def load() -> int:
                """Requests until the gateway stops taking them; returns how many were answered 200."""
                answered = 0
                while True:
                    try:
                        answered += http_call("GET", gateway, {"authorization": f"Bearer {key}"}).status == 200
                    except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
                        return answered

            with futures.ThreadPoolExecutor(8) as pool:
                loads = [pool.submit(load) for _ in range(8)]
                poll(lambda: len(received), lambda count: count >= 200, timeout=30)
                stack.send_signal(signal.SIGTERM)
                assert stack.wait(timeout=60) == 0
                answered = sum(f.result() for f in loads)
        with bound(url):
            stored = recorded_event_ids(subscription_id)
    assert answered and len(received) >= answered
    assert stored == received, f"{len(received - stored)} of {len(received)} forwarded requests not metered"


@needs_redis
@pytest.mark.postgres
@pytest.mark.redis
def test_a_killed_replica_is_started_again_while_reads_keep_succeeding(tmp_path):
    """SIGKILL one of two replicas under REST reads through Envoy: no read fails but those in
    flight on the dead process whose answer had begun (the rest Envoy retries on the other
    replica), the stack logs the exit and starts the replica again, and its port serves health
    again from a new process."""
    with new_database("postgresql", tmp_path) as url:
        env = stack_env(tmp_path, url, replicas=2)
        with running_stack(env, tmp_path) as stack:
            subscription_id = subscribe(env, f"kill-{uuid.uuid4().hex[:8]}")
            read_url = f"{rest_url(env)}/billing/subscriptions/{subscription_id}"
            headers = {"authorization": f"Bearer {ADMIN_KEY}"}
            port = int(env["BILLING_GRPC_PORT"])
            victim = server_pid(stack, port)
            stop = threading.Event()
            statuses: list[tuple[float, float, int]] = []  # (started, ended, status) of each read

            def read() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    status = http_call("GET", read_url, headers).status
                    statuses.append((started, time.monotonic(), status))

            log = tmp_path / "stack.log"
            with futures.ThreadPoolExecutor(4) as pool:
                readers = [pool.submit(read) for _ in range(4)]
                poll(lambda: len(statuses), lambda count: count >= 50, timeout=30)
                killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                poll(lambda: dead(victim), lambda is_dead: is_dead)
                dead_at = time.monotonic()  # a read sent before this may have reached the dying process
                poll(lambda: log.read_text(), lambda text: "killed by SIGKILL" in text, timeout=10)
                wait_for_grpc(f"127.0.0.1:{port}", timeout=30)  # the new process, once SERVING
                assert server_pid(stack, port) != victim
                served = len(statuses)
                poll(lambda: len(statuses), lambda count: count >= served + 50, timeout=30)  # load after it
                stop.set()
                for reader in readers:
                    reader.result()
            assert stack.poll() is None  # the stack kept running
    assert f"billing-stack: billing-server on port {port} killed by SIGKILL; starting it again" in log.read_text()
    failed = [(started, ended) for started, ended, status in statuses if status != 200]
    assert len(statuses) > 100 and len(failed) <= 4, f"{len(failed)} failed reads"  # 4 readers, 1 read each
    # Each failed read was in flight while the replica died (between the kill and its exit).
    assert all(started < dead_at and ended > killed_at for started, ended in failed), (killed_at, dead_at, failed)


def test_a_child_that_keeps_failing_as_it_starts_stops_the_stack_with_one_line(tmp_path):
    """The demo upstream killed and its port taken: each new one fails at once; after the limit
    of quick failures in a row the stack stops, saying which process and why, exit status 1."""
    env = stack_env(tmp_path, f"sqlite:///{tmp_path / 'billing.db'}", replicas=1)
    port = int(env["BILLING_DEMO_UPSTREAM_PORT"])
    with running_stack(env, tmp_path) as stack, socket.socket() as taken:
        demo = next(
            pid for pid in children(stack.pid) if b"demo_upstream" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        )
        os.kill(demo, signal.SIGKILL)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        poll(lambda: _bind(taken, port), lambda bound_now: bound_now, timeout=5)
        taken.listen()
        assert stack.wait(timeout=60) == 1
    lines = [line for line in (tmp_path / "stack.log").read_text().splitlines() if line.startswith("billing-stack:")]
    assert lines[0] == "billing-stack: demo upstream killed by SIGKILL; starting it again in 0.5s"
    assert lines[-1] == (
        "billing-stack: demo upstream exit status 1, 5 times in a row within 10s of starting; stopping the stack"
    )


def _bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
