"""The operations settings are checked at start-up, each mistake one ConfigError naming it."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings


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
