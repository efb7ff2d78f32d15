"""`billing-stack` (what `make run` starts): migrates the schema first, then runs the gRPC server
(BILLING_REPLICAS processes), Envoy (REST and the gateway, balancing over the replicas), the
scheduler and, without BILLING_UPSTREAM_URL, the demo upstream together, in the foreground,
logging to the terminal; Ctrl-C stops all of them, and so does any one of them exiting."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable

from server import envoy_launcher
from server.bootstrap import start
from server.config import Settings
from server.domain.access import KeyScope
from server.persistence import db
from server.readiness import wait_for_http
from server.services import keys

DEV_KEY_FILE = pathlib.Path(".billing-dev-admin-key")
# The key Envoy's own calls carry (ext_authz, the access-log stream): in Envoy's config, so it
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


def replica_env(grpc_port: int, metrics_port: int) -> dict[str, str]:
    return {**os.environ, "BILLING_GRPC_PORT": str(grpc_port), "BILLING_METRICS_PORT": str(metrics_port)}


def _metrics_urls(bind: str, ports: list[int]) -> str:
    return ", ".join(f"http://{bind}:{port}/metrics" if port else "off" for port in ports)


def main() -> int:
    settings = start("billing-stack", serving=True, migrate=True)
    admin_key = settings.bootstrap_admin_key or _kept_key(
        DEV_KEY_FILE, KeyScope.ADMIN, lambda now: keys.create_key(now=now, admin=True)
    )
    gateway_key = _kept_key(GATEWAY_KEY_FILE, KeyScope.GATEWAY, lambda now: keys.create_gateway_key(now=now))
    db.close()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-stack-"))
    children: list[subprocess.Popen] = []
    try:
        replicas = settings.replica_ports()
        servers = [
            subprocess.Popen([str(_scripts() / "billing-server")], env=replica_env(grpc, metrics))
            for grpc, metrics in replicas
        ]
        children.extend(servers)
        if settings.upstream_url is None:
            demo = subprocess.Popen([sys.executable, "-m", "server.demo_upstream", str(settings.demo_upstream_port)])
            children.append(demo)
            wait_for_http(f"http://127.0.0.1:{settings.demo_upstream_port}/", alive=lambda: demo.poll() is None)
        envoy = envoy_launcher.start(
            settings,
            [grpc for grpc, _ in replicas],
            workdir,
            gateway_key,
            upstream_host=envoy_launcher.upstream_host(settings.bind),
        )
        children.append(envoy)
        scheme = "https" if settings.tls else "http"
        rest = f"{scheme}://{settings.bind}:{settings.http_port}"
        # Health through Envoy answers 200 only once the server behind it is SERVING.
        wait_for_http(
            f"{rest}/billing/health",
            context=_probe_context(settings),
            alive=lambda: all(p.poll() is None for p in [*servers, envoy]),
        )
        scheduler = _scripts() / "billing-scheduler"
        if scheduler.exists():
            children.append(subprocess.Popen([str(scheduler), "run"]))
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
Ctrl-C stops everything.
""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        os.wait()  # returns when any child exits
        print("billing-stack: a process exited; stopping the others", file=sys.stderr)
        return 1
    except RuntimeError as error:  # wait_for_http: a process exited while the stack was starting
        print(
            f"billing-stack: {error} during start-up (its own line above says why); stopping the others",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
