"""Metrics and logs as an operator reads them: go-grpc-prometheus RPC series, the billing
counters, no tenant in any label, one JSON log line per call carrying Envoy's x-request-id."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

from prometheus_client import REGISTRY, generate_latest

from calls import poll
from factories import insert_subscription
from server.observability import logs, metrics
from server.scheduler import jobs

PLANS = {"grpc_type": "unary", "grpc_service": "billing.v1.PlanService", "grpc_method": "ListPlans"}
GET_SUBSCRIPTION = {
    "grpc_type": "unary",
    "grpc_service": "billing.v1.SubscriptionService",
    "grpc_method": "GetSubscription",
}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_rpc_metrics_count_each_call_by_code(stack):
    ok, missing = (
        sample("grpc_server_handled_total", **PLANS, grpc_code="OK"),
        sample("grpc_server_handled_total", **GET_SUBSCRIPTION, grpc_code="NotFound"),
    )
    started, timed = sample("grpc_server_started_total", **PLANS), sample("grpc_server_handling_seconds_count", **PLANS)
    assert stack.rest("GET", "/billing/plans").status == 200
    assert stack.rest("GET", f"/billing/subscriptions/sub_{uuid.uuid4().hex}").status == 404
    assert sample("grpc_server_handled_total", **PLANS, grpc_code="OK") == ok + 1
    assert sample("grpc_server_handled_total", **GET_SUBSCRIPTION, grpc_code="NotFound") == missing + 1
    assert sample("grpc_server_started_total", **PLANS) == started + 1
    assert sample("grpc_server_handling_seconds_count", **PLANS) == timed + 1


def test_billing_counters_and_no_tenant_in_any_label(stack, tenant_id):
    sub = insert_subscription(tenant_id, plan="standard")
    key = stack.tenant_key(tenant_id)
    series = [
        ("billing_ratelimit_decisions_total", {"door": "api", "tier": "STANDARD", "decision": "allowed"}),
        ("billing_ratelimit_decisions_total", {"door": "gateway", "tier": "STANDARD", "decision": "allowed"}),
        ("billing_usage_events_total", {"result": "accepted"}),
        ("billing_usage_events_total", {"result": "duplicate"}),
        ("billing_invoices_issued_total", {}),
    ]
    before = [sample(name, **labels) for name, labels in series]

    def added() -> list[float]:
        return [sample(name, **labels) - was for (name, labels), was in zip(series, before, strict=True)]

    assert stack.rest("GET", "/billing/plans", key=key).status == 200
    assert stack.gateway("GET", "/v1/items/1", key=key).status == 200
    # The gateway's decision and its forwarded request reach the server with Envoy's access log,
    # asynchronously: the decision counted, the request metered as an accepted event (before the
    # invoice below closes the period to usage).
    poll(added, lambda found: found == [1, 1, 1, 0, 0])
    events = [{"event_id": "a", "endpoint": "/v1/x"}, {"event_id": "a", "endpoint": "/v1/x"}]
    assert stack.track(sub.id, events).status == 200
    assert stack.generate_invoice(sub.id).status == 200
    assert added() == [1, 1, 2, 1, 1]
    scrape = generate_latest(REGISTRY).decode()
    assert tenant_id not in scrape and sub.id not in scrape and key not in scrape


def test_job_runs_are_counted_timed_and_stamped(stack):
    runs = sample("billing_job_runs_total", job="overdue_sweep", result="success")
    timed = sample("billing_job_duration_seconds_count", job="overdue_sweep")
    jobs.run_job("overdue_sweep", dt.datetime.now(dt.timezone.utc), stack.settings)
    assert sample("billing_job_runs_total", job="overdue_sweep", result="success") == runs + 1
    assert sample("billing_job_duration_seconds_count", job="overdue_sweep") == timed + 1
    assert sample("billing_job_last_success_timestamp_seconds", job="overdue_sweep") > 0


def test_outbox_collector_reports_the_backlog_and_nothing_when_the_database_is_gone():
    queued = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    collector = metrics.OutboxCollector(lambda: (3, queued, 1), clock=lambda: queued.timestamp() + 90)
    values = {family.name: family.samples[0].value for family in collector.collect()}
    assert values == {
        "billing_outbox_pending": 3,
        "billing_outbox_oldest_pending_seconds": 90,
        "billing_outbox_dead_letters": 1,
    }
    assert {f.name: f.samples[0].value for f in metrics.OutboxCollector(lambda: (0, None, 0)).collect()}[
        "billing_outbox_oldest_pending_seconds"
    ] == 0

    def lost():
        raise ConnectionError("database gone")

    assert list(metrics.OutboxCollector(lost).collect()) == []


def test_one_json_line_per_call_with_envoys_request_id(stack, tenant_id, caplog):
    key = stack.tenant_key(tenant_id)
    request_id = f"rid-{uuid.uuid4().hex}"
    with caplog.at_level(logging.INFO, logger="billing.calls"):
        reply = stack.rest("GET", "/billing/plans", key=key, headers={"x-request-id": request_id})
    assert reply.status == 200
    [record] = [r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == request_id]
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["method"] == "/billing.v1.PlanService/ListPlans" and line["grpc_code"] == "OK"
    assert line["tenant"] == tenant_id and line["duration_ms"] >= 0 and line["level"] == "info"

    def envoy_entries():  # Envoy flushes its access log about once a second
        return [
            json.loads(text) for text in (stack.workdir / "envoy.log").read_text().splitlines() if request_id in text
        ]

    [entry], _ = poll(envoy_entries, bool)
    assert (entry["status"], entry["path"], entry["method"]) == (200, "/billing/plans", "GET")


def test_text_format_appends_fields_for_people():
    record = logging.LogRecord("billing.calls", logging.INFO, __file__, 1, "call", (), None)
    record.fields = {"method": "/m", "grpc_code": "OK"}
    assert logs.TextFormatter().format(record).endswith("call method=/m grpc_code=OK")


def test_refused_events_are_counted_by_reason_and_meter(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    meter = f"gb-{tag}"
    assert (
        stack.rest(
            "POST",
            "/billing/meters",
            body={"id": meter, "name": "GB", "event_type": f"st_{tag}", "aggregation": "SUM", "value_property": "gb"},
        ).status
        == 200
    )
    sub = insert_subscription(tenant_id, plan="standard")
    invalid = ("billing_usage_rejected_events_total", {"reason": "INVALID_VALUE", "meter": meter})
    early = ("billing_usage_rejected_events_total", {"reason": "BEFORE_SUBSCRIPTION", "meter": ""})
    before = [sample(name, **labels) for name, labels in (invalid, early)]
    bad = [{"event_type": f"st_{tag}", "properties": {"gb": "x"}}, {"endpoint": "/v1/x"}]
    assert stack.track(sub.id, bad).status == 400
    too_early = sub.anchor_at - dt.timedelta(seconds=1)
    assert (
        stack.track(sub.id, [{"endpoint": "/v1/x", "timestamp": too_early.isoformat().replace("+00:00", "Z")}]).status
        == 200
    )
    assert [sample(name, **labels) - was for (name, labels), was in zip((invalid, early), before, strict=True)] == [
        2,
        1,
    ]
