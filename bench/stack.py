"""The real stack for the bench: `billing-server` processes (each on its own port) and Envoy
(server.envoy_launcher) in front of all of them, in a temporary directory."""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import socket
import subprocess
import sys

from server import envoy_launcher
from server.config import Settings
from server.readiness import wait_for_grpc, wait_for_http

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Stack:
    def __init__(self, workdir: pathlib.Path, database_url: str, redis_url: str | None, admin_key: str, postgres=None):
        """`postgres`: a bench.postgres.PostgresUse, so each CPU snapshot includes the database's CPU and WAL."""
        self.workdir, self.database_url, self.redis_url, self.admin_key = workdir, database_url, redis_url, admin_key
        self.gateway_key: str | None = None  # Envoy's own calls; made once the schema exists
        self.postgres = postgres
        self.servers: list[tuple[subprocess.Popen, int]] = []
        self.upstreams: int | None = None  # servers in use (Envoy's upstreams, direct gRPC); None: all
        self.envoy: subprocess.Popen | None = None
        self.rest_port: int | None = None
        self._logs: list[io.BufferedWriter] = []

    def _log(self, name: str):
        log = open(self.workdir / name, "ab")  # noqa: SIM115 - held by a process; close() closes them all
        self._logs.append(log)
        return log

    def add_server(self) -> int:
        """Start one more `billing-server`; return its port once it answers SERVING. Before the
        first one, `billing-server migrate` (a server refuses a schema that is behind)."""
        port = free_port()
        env = dict(
            os.environ,
            DATABASE_URL=self.database_url,
            BILLING_GRPC_PORT=str(port),
            BILLING_BIND="127.0.0.1",
            BILLING_BOOTSTRAP_ADMIN_KEY=self.admin_key,
            OUTBOX_DIR=str(self.workdir / "outbox"),
            BILLING_METRICS_PORT=str(free_port()),
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        log = self._log(f"server-{port}.log")
        command = str(pathlib.Path(sys.executable).parent / "billing-server")
        if not self.servers:
            subprocess.run(
                [command, "migrate"], env=env, stdout=log, stderr=log, cwd=self.workdir, check=True, timeout=120
            )
        server = subprocess.Popen([command], env=env, stdout=log, stderr=log, cwd=self.workdir)
        self.servers.append((server, port))
        try:
            wait_for_grpc(f"127.0.0.1:{port}", timeout=60)
        except TimeoutError:
            raise RuntimeError(
                f"billing-server on {port} did not start; see {self.workdir}/server-{port}.log"
            ) from None
        return port

    def restart_envoy(self, upstreams: int | None = None) -> int:
        """(Re)start Envoy with the first `upstreams` servers (default: every running one) as its
        upstreams, which are then also the direct gRPC addresses; return its REST port."""
        self.stop_envoy()
        self.upstreams = upstreams
        settings = dataclasses.replace(Settings(), http_port=free_port(), gateway_port=free_port())
        envdir = self.workdir / f"envoy-{len(self.servers)}"
        envdir.mkdir(exist_ok=True)
        log = self._log(f"envoy-{len(self.servers)}.log")
        self.envoy = envoy_launcher.start(settings, self.ports, envdir, self._gateway_key(), stdout=log, stderr=log)
        self.rest_port = settings.http_port
        wait_for_http(f"http://127.0.0.1:{self.rest_port}/billing/health", alive=lambda: self.envoy.poll() is None)
        return self.rest_port

    def _gateway_key(self) -> str:
        """The key Envoy's grant and access-log calls carry, by `billing-keys create --gateway`
        (after the first server migrated the database)."""
        if self.gateway_key is None:
            done = subprocess.run(
                [str(pathlib.Path(sys.executable).parent / "billing-keys"), "create", "--gateway"],
                env=dict(os.environ, DATABASE_URL=self.database_url),
                cwd=self.workdir,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            self.gateway_key = done.stdout.strip().splitlines()[-1]
        return self.gateway_key

    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.servers[: self.upstreams]]

    @property
    def grpc_addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def cpu_snapshot(self) -> dict:
        """CPU seconds so far of all server processes (idle ones included), Envoy and, when measured,
        PostgreSQL, with PostgreSQL's WAL position in bytes."""
        return {
            "servers": sum(proc_cpu_seconds(p.pid) for p, _ in self.servers),
            "envoy": proc_cpu_seconds(self.envoy.pid) if self.envoy else 0.0,
            "postgres": self.postgres.cpu_seconds() if self.postgres else None,
            "wal_bytes": self.postgres.wal_bytes() if self.postgres else None,
        }

    def stop_envoy(self):
        if self.envoy:
            self.envoy.terminate()
            self.envoy.wait(timeout=10)
            self.envoy = None

    def close(self):
        self.stop_envoy()
        for server, _ in self.servers:
            server.terminate()
        for server, _ in self.servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        for log in self._logs:
            log.close()
