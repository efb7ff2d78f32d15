"""`billing-stack` (what `make run` starts): migrates the schema first, then runs the gRPC server
(BILLING_REPLICAS processes), Envoy (REST and the gateway, balancing over the replicas), the
scheduler and, without BILLING_UPSTREAM_URL, the demo upstream together, in the foreground,
logging to the terminal.

Three steps (Stack): start; supervise, where a child that exits is started again with a backoff
(server.supervision) while the others keep serving; stop, on Ctrl-C or SIGTERM, in the order that
bills everything Envoy forwarded: Envoy drains (no new requests, those in flight finish, every
access-log entry handed to the servers) and exits, closing its access-log stream; then the
servers, which finish storing what the stream delivered; then the scheduler. The children run in
process groups of their own, so Ctrl-C in the terminal reaches only this supervisor, which then
stops them in that order."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from server import envoy_launcher
from server.bootstrap import start
from server.config import Settings
from server.domain.access import KeyScope
from server.persistence import db
from server.readiness import wait_for_http
from server.services import keys
from server.supervision import QUICK_FAILURES_LIMIT, STABLE_AFTER_S, Child, exit_status

DEV_KEY_FILE = pathlib.Path(".billing-dev-admin-key")
# The key Envoy's own calls carry (grants, the access-log stream): in Envoy's config, so it
# opens nothing else (KeyScope.GATEWAY). Kept like the dev admin key, never printed.
GATEWAY_KEY_FILE = pathlib.Path(".billing-gateway-key")


def _kept_key(path: pathlib.Path, scope: KeyScope, create: Callable[[dt.datetime], str]) -> str:
    """The key in `path` while it is a valid key of `scope` (reused across runs, so scripts keep
    working after a restart), else a new one `create` makes, written there (0600)."""
    with db.session():
        if path.exists():
            key = path.read_text().strip()
            if keys.is_valid(key, scope):
                return key
        key = create(dt.datetime.now(dt.timezone.utc))
    path.touch(mode=0o600)
    path.chmod(0o600)  # before writing: it holds a key
    path.write_text(key + "\n")
    return key


def _scripts() -> pathlib.Path:
    return pathlib.Path(sys.executable).parent


def _probe_context(settings: Settings) -> ssl.SSLContext | None:
    """The readiness probe asks our own Envoy for health, sends no key and learns nothing secret,
    so it need not know which CA signed the certificate or which name it carries."""
    if not settings.tls:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def replica_env(grpc_port: int, metrics_port: int, authz_port: int = 0) -> dict[str, str]:
    return {
        **os.environ,
        "BILLING_GRPC_PORT": str(grpc_port),
        "BILLING_METRICS_PORT": str(metrics_port),
        "BILLING_GATEWAY_AUTHZ_PORT": str(authz_port),
    }


def _metrics_urls(bind: str, ports: list[int]) -> str:
    return ", ".join(f"http://{bind}:{port}/metrics" if port else "off" for port in ports)


class Stack:
    """The stack's processes: started, supervised and stopped in order."""

    def __init__(self, settings: Settings, gateway_key: str, workdir: pathlib.Path) -> None:
        self.settings = settings
        # What Envoy's own calls carry (KeyScope.GATEWAY), written into its config at each start.
        self.gateway_key = gateway_key
        self.workdir = workdir
        self.replicas = settings.replica_ports()
        self.servers = [
            Child(
                f"billing-server on port {grpc}",
                _spawner([str(_scripts() / "billing-server")], grpc, metrics, authz),
            )
            for (grpc, metrics), authz in zip(
                self.replicas, settings.authz_ports(len(self.replicas)) or [0] * len(self.replicas), strict=True
            )
        ]
        self.demo = (
            Child(
                "demo upstream",
                _spawner([sys.executable, "-m", "server.demo_upstream", str(settings.demo_upstream_port)]),
            )
            if settings.upstream_url is None
            else None
        )
        self.envoy = Child("envoy", self._spawn_envoy)
        scheduler = _scripts() / "billing-scheduler"
        self.scheduler = Child("billing-scheduler", _spawner([str(scheduler), "run"])) if scheduler.exists() else None
        self.stop_requested = False

    @property
    def children(self) -> list[Child]:
        return [c for c in [*self.servers, self.demo, self.envoy, self.scheduler] if c is not None]

    def _spawn_envoy(self) -> subprocess.Popen:
        return envoy_launcher.start(
            self.settings,
            [grpc for grpc, _ in self.replicas],
            self.workdir,
            self.gateway_key,
            upstream_host=envoy_launcher.upstream_host(self.settings.bind),
            process_group=0,
        )

    def start(self) -> None:
        """Start everything, each door once it can answer; RuntimeError when a process exits meanwhile."""
        for server in self.servers:
            server.start()
        if (demo := self.demo) is not None:
            demo.start()
            wait_for_http(f"http://127.0.0.1:{self.settings.demo_upstream_port}/", alive=lambda: demo.running)
        self.envoy.start()
        # Health through Envoy answers 200 only once the server behind it is SERVING.
        wait_for_http(
            f"{_rest_url(self.settings)}/billing/health",
            context=_probe_context(self.settings),
            alive=lambda: all(c.running for c in [*self.servers, self.envoy]),
        )
        if self.scheduler is not None:
            self.scheduler.start()

    def supervise(self) -> int:
        """Until Ctrl-C or SIGTERM (0): start again each child that exits, after its backoff;
        a child that keeps failing as it starts stops the stack (1)."""
        wakeup = self._wake_on_signals()
        while not self.stop_requested:
            now = time.monotonic()
            if not all(self._tend(child, now) for child in self.children):
                return 1
            pending = [c.restart_at for c in self.children if c.restart_at is not None]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else None
            if select.select([wakeup], [], [], timeout)[0]:
                os.read(wakeup, 4096)
        return 0

    def _tend(self, child: Child, now: float) -> bool:
        """Start the child if its backoff has ended, or give it one if it has exited; False if it
        keeps failing as it starts."""
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.start()
            return True
        if child.process is None or (code := child.process.poll()) is None:
            return True
        delay = child.policy.after_exit(child.started_at, now)
        if delay is None:
            print(
                f"billing-stack: {child.name} {exit_status(code)}, {QUICK_FAILURES_LIMIT} times in a row "
                f"within {STABLE_AFTER_S:g}s of starting; stopping the stack",
                file=sys.stderr,
                flush=True,
            )
            return False
        print(
            f"billing-stack: {child.name} {exit_status(code)}; starting it again in {delay:g}s",
            file=sys.stderr,
            flush=True,
        )
        child.restart_at = now + delay
        return True

    def _wake_on_signals(self) -> int:
        """A pipe a child's exit (SIGCHLD), Ctrl-C or SIGTERM writes to, so supervise sleeps
        until something happens or a backoff ends, never polling."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        return read

    def _request_stop(self, *_) -> None:
        self.stop_requested = True

    def _drain_gateway(self, timeout: float) -> None:
        try:
            in_flight, unsent = envoy_launcher.drain(self.workdir, timeout)
        except OSError as error:  # its admin interface did not answer
            print(f"billing-stack: Envoy could not be drained ({error}); stopping it", file=sys.stderr)
            return
        if in_flight or unsent:
            print(
                f"billing-stack: after {timeout:g}s Envoy still had {in_flight} request(s) in flight and "
                f"{unsent} access-log entries not sent to the billing servers; stopping it anyway",
                file=sys.stderr,
            )

    def stop(self) -> None:
        """Envoy first (drained: nothing forwarded goes unmetered), then the servers and the demo
        upstream, then the scheduler; each step bounded, a process that outstays it is killed."""
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C does not cut the order short
            signal.signal(signum, self._request_stop)
        grace = self.settings.shutdown_grace_s
        if self.envoy.running:
            self._drain_gateway(grace)
        _stop_together([self.envoy], timeout=10)
        _stop_together([*self.servers, *([self.demo] if self.demo else [])], timeout=grace + 5)
        if self.scheduler is not None:
            _stop_together([self.scheduler], timeout=30)


def _spawner(command: list[str], grpc_port: int | None = None, metrics_port: int = 0, authz_port: int = 0):
    """How to start a child: in a process group of its own (Ctrl-C is the supervisor's alone);
    a server replica with its own ports."""
    env = replica_env(grpc_port, metrics_port, authz_port) if grpc_port is not None else None
    return lambda: subprocess.Popen(command, env=env, process_group=0)


def _stop_together(children: list[Child], timeout: float) -> None:
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline)


def _rest_url(settings: Settings) -> str:
    return f"{'https' if settings.tls else 'http'}://{settings.bind}:{settings.http_port}"


def _print_banner(settings: Settings, admin_key: str, replicas: list[tuple[int, int]], workdir: pathlib.Path) -> None:
    rest = _rest_url(settings)
    curl_tls, grpcurl_tls = ("--cacert CA.pem ", "-cacert CA.pem") if settings.tls else ("", "-plaintext")
    if settings.grpc_client_ca:
        grpcurl_tls += " -cert CLIENT.pem -key CLIENT.key"
    gateway = f"{'https' if settings.tls else 'http'}://{settings.bind}:{settings.gateway_port}"
    upstream = settings.upstream_url or f"http://127.0.0.1:{settings.demo_upstream_port} (demo echo)"
    print(
        f"""
billing stack is up (database {settings.database_label})
  REST (Envoy):  {rest}
  gRPC:          {settings.bind}:{settings.grpc_port} ({settings.grpc_security}; {len(replicas)} replica(s) on ports {", ".join(str(g) for g, _ in replicas)})
  metrics:       server {_metrics_urls(settings.bind, [m for _, m in replicas])}, scheduler {_metrics_urls(settings.bind, [settings.scheduler_metrics_port])}
  Envoy admin:   curl --unix-socket {envoy_launcher.admin_socket(workdir)} http://envoy/stats/prometheus
  gateway:       {gateway} -> {upstream}
  admin key:     {admin_key}

  curl {curl_tls}-H 'Authorization: Bearer {admin_key}' {rest}/billing/plans
  {os.path.relpath(_scripts() / "grpcurl")} {grpcurl_tls} -H 'authorization: Bearer {admin_key}' {settings.bind}:{settings.grpc_port} billing.v1.PlanService/ListPlans
  # the gateway, with a tenant key (billing-keys create --tenant acme) and an ACTIVE subscription:
  curl {curl_tls}-H 'Authorization: Bearer TENANT_KEY' {gateway}/v1/items/42
Ctrl-C stops everything (Envoy drained first, so every request it forwarded is billed).
""",
        flush=True,
    )


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _keys(settings: Settings) -> tuple[str, str]:
    """The admin key the banner shows (BILLING_BOOTSTRAP_ADMIN_KEY, else the kept dev key) and the
    gateway key Envoy's config holds."""
    admin_key = settings.bootstrap_admin_key or _kept_key(
        DEV_KEY_FILE, KeyScope.ADMIN, lambda now: keys.create_key(now=now, admin=True)
    )
    gateway_key = _kept_key(GATEWAY_KEY_FILE, KeyScope.GATEWAY, lambda now: keys.create_gateway_key(now=now))
    db.close()
    return admin_key, gateway_key


def _run(stack: Stack, admin_key: str) -> int:
    """Start, show the banner and supervise until stopped (the exit status); stop in order however
    that ends."""
    signal.signal(signal.SIGTERM, _interrupt)  # during start-up, as Ctrl-C: stop what has started
    try:
        stack.start()
        _print_banner(stack.settings, admin_key, stack.replicas, stack.workdir)
        return stack.supervise()
    except RuntimeError as error:  # wait_for_http: a process exited while the stack was starting
        print(
            f"billing-stack: {error} during start-up (its own line above says why); stopping the others",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def main() -> int:
    settings = start("billing-stack", serving=True, migrate=True)
    admin_key, gateway_key = _keys(settings)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-stack-"))
    try:
        return _run(Stack(settings, gateway_key, workdir), admin_key)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
