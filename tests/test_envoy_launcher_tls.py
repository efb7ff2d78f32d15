"""The TLS pieces of Envoy's config: one-line `transport_socket` blocks that any listener or
cluster can take, and the SDS file that carries the listeners' certificate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import ssl

import pytest
import trustme

from server import envoy_launcher
from server.config import Settings


@pytest.fixture
def tls_settings(tmp_path) -> Settings:
    leaf = trustme.CA().issue_cert("localhost")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    return dataclasses.replace(Settings(), tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.key")


def block(line: str) -> dict:
    key, _, value = line.partition(": ")
    assert key == "transport_socket" and "\n" not in line
    return json.loads(value)["typed_config"]


def test_without_tls_no_transport_socket_is_rendered(tmp_path):
    assert envoy_launcher.downstream_tls(Settings(), tmp_path) == envoy_launcher.upstream_tls(Settings()) == ""


def test_listener_block_serves_the_sds_certificate_over_tls12_with_alpn(tls_settings, tmp_path):
    context = block(envoy_launcher.downstream_tls(tls_settings, tmp_path))["common_tls_context"]
    assert context["tls_params"] == {"tls_minimum_protocol_version": "TLSv1_2"}
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    [sds] = context["tls_certificate_sds_secret_configs"]
    envoy_launcher.write_edge_secret(tls_settings, tmp_path)
    [secret] = json.loads(envoy_launcher.sds_path(tmp_path).read_text())["resources"]
    assert sds["name"] == secret["name"]
    assert sds["sds_config"]["path_config_source"]["path"] == str(envoy_launcher.sds_path(tmp_path))
    assert secret["tls_certificate"]["certificate_chain"]["filename"] == str(tls_settings.tls_cert)


def test_cluster_block_pins_the_server_certificate(tls_settings):
    context = block(envoy_launcher.upstream_tls(tls_settings))["common_tls_context"]
    der = ssl.PEM_cert_to_DER_cert(tls_settings.tls_cert.read_text())
    assert context["validation_context"] == {"verify_certificate_hash": [hashlib.sha256(der).hexdigest()]}
    assert context["alpn_protocols"] == ["h2"]
    assert "tls_certificates" not in context  # no client certificate unless the gRPC port asks for one


def test_under_mtls_envoy_presents_the_server_pair_unless_told_otherwise(tls_settings, tmp_path):
    mtls = dataclasses.replace(tls_settings, grpc_client_ca=tls_settings.tls_cert)
    [pair] = block(envoy_launcher.upstream_tls(mtls))["common_tls_context"]["tls_certificates"]
    assert pair["certificate_chain"]["filename"] == str(tls_settings.tls_cert)
    own = dataclasses.replace(mtls, envoy_client_cert=tmp_path / "envoy.pem", envoy_client_key=tmp_path / "envoy.key")
    [pair] = block(envoy_launcher.upstream_tls(own))["common_tls_context"]["tls_certificates"]
    assert (pair["certificate_chain"]["filename"], pair["private_key"]["filename"]) == (
        str(tmp_path / "envoy.pem"),
        str(tmp_path / "envoy.key"),
    )


@pytest.mark.parametrize(
    "bind, upstream",
    [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("127.0.0.1", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")],
)
def test_envoy_dials_the_server_where_it_listens(bind, upstream):
    assert envoy_launcher.upstream_host(bind) == upstream
