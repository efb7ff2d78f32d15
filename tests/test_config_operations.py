"""The operations settings are checked at start-up, each mistake one ConfigError naming it."""

from __future__ import annotations

import re

import pytest

from server.config import ConfigError, Settings

REDIS = "redis://127.0.0.1:6379/0"


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env({})
    assert (settings.metrics_port, settings.scheduler_metrics_port, settings.shutdown_grace_s, settings.replicas) == (
        9464,
        9465,
        10.0,
        1,
    )


def test_values_are_read():
    settings = Settings.from_env(
        {
            "BILLING_METRICS_PORT": "0",
            "BILLING_SCHEDULER_METRICS_PORT": "19465",
            "BILLING_SHUTDOWN_GRACE_S": "2.5",
            "BILLING_REPLICAS": "3",
            "REDIS_URL": REDIS,
        }
    )
    assert (settings.metrics_port, settings.scheduler_metrics_port, settings.shutdown_grace_s, settings.replicas) == (
        0,
        19465,
        2.5,
        3,
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("BILLING_SHUTDOWN_GRACE_S", "soon"),
        ("BILLING_SHUTDOWN_GRACE_S", "-1"),
        ("BILLING_SHUTDOWN_GRACE_S", "nan"),
        ("BILLING_METRICS_PORT", "99999"),
        ("BILLING_SCHEDULER_METRICS_PORT", "x"),
        ("BILLING_REPLICAS", "0"),
        ("BILLING_REPLICAS", "1.5"),
        ("BILLING_REPLICAS", "65"),
    ],
)
def test_each_mistake_names_its_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BILLING_REPLICAS": "2", "BILLING_GRPC_PORT": "0"}, "BILLING_GRPC_PORT, not 0"),
        ({"BILLING_REPLICAS": "4", "BILLING_GRPC_PORT": "65533"}, "BILLING_GRPC_PORT=65533 needs ports up to 65536"),
        (
            {"BILLING_REPLICAS": "2", "BILLING_METRICS_PORT": "65534"},
            "BILLING_METRICS_PORT=65534 needs ports up to 65536",
        ),
    ],
)
def test_replica_ports_must_fit_below_65536(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**env, "REDIS_URL": REDIS})


def test_replica_ports_at_the_edge_and_metrics_off_are_accepted():
    assert Settings.from_env({"BILLING_REPLICAS": "3", "BILLING_GRPC_PORT": "65533", "REDIS_URL": REDIS}).replicas == 3
    assert (
        Settings.from_env({"BILLING_REPLICAS": "2", "BILLING_METRICS_PORT": "0", "REDIS_URL": REDIS}).metrics_port == 0
    )
    assert Settings.from_env({"BILLING_GRPC_PORT": "0"}).grpc_port == 0  # one server may take any free port


def test_webhook_allow_list_is_read_as_normalized_ip_and_port():
    settings = Settings.from_env({"BILLING_WEBHOOKS_ALLOW": " 127.0.0.1:9000, [::1]:9000,[::ffff:10.0.0.7]:80 ,"})
    assert settings.webhooks_allow == {("127.0.0.1", 9000), ("::1", 9000), ("10.0.0.7", 80)}
    assert Settings.from_env({}).webhooks_allow == frozenset()


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1",
        "localhost:9000",
        "hooks.internal:80",
        "127.0.0.1:0",
        "127.0.0.1:x",
        "127.1:9000",
        "0x7f000001:9000",
        "user@127.0.0.1:9000",
        "127.0.0.1:9000#x",
        "127.0.0.1:9000/hook",
    ],
)
def test_webhook_allow_list_takes_ip_and_port_only(entry):
    with pytest.raises(
        ConfigError, match=f"^BILLING_WEBHOOKS_ALLOW must be a comma-separated list of IP:port .*got {entry!r}$"
    ):
        Settings.from_env({"BILLING_WEBHOOKS_ALLOW": entry})


