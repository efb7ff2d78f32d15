"""The operations settings are checked at start-up, each mistake one ConfigError naming it."""

from __future__ import annotations

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


def test_replicas_without_redis_are_refused_naming_redis_url():
    """Each replica's in-process limiter would admit its own share up to the whole limit."""
    with pytest.raises(ConfigError, match="BILLING_REPLICAS=2 needs REDIS_URL"):
        Settings.from_env({"BILLING_REPLICAS": "2"})
    assert Settings.from_env({"BILLING_REPLICAS": "2", "REDIS_URL": REDIS}).replicas == 2
    assert Settings.from_env({}).redis_url is None  # one replica keeps the in-process limiter
