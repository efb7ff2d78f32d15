"""Prometheus metrics of one process, served on its own port as /metrics (text format).

RPC metrics carry the names go-grpc-prometheus made conventional, so existing dashboards and
alerts apply. No metric carries a tenant id, key or subscription as a label: those are unbounded
(one time series each) and belong in logs. Labels here take a handful of values each.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("billing.metrics")
disable_created_metrics()  # no `_created` twin per series: Prometheus does not need it

RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
GRPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", RPC_LABELS)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*RPC_LABELS, "grpc_code")
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its status.",
    RPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

RATELIMIT_DECISIONS = Counter(
    "billing_ratelimit_decisions_total",
    "Tier rate-limit decisions. door: api (billing API calls) or gateway (the platform's API); "
    "decision: allowed, rate_limited, quota_exhausted, or limiter_down (store unreachable).",
    ("door", "tier", "decision"),
)
USAGE_EVENTS = Counter(
    "billing_usage_events_total",
    "Usage events received, by result: accepted, duplicate (event_id seen) or rejected.",
    ("result",),
)
USAGE_REJECTIONS = Counter(
    "billing_usage_rejected_events_total",
    "Usage events refused, by reason (SUBSCRIPTION_CANCELED, PERIOD_INVOICED, BEFORE_SUBSCRIPTION, "
    "INVALID_VALUE) and meter (the meter an INVALID_VALUE event had no valid value for; else empty).",
    ("reason", "meter"),
)
GATEWAY_MALFORMED_USAGE = Counter(
    "billing_gateway_malformed_usage_total",
    "x-billing-usage headers from the upstream that were not a valid usage report (not billed).",
)
INVOICES_ISSUED = Counter("billing_invoices_issued_total", "Invoices issued by this process.")

JOB_RUNS = Counter(
    "billing_job_runs_total",
    "Scheduler job runs, by result: success, failure or skipped (another scheduler holds the job's lock).",
    ("job", "result"),
)
JOB_DURATION_SECONDS = Histogram(
    "billing_job_duration_seconds",
    "Duration of scheduler job runs.",
    ("job",),
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
)
JOB_LAST_SUCCESS = Gauge(
    "billing_job_last_success_timestamp_seconds",
    "Unix time of the job's last successful run in this process.",
    ("job",),
)


def record_malformed_usage() -> None:
    GATEWAY_MALFORMED_USAGE.inc()


def record_decision(door: str, tier: str, decision) -> None:
    """One rate-limit decision (a limiter Decision, or None when the limiter store was down)."""
    if decision is None:
        outcome = "limiter_down"
    elif decision.allowed:
        outcome = "allowed"
    else:
        outcome = "quota_exhausted" if decision.quota_exhausted else "rate_limited"
    record_outcome(door, tier, outcome)


def record_outcome(door: str, tier: str, outcome: str) -> None:
    """One decision by its outcome (the gateway's are taken in Envoy and read from its access log)."""
    _decision_series(door, tier, outcome).inc()


@functools.cache
def _decision_series(door: str, tier: str, outcome: str):
    """One series per (door, tier, outcome), a handful: looked up once, not on every call."""
    return RATELIMIT_DECISIONS.labels(door, tier, outcome)


def record_usage(accepted: int, duplicates: int, rejected: int) -> None:
    for result, count in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if count:
            USAGE_EVENTS.labels(result).inc(count)


def record_rejections(reasons: Iterable[str], meter: str = "") -> None:
    """One per refused event; a batch refused whole for INVALID_VALUE counts each of its events."""
    for reason, count in collections.Counter(reasons).items():
        USAGE_REJECTIONS.labels(reason, meter).inc(count)


class OutboxCollector(Collector):
    """The outbox backlog, read from the database at scrape time (so every scheduler replica
    reports the same truth), over all rows whatever they carry. A scrape that cannot reach the
    database reports none of these rather than stale numbers."""

    def __init__(self, read_backlog, clock=time.time) -> None:
        self.read_backlog = read_backlog  # () -> (pending, oldest pending created_at or None, dead)
        self.clock = clock

    def collect(self):
        try:
            pending, oldest, dead = self.read_backlog()
        except Exception as error:  # noqa: BLE001 - a scrape must not fail because the database did
            log.warning("outbox metrics unavailable: %s: %s", type(error).__name__, str(error)[:200])
            return
        yield GaugeMetricFamily(
            "billing_outbox_pending", "Outbox rows waiting to be delivered (not dead).", value=pending
        )
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest.timestamp())
        yield GaugeMetricFamily(
            "billing_outbox_oldest_pending_seconds",
            "Age of the oldest row waiting to be delivered; 0 when none waits.",
            value=age,
        )
        yield GaugeMetricFamily(
            "billing_outbox_dead_letters",
            "Outbox rows given up after their last attempt, until an operator retries them.",
            value=dead,
        )


def serve(port: int, bind: str, *, collectors=()) -> None:
    """Serve /metrics on `bind:port` in a daemon thread (port 0: not served). Extra collectors
    join the default registry, which also has the process's CPU, memory and file-descriptor figures."""
    for collector in collectors:
        REGISTRY.register(collector)
    if port:
        start_http_server(port, addr=bind)
