"""Portal settings: where links point, and the signing key every replica must share."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from server.config import ConfigError, Settings
from server.domain import portal_tokens
from server.persistence import db
from server.services import portal

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def test_links_default_to_the_rest_listener_and_follow_tls():
    assert Settings.from_env({"BILLING_HTTP_PORT": "9090"}).portal_base_url == "http://127.0.0.1:9090"
    with_tls = dataclasses.replace(Settings(), tls_cert="cert.pem", tls_key="key.pem")
    assert with_tls.portal_base_url == "https://127.0.0.1:8080"


def test_a_public_url_is_the_base_of_links_without_a_trailing_slash():
    settings = Settings.from_env({"BILLING_PUBLIC_URL": "https://billing.example.com/edge/"})
    assert settings.portal_base_url == "https://billing.example.com/edge"


@pytest.mark.parametrize(
    "env, named",
    [
        ({"BILLING_PUBLIC_URL": "ftp://example.com"}, "BILLING_PUBLIC_URL"),
        ({"BILLING_PUBLIC_URL": "https://example.com:99999"}, "BILLING_PUBLIC_URL"),
        ({"BILLING_PUBLIC_URL": "https://example.com/?q=1"}, "BILLING_PUBLIC_URL"),
        ({"BILLING_PORTAL_SECRET": "too short"}, "BILLING_PORTAL_SECRET"),
    ],
)
def test_malformed_portal_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_a_configured_secret_is_used_as_is():
    assert portal.signing_secret("k" * 32, now=NOW) == b"k" * 32


def test_without_a_configured_secret_every_replica_reads_the_one_stored(stack):
    with db.session():
        first = portal.signing_secret(None, now=NOW)
        again = portal.signing_secret(None, now=NOW + dt.timedelta(days=1))  # as a second replica would
    assert first == again and len(first) >= 48
    token, _ = portal_tokens.sign(first, "acme", NOW)
    assert portal_tokens.verify(again, token, NOW) == "acme"
