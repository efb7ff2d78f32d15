"""`billing-stack` (what `make run` starts): the gRPC server, Envoy (REST and the gateway), the
scheduler and, without BILLING_UPSTREAM_URL, the demo upstream together, in the foreground, logging to the terminal; Ctrl-C stops all of them, and so does any one of
them exiting."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from server import edge
from server.bootstrap import prepare
from server.config import ConfigError, Settings
from server.persistence import db
from server.readiness import wait_for_grpc, wait_for_http
from server.services import keys

DEV_KEY_FILE = pathlib.Path(".billing-dev-admin-key")


def _dev_admin_key() -> str:
    """Reuse the development admin key across runs, so scripts keep working after a restart."""
    now = dt.datetime.now(dt.timezone.utc)
    with db.session():
        if DEV_KEY_FILE.exists():
            key = DEV_KEY_FILE.read_text().strip()
            if keys.is_valid(key):
                return key
        key = keys.create_key(now=now, admin=True)
    DEV_KEY_FILE.write_text(key + "\n")
    DEV_KEY_FILE.chmod(0o600)
    return key


def _scripts() -> pathlib.Path:
    return pathlib.Path(sys.executable).parent


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"billing-stack: {error}", file=sys.stderr)
        return 2
    prepare(settings)
    admin_key = settings.bootstrap_admin_key or _dev_admin_key()
    db.close()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-stack-"))
    children: list[subprocess.Popen] = []
    try:
        server = subprocess.Popen([str(_scripts() / "billing-server")])
        children.append(server)
        wait_for_grpc(f"{settings.bind}:{settings.grpc_port}")
        if settings.upstream_url is None:
            demo = subprocess.Popen([sys.executable, "-m", "server.demo_upstream", str(settings.demo_upstream_port)])
            children.append(demo)
            wait_for_http(f"http://127.0.0.1:{settings.demo_upstream_port}/", alive=lambda: demo.poll() is None)
        envoy = edge.start(settings, [settings.grpc_port], workdir, metering_key=admin_key)
        children.append(envoy)
        rest = f"http://{settings.bind}:{settings.http_port}"
        wait_for_http(f"{rest}/billing/health", alive=lambda: envoy.poll() is None)
        scheduler = _scripts() / "billing-scheduler"
        if scheduler.exists():
            children.append(subprocess.Popen([str(scheduler), "run"]))
        gateway = f"http://{settings.bind}:{settings.gateway_port}"
        upstream = settings.upstream_url or f"http://127.0.0.1:{settings.demo_upstream_port} (demo echo)"
        print(f"""
billing stack is up (database {settings.database_url.split('@')[-1]})
  REST (Envoy):  {rest}
  gRPC:          {settings.bind}:{settings.grpc_port}
  gateway:       {gateway} -> {upstream}
  admin key:     {admin_key}

  curl -H 'Authorization: Bearer {admin_key}' {rest}/billing/plans
  {os.path.relpath(_scripts() / 'grpcurl')} -plaintext -H 'authorization: Bearer {admin_key}' {settings.bind}:{settings.grpc_port} billing.v1.PlanService/ListPlans
  # the gateway, with a tenant key (billing-keys create --tenant acme) and an ACTIVE subscription:
  curl -H 'Authorization: Bearer TENANT_KEY' {gateway}/v1/items/42
Ctrl-C stops everything.
""", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        os.wait()  # returns when any child exits
        print("billing-stack: a process exited; stopping the others", file=sys.stderr)
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
