"""Where `make run` puts its replicas: consecutive gRPC ports, metrics ports that never take the scheduler's."""

from __future__ import annotations

import dataclasses

from server.config import Settings


def test_replicas_take_consecutive_ports_and_skip_the_schedulers_metrics_port():
    settings = dataclasses.replace(Settings(), replicas=3)
    assert settings.replica_ports() == [(50051, 9464), (50052, 9466), (50053, 9467)]


def test_no_metrics_port_means_none_for_every_replica():
    settings = dataclasses.replace(Settings(), replicas=2, metrics_port=0)
    assert settings.replica_ports() == [(50051, 0), (50052, 0)]
