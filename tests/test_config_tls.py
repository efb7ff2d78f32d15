"""TLS settings are read once and checked at start-up: each mistake is one ConfigError naming the
variable, and a listener off loopback needs TLS or an explicit BILLING_ALLOW_PLAINTEXT=1."""

from __future__ import annotations

import pathlib

import pytest

from server.config import ConfigError, Settings, is_loopback


@pytest.fixture
def pem(tmp_path) -> pathlib.Path:
    path = tmp_path / "some.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def test_no_tls_settings_means_plaintext():
    settings = Settings.from_env({})
    assert not settings.tls
    assert (settings.tls_cert, settings.grpc_client_ca, settings.allow_plaintext) == (None, None, False)


def test_certificate_and_key_together_turn_tls_on(pem):
    settings = Settings.from_env(
        {"BILLING_TLS_CERT": str(pem), "BILLING_TLS_KEY": str(pem), "BILLING_GRPC_CLIENT_CA": str(pem)}
    )
    assert settings.tls
    assert settings.tls_cert == settings.grpc_client_ca == pem.resolve()


@pytest.mark.parametrize(
    "env, named",
    [
        ({"BILLING_TLS_CERT": "PEM"}, "BILLING_TLS_KEY must be set together with BILLING_TLS_CERT"),
        ({"BILLING_TLS_KEY": "PEM"}, "BILLING_TLS_CERT must be set together with BILLING_TLS_KEY"),
        (
            {"BILLING_TLS_CERT": "/no/such.pem", "BILLING_TLS_KEY": "PEM"},
            "BILLING_TLS_CERT must be a readable PEM file",
        ),
        ({"BILLING_GRPC_CLIENT_CA": "PEM"}, "BILLING_GRPC_CLIENT_CA needs BILLING_TLS_CERT"),
        ({"BILLING_ENVOY_CLIENT_CERT": "PEM", "BILLING_ENVOY_CLIENT_KEY": "PEM"}, "BILLING_ENVOY_CLIENT_CERT needs"),
        ({"BILLING_ALLOW_PLAINTEXT": "yes"}, "BILLING_ALLOW_PLAINTEXT must be 1 or 0"),
    ],
)
def test_each_mistake_names_its_setting(pem, env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({name: str(pem) if value == "PEM" else value for name, value in env.items()})


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("billing.example.com", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_bind_needs_tls_or_an_explicit_plaintext_opt_in(pem):
    with pytest.raises(ConfigError, match="BILLING_BIND=0.0.0.0 is not loopback"):
        Settings.from_env({"BILLING_BIND": "0.0.0.0"}).refuse_plaintext_exposure()
    Settings.from_env({"BILLING_BIND": "0.0.0.0", "BILLING_ALLOW_PLAINTEXT": "1"}).refuse_plaintext_exposure()
    Settings.from_env(
        {"BILLING_BIND": "0.0.0.0", "BILLING_TLS_CERT": str(pem), "BILLING_TLS_KEY": str(pem)}
    ).refuse_plaintext_exposure()
    Settings.from_env({}).refuse_plaintext_exposure()  # loopback, as `make run`
