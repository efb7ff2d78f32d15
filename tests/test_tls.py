"""TLS at every door: Envoy's REST listener over HTTPS, the gRPC port over TLS and mTLS, and the
refusal to serve clear text off loopback. Certificates come from a test CA (trustme); one
`billing-stack` on SQLite serves them all, as `make run` would with BILLING_TLS_* set."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from billing.v1 import plan_pb2, plan_pb2_grpc
from calls import poll
from processes import ADMIN_KEY, BIN, create_tenant_key, free_port, in_process_server
from server.config import Settings
from server.readiness import wait_for_grpc, wait_for_http


@dataclasses.dataclass
class Pki:
    """PEM files: the test CA, the server's certificate (for localhost and 127.0.0.1), a client
    certificate from the same CA and one from a CA nobody trusts."""

    ca: trustme.CA
    folder: pathlib.Path

    def issue(self, name: str, ca: trustme.CA | None = None, *identities: str) -> tuple[pathlib.Path, pathlib.Path]:
        leaf = (ca or self.ca).issue_cert(*(identities or (f"{name}.billing.test",)))
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    @property
    def ca_file(self) -> pathlib.Path:
        return self.folder / "ca.pem"

    def ssl_context(self, **options) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for name, value in options.items():
            setattr(context, name, value)
        return context

    def grpc_credentials(self, client: str | None = "client") -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=self.ca_file.read_bytes())
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=(self.folder / f"{client}.key").read_bytes(),
            certificate_chain=(self.folder / f"{client}.pem").read_bytes(),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    pki = Pki(trustme.CA(), tmp_path_factory.mktemp("pki"))
    pki.ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.issue("server", None, "localhost", "127.0.0.1")
    pki.issue("client")
    pki.issue("stranger", trustme.CA())
    return pki


@dataclasses.dataclass
class TlsStack:
    rest_url: str
    grpc_address: str
    gateway_url: str
    env: dict


@pytest.fixture(scope="module")
def tls_stack(pki, tmp_path_factory):
    """`billing-stack` with TLS on both doors and client certificates required on the gRPC port."""
    workdir = tmp_path_factory.mktemp("tls-stack")
    http_port, grpc_port, gateway_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'billing.db'}",
        "OUTBOX_DIR": str(workdir / "outbox"),
        "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "BILLING_HTTP_PORT": str(http_port),
        "BILLING_GATEWAY_PORT": str(gateway_port),
        "BILLING_DEMO_UPSTREAM_PORT": str(free_port()),
        "BILLING_GRPC_PORT": str(grpc_port),
        "BILLING_TLS_CERT": str(pki.folder / "server.pem"),
        "BILLING_TLS_KEY": str(pki.folder / "server.key"),
        "BILLING_GRPC_CLIENT_CA": str(pki.ca_file),
    }
    log = open(workdir / "stack.log", "wb")  # noqa: SIM115 - closed in finally, once the stack it logs has exited
    stack = subprocess.Popen([str(BIN / "billing-stack")], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    rest_url = f"https://localhost:{http_port}"
    try:
        wait_for_http(f"{rest_url}/billing/health", context=pki.ssl_context(), alive=lambda: stack.poll() is None)
        yield TlsStack(rest_url, f"localhost:{grpc_port}", f"https://localhost:{gateway_port}", env)
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=20)
        log.close()


def rest_get(url: str, context: ssl.SSLContext, key: str | None = ADMIN_KEY) -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10, context=context) as reply:
        return reply.status, reply.read()


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


# --- the gateway ------------------------------------------------------------------------------


def test_gateway_over_https_checks_keys_over_mtls_and_forwards(tls_stack, pki):
    with pytest.raises(urllib.error.HTTPError) as denied:
        rest_get(f"{tls_stack.gateway_url}/v1/items/1", pki.ssl_context())  # an admin key is not tenant traffic
    assert denied.value.code == 403 and b"ADMIN_KEY" in denied.value.read()
    tenant = f"tls-{uuid.uuid4().hex[:8]}"
    body = f'{{"tenant_id": "{tenant}", "plan_id": "standard", "billing_email": "b@example.com"}}'.encode()
    request = urllib.request.Request(
        f"{tls_stack.rest_url}/billing/subscriptions",
        data=body,
        method="POST",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    urllib.request.urlopen(request, timeout=10, context=pki.ssl_context()).close()
    key = create_tenant_key(tls_stack.env, tenant)
    status, echoed = rest_get(f"{tls_stack.gateway_url}/v1/items/1", pki.ssl_context(), key=key)
    assert status == 200 and f'"x-tenant-id": "{tenant}"'.encode() in echoed.replace(b'":"', b'": "')


def test_the_stack_keeps_the_gateway_key_envoy_carries_to_itself(tls_stack, pki):
    """billing-stack makes the key Envoy's own calls carry: kept in a file only its user reads,
    never printed, and refused by the billing API."""
    workdir = pathlib.Path(tls_stack.env["OUTBOX_DIR"]).parent
    kept = workdir / ".billing-gateway-key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    key = kept.read_text().strip()
    printed, _ = poll(lambda: (workdir / "stack.log").read_text(), lambda log: "billing stack is up" in log)
    assert key.startswith("bk_") and key not in printed
    with pytest.raises(urllib.error.HTTPError) as refused:
        rest_get(f"{tls_stack.rest_url}/billing/plans", pki.ssl_context(), key=key)
    assert refused.value.code == 403


def test_plaintext_request_to_the_tls_gateway_gets_no_http_answer(tls_stack):
    port = int(tls_stack.gateway_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /v1/items/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert not raw.recv(4096).startswith(b"HTTP/")


# --- REST through Envoy -----------------------------------------------------------------------


def test_rest_over_https_verifies_the_chain_and_reaches_the_server_over_mtls(tls_stack, pki):
    # The call crosses both hops: HTTPS to Envoy, then TLS with Envoy's client certificate to gRPC.
    status, body = rest_get(f"{tls_stack.rest_url}/billing/plans", pki.ssl_context())
    assert status == 200
    assert b'"id":"free"' in body


def test_rest_certificate_from_an_unknown_ca_is_rejected_by_the_client(tls_stack, tmp_path):
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        rest_get(
            f"{tls_stack.rest_url}/billing/health", ssl.create_default_context(cafile=str(tmp_path / "other-ca.pem"))
        )


def test_plaintext_request_to_the_tls_listener_gets_no_http_answer(tls_stack):
    port = int(tls_stack.rest_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /billing/plans HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    # Envoy reads the request as a broken TLS handshake and closes: no redirect, no HTTP at all.
    assert not answer.startswith(b"HTTP/")


@pytest.mark.parametrize("offered, chosen", [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")])
def test_alpn_offers_http2_and_http11_over_tls12_or_later(tls_stack, pki, offered, chosen):
    context = pki.ssl_context()
    context.set_alpn_protocols(offered)
    with handshake(int(tls_stack.rest_url.rsplit(":", 1)[1]), context) as tls:
        assert tls.selected_alpn_protocol() == chosen
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls11_is_refused_by_the_listener(tls_stack, pki):
    context = pki.ssl_context(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    # The alert comes from the listener: a client unable to offer TLS 1.1 would fail differently.
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        handshake(int(tls_stack.rest_url.rsplit(":", 1)[1]), context).close()


def served_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with handshake(port, context) as tls:
        return tls.getpeercert(binary_form=True)


def test_listener_reloads_a_renewed_certificate_without_restart(tls_stack, pki):
    port = int(tls_stack.rest_url.rsplit(":", 1)[1])
    context = pki.ssl_context()
    before = served_certificate(port, context)
    renewed = pki.issue("renewed", None, "localhost", "127.0.0.1")
    # Replace by rename, as certificate tools and Kubernetes secrets do: Envoy watches for moves.
    for new, current in zip(renewed, [pki.folder / "server.pem", pki.folder / "server.key"], strict=True):
        os.replace(new, current)
    expected = ssl.PEM_cert_to_DER_cert((pki.folder / "server.pem").read_text())
    assert expected != before
    deadline = time.monotonic() + 15
    while (served := served_certificate(port, context)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)  # between polls only: the answer decides
    assert served == expected
    # The gRPC port keeps the certificate it started with until a restart, and Envoy its pin on it.
    assert rest_get(f"{tls_stack.rest_url}/billing/plans", context)[0] == 200


# --- the gRPC port ----------------------------------------------------------------------------


def list_plans(address: str, credentials: grpc.ChannelCredentials) -> list[str]:
    with grpc.secure_channel(address, credentials) as channel:
        reply = plan_pb2_grpc.PlanServiceStub(channel).ListPlans(
            plan_pb2.ListPlansRequest(), metadata=(("authorization", f"Bearer {ADMIN_KEY}"),), timeout=10
        )
        return [plan.id for plan in reply.plans]


def test_grpc_mtls_accepts_a_client_certificate_from_the_ca(tls_stack, pki):
    assert list_plans(tls_stack.grpc_address, pki.grpc_credentials("client"))[0] == "free"


@pytest.mark.parametrize("client", [None, "stranger"])
def test_grpc_mtls_refuses_clients_without_a_certificate_from_the_ca(tls_stack, pki, client):
    with pytest.raises(grpc.RpcError) as refused:
        list_plans(tls_stack.grpc_address, pki.grpc_credentials(client))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    """grpcurl retries a failing handshake until its connect timeout: keep refusals quick."""
    return subprocess.run(
        [str(BIN / "grpcurl"), "-connect-timeout", "2", *args], capture_output=True, text=True, timeout=30
    )


def test_grpcurl_over_mtls_with_and_without_a_client_certificate(tls_stack, pki):
    tls = ["-cacert", str(pki.ca_file), "-H", f"authorization: Bearer {ADMIN_KEY}"]
    call = [tls_stack.grpc_address, "billing.v1.PlanService/ListPlans"]
    ok = grpcurl(*tls, "-cert", str(pki.folder / "client.pem"), "-key", str(pki.folder / "client.key"), *call)
    assert ok.returncode == 0, ok.stderr
    assert '"id": "free"' in ok.stdout
    refused = grpcurl(*tls, *call)
    assert refused.returncode != 0
    assert "Failed to dial" in refused.stderr and '"id"' not in refused.stdout


@pytest.fixture(scope="module")
def grpc_tls_only(pki, stack) -> str:
    """A gRPC server with TLS and no client certificates, in this process, on the database the
    stack fixture bound (health checks it)."""
    settings = dataclasses.replace(Settings(), tls_cert=pki.folder / "server.pem", tls_key=pki.folder / "server.key")
    with in_process_server(settings) as port:
        address = f"localhost:{port}"
        wait_for_grpc(address, credentials=pki.grpc_credentials(None))
        yield address


def test_grpc_tls_with_grpcio_verifies_the_chain(grpc_tls_only, pki):
    with grpc.secure_channel(grpc_tls_only, pki.grpc_credentials(None)) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(grpc_tls_only) as channel, pytest.raises(grpc.RpcError) as plain:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpcurl_with_cacert_and_not_plaintext(grpc_tls_only, pki):
    listed = grpcurl("-cacert", str(pki.ca_file), grpc_tls_only, "list")
    assert listed.returncode == 0, listed.stderr
    assert "billing.v1.PlanService" in listed.stdout.split()
    plain = grpcurl("-plaintext", grpc_tls_only, "list")
    assert plain.returncode != 0 and "Failed to dial" in plain.stderr


# --- refusing clear text off loopback -----------------------------------------------------------


@pytest.mark.parametrize("command", ["billing-server", "billing-stack"])
def test_non_loopback_bind_without_tls_refuses_to_start(command, tmp_path):
    env = {
        **os.environ,
        "BILLING_BIND": "0.0.0.0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}",
        "BILLING_GRPC_PORT": str(free_port()),
        "BILLING_HTTP_PORT": str(free_port()),
    }
    env.pop("BILLING_TLS_CERT", None)
    env.pop("BILLING_ALLOW_PLAINTEXT", None)
    done = subprocess.run([str(BIN / command)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "BILLING_BIND=0.0.0.0" in lines[0] and "BILLING_ALLOW_PLAINTEXT" in lines[0]
    assert not (tmp_path / "billing.db").exists()  # refused before touching anything