@pytest.mark.parametrize(
    "env, port, owner",
    [
        ({}, 8080, "BILLING_HTTP_PORT"),
        ({}, 8000, "BILLING_GATEWAY_PORT"),
        ({}, 50051, r"BILLING_GRPC_PORT \(replica 0\)"),
        ({"BILLING_REPLICAS": "3", "REDIS_URL": REDIS}, 50053, r"BILLING_GRPC_PORT \(replica 2\)"),
        (
            {"BILLING_REPLICAS": "2", "REDIS_URL": REDIS},
            9466,
            r"BILLING_METRICS_PORT \(replica 1\)",
        ),  # 9465 is the scheduler's
        ({}, 9465, "BILLING_SCHEDULER_METRICS_PORT"),
        ({}, 8081, r"the gateway's upstream"),  # the demo upstream
        ({"BILLING_UPSTREAM_URL": "http://10.0.0.9:3000"}, 3000, r"the gateway's upstream"),
        ({"BILLING_HTTP_PORT": "18080"}, 18080, "BILLING_HTTP_PORT"),
    ],
)
def test_webhook_allow_list_naming_a_port_of_this_service_is_refused(env, port, owner):
    """On any address: a listener bound to 0.0.0.0 answers on every one of them."""
    for address in ("127.0.0.1", "[::1]", "10.0.0.9"):
        with pytest.raises(
            ConfigError,
            match=f"^BILLING_WEBHOOKS_ALLOW lists {re.escape(address)}:{port}, a port of this service \\({owner}",
        ):
            Settings.from_env({**env, "BILLING_WEBHOOKS_ALLOW": f"127.0.0.1:9000,{address}:{port}"})


def test_the_old_blanket_webhook_setting_is_refused_pointing_at_the_list():
    with pytest.raises(
        ConfigError, match="^BILLING_WEBHOOKS_ALLOW_PRIVATE is no longer supported: .*BILLING_WEBHOOKS_ALLOW=IP:port"
    ):
        Settings.from_env({"BILLING_WEBHOOKS_ALLOW_PRIVATE": "1"})


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("REDIS_URL", "notaurl", "must start with redis:// or rediss://"),
        ("REDIS_URL", "redis://:secret@127.0.0.1:0/0", "must have a port from 1 to 65535"),
        ("REDIS_URL", "redis://red is:6379", "must not contain spaces or control characters"),
        ("SMTP_URL", "smtp://", "must name a host"),
        ("SMTP_URL", "smtp://mail.example.com:25/path", "must have no path"),
        ("SMTP_URL", "smtp://user:pw@mail.example.com:25", "must not carry a user name or password"),
        ("DATABASE_URL", "notaurl", "must start with"),
        ("DATABASE_URL", "sqlite://", "must look like sqlite:///path/to/billing.db"),
        ("DATABASE_URL", "postgresql://u:pw@-db-/billing", "has an invalid host name '-db-'"),
        ("BILLING_UPSTREAM_URL", "http://up stream:80", "must not contain spaces or control characters"),
        ("BILLING_UPSTREAM_URL", "http://upstream:80/prefix", "must have no path"),
        ("BILLING_PUBLIC_URL", "https://billing.example.com:443?x=1", "must have no query or fragment"),
        ("BILLING_PUBLIC_URL", "https://[::1", "must have a port from 1 to 65535"),
        # An IPv4 address only in dotted decimal, as for webhook URLs (server/domain/urls.py).
        ("REDIS_URL", "redis://0x7f000001:6379/0", "host '0x7f000001' is not an IPv4 address in dotted decimal"),
        ("BILLING_UPSTREAM_URL", "http://127.1:8081", "host '127.1' is not an IPv4 address in dotted decimal"),
    ],
)
def test_url_settings_are_urls_naming_the_setting_without_credentials(name, value, problem):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert str(error.value).startswith(f"{name} {problem}") or problem in str(error.value)
    assert str(error.value).startswith(name)
    assert "secret" not in str(error.value) and "pw@" not in str(error.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("REDIS_URL", "rediss://:secret@cache.internal:6380/2"),
        ("SMTP_URL", "smtp://127.0.0.1:2525"),
        ("DATABASE_URL", "postgresql://u:pw@db.internal:5432/billing?sslmode=require"),
        ("DATABASE_URL", "postgresql:///billing"),
        ("DATABASE_URL", "sqlite:////var/lib/my billing/billing.db"),
        ("BILLING_UPSTREAM_URL", "http://[::1]:8081"),
        ("BILLING_PUBLIC_URL", "https://billing.example.com/api"),
    ],
)
def test_good_url_settings_are_kept(name, value):
    settings = Settings.from_env({name: value})
    assert value in (
        settings.redis_url,
        settings.smtp_url,
        settings.database_url,
        settings.upstream_url,
        settings.public_url,
    )


def test_replicas_without_redis_are_refused_naming_redis_url():
    """Each replica's in-process limiter would admit its own share up to the whole limit."""
    with pytest.raises(ConfigError, match="BILLING_REPLICAS=2 needs REDIS_URL"):
        Settings.from_env({"BILLING_REPLICAS": "2"})
    assert Settings.from_env({"BILLING_REPLICAS": "2", "REDIS_URL": REDIS}).replicas == 2
    assert Settings.from_env({}).redis_url is None  # one replica keeps the in-process limiter
