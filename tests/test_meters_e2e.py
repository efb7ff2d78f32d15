"""Meters through the real stack (endpoints 20-23): gRPC, REST via Envoy, both backends."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest

from billing.v1 import meter_pb2, meter_pb2_grpc
from calls import iso
from factories import insert_subscription


@pytest.fixture
def meter_id() -> str:
    return f"tokens-{uuid.uuid4().hex[:8]}"


def tokens_meter(meter_id: str, **overrides) -> dict:
    return {
        "id": meter_id,
        "name": "Input tokens",
        "event_type": "llm_tokens",
        "aggregation": "SUM",
        "value_property": "input_tokens",
        "group_by": ["model"],
        "filter": {"region": "eu"},
        **overrides,
    }


def test_a_meter_is_created_read_listed_and_archived_over_rest(stack, meter_id):
    created = stack.rest("POST", "/billing/meters", body=tokens_meter(meter_id))
    assert created.status == 200, created.body
    meter = created.json()
    assert {
        k: meter[k] for k in ("id", "name", "event_type", "aggregation", "value_property", "group_by", "filter")
    } == {
        "id": meter_id,
        "name": "Input tokens",
        "event_type": "llm_tokens",
        "aggregation": "SUM",
        "value_property": "input_tokens",
        "group_by": ["model"],
        "filter": {"region": "eu"},
    }
    assert meter["archived"] is False and meter["created_at"].endswith("Z")
    assert stack.rest("GET", f"/billing/meters/{meter_id}").json() == meter

    listed = stack.rest("GET", "/billing/meters", params={"page_size": 500}).json()["meters"]
    assert meter in listed and any(m["id"] == "requests" for m in listed)

    archived = stack.rest("DELETE", f"/billing/meters/{meter_id}")
    assert archived.status == 200 and archived.json()["archived"] is True
    assert stack.rest("DELETE", f"/billing/meters/{meter_id}").json() == archived.json()  # idempotent
    listed = stack.rest("GET", "/billing/meters", params={"page_size": 500}).json()["meters"]
    assert meter_id not in [m["id"] for m in listed]
    with_archived = stack.rest("GET", "/billing/meters", params={"page_size": 500, "include_archived": "true"})
    assert meter_id in [m["id"] for m in with_archived.json()["meters"]]


def test_a_taken_id_is_409_and_an_invalid_meter_400_naming_the_field(stack, meter_id):
    assert stack.rest("POST", "/billing/meters", body=tokens_meter(meter_id)).status == 200
    taken = stack.rest("POST", "/billing/meters", body=tokens_meter(meter_id))
    assert (taken.status, taken.reason()) == (409, "METER_EXISTS")
    for overrides, field in [
        ({"id": "Bad Id"}, "meter.id"),
        ({"id": "bad!"}, "meter.id"),
        ({"aggregation": "AGGREGATION_UNSPECIFIED"}, "meter.aggregation"),
        ({"value_property": ""}, "meter.value_property"),
        ({"group_by": ["a", "b", "c", "d"]}, "meter.group_by"),
        ({"filter": {"bad key": "x"}}, "meter.filter"),
    ]:
        reply = stack.rest("POST", "/billing/meters", body=tokens_meter(f"{meter_id}-x", **overrides))
        assert reply.status == 400, (overrides, reply.body)
        violations = [d for d in reply.json()["details"] if d["@type"].endswith("BadRequest")]
        assert violations[0]["field_violations"][0]["field"] == field


def test_unknown_meter_is_404_and_the_built_in_one_cannot_be_archived(stack):
    missing = stack.rest("GET", "/billing/meters/no-such-meter")
    assert (missing.status, missing.reason()) == (404, "METER_NOT_FOUND")
    built_in = stack.rest("DELETE", "/billing/meters/requests")
    assert (built_in.status, built_in.reason()) == (400, "METER_IN_USE")


def test_tenant_keys_read_meters_but_only_admins_define_or_archive_them(stack, tenant_id, meter_id):
    key = stack.tenant_key(tenant_id)
    assert stack.rest("GET", "/billing/meters/requests", key=key).status == 200
    assert stack.rest("POST", "/billing/meters", key=key, body=tokens_meter(meter_id)).status == 403
    assert stack.rest("DELETE", "/billing/meters/requests", key=key).status == 403


def test_meters_over_grpc(stack, meter_id):
    stub = stack.stub(meter_pb2_grpc.MeterServiceStub)
    auth = stack.auth(stack.admin_key)
    meter = meter_pb2.Meter(
        id=meter_id, name="Users", event_type="login", aggregation=meter_pb2.Meter.UNIQUE_COUNT, value_property="user"
    )
    created = stub.CreateMeter(meter_pb2.CreateMeterRequest(meter=meter), metadata=auth)
    assert (created.id, created.aggregation) == (meter_id, meter_pb2.Meter.UNIQUE_COUNT)
    assert stub.GetMeter(meter_pb2.GetMeterRequest(meter_id=meter_id), metadata=auth) == created
    with pytest.raises(grpc.RpcError) as error:
        stub.CreateMeter(meter_pb2.CreateMeterRequest(meter=meter), metadata=auth)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS


# --- events with properties, through the meters, read by endpoint 24 -------------------------


def define(stack, meter_id: str, **fields) -> dict:
    reply = stack.rest("POST", "/billing/meters", body={"id": meter_id, "name": meter_id, **fields})
    assert reply.status == 200, reply.body
    return reply.json()


def usage_rows(stack, sub_id: str, meter_id: str, key="admin", **params) -> list[dict]:
    reply = stack.rest(
        "GET", f"/billing/subscriptions/{sub_id}/meters/{meter_id}/usage", key=key, params=params or None
    )
    assert reply.status == 200, reply.body
    return reply.json()["rows"]


def test_llm_tokens_per_model_sum_max_unique_and_latest(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    ids = {kind: f"{kind}-{tag}" for kind in ("input", "peak", "users", "last", "calls")}
    define(
        stack,
        ids["input"],
        event_type=f"llm_{tag}",
        aggregation="SUM",
        value_property="input_tokens",
        group_by=["model"],
    )
    define(stack, ids["peak"], event_type=f"llm_{tag}", aggregation="MAX", value_property="latency_ms")
    define(stack, ids["users"], event_type=f"llm_{tag}", aggregation="UNIQUE_COUNT", value_property="user")
    define(stack, ids["last"], event_type=f"llm_{tag}", aggregation="LATEST", value_property="latency_ms")
    define(stack, ids["calls"], event_type=f"llm_{tag}", aggregation="COUNT", filter={"model": "m-large"})
    sub = stack.subscribe(tenant_id)
    events = [
        {
            "event_id": "a",
            "event_type": f"llm_{tag}",
            "properties": {"model": "m-large", "input_tokens": 120, "latency_ms": "12.5", "user": "u1"},
        },
        {
            "event_id": "b",
            "event_type": f"llm_{tag}",
            "properties": {"model": "m-small", "input_tokens": "0.25", "latency_ms": 40, "user": "u2"},
        },
        {
            "event_id": "c",
            "event_type": f"llm_{tag}",
            "properties": {"model": "m-large", "input_tokens": 1000, "latency_ms": 7, "user": "u1"},
        },
        {
            "event_id": "a",
            "event_type": f"llm_{tag}",
            "properties": {"model": "m-large", "input_tokens": 999999, "latency_ms": 1, "user": "u9"},
        },
        {"event_id": "r1", "endpoint": "/v1/search", "count": 3},
    ]
    reply = stack.track(sub["id"], events)
    assert reply.status == 200, reply.body
    assert (reply.json()["accepted"], reply.json()["duplicates"]) == (4, 1)
    assert [(r["groups"], r["value"]) for r in usage_rows(stack, sub["id"], ids["input"], group_by="model")] == [
        ({"model": "m-large"}, "1120"),
        ({"model": "m-small"}, "0.25"),
    ]
    assert [r["value"] for r in usage_rows(stack, sub["id"], ids["input"])] == ["1120.25"]
    assert [r["value"] for r in usage_rows(stack, sub["id"], ids["peak"])] == ["40"]
    assert [r["value"] for r in usage_rows(stack, sub["id"], ids["users"])] == ["2"]
    assert [r["value"] for r in usage_rows(stack, sub["id"], ids["calls"])] == ["2"]
    # the built-in meter is the seed's counting: only api_request events, by endpoint
    assert stack.total_requests(sub["id"]) == 3
    assert [(r["groups"], r["value"]) for r in usage_rows(stack, sub["id"], "requests", group_by="endpoint")] == [
        ({"endpoint": "/v1/search"}, "3")
    ]
    period = usage_rows(stack, sub["id"], "requests")[0]
    assert (period["window_start"], period["window_end"]) == (sub["current_period_start"], sub["current_period_end"])


def test_an_event_matching_a_meter_without_a_valid_value_rejects_the_batch_whole(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    define(stack, f"gb-{tag}", event_type=f"storage_{tag}", aggregation="SUM", value_property="gb")
    sub = stack.subscribe(tenant_id)
    reply = stack.track(
        sub["id"],
        [
            {"event_id": "ok", "event_type": f"storage_{tag}", "properties": {"gb": 2}},
            {"event_id": "r", "endpoint": "/v1/x"},
            {"event_id": "bad", "event_type": f"storage_{tag}", "properties": {"gb": "two"}},
        ],
    )
    assert (reply.status, reply.reason()) == (400, "INVALID_VALUE")
    assert f"meter 'gb-{tag}'" in reply.json()["message"]
    violations = [d for d in reply.json()["details"] if d["@type"].endswith("BadRequest")]
    assert violations[0]["field_violations"][0]["field"] == "events[2].properties.gb"
    assert usage_rows(stack, sub["id"], f"gb-{tag}") == [] and stack.total_requests(sub["id"]) == 0


@pytest.mark.parametrize(
    "event, field",
    [
        ({"event_type": "Bad Type"}, "events[0].event_type"),
        ({"event_type": "x", "endpoint": "/v1/x"}, "events[0].endpoint"),
        ({"event_type": "x", "count": 2}, "events[0].count"),
        ({"event_type": "x", "properties": {"nested": {"a": 1}}}, "events[0].properties.nested"),
        ({"event_type": "x", "properties": {"list": [1]}}, "events[0].properties.list"),
        ({"event_type": "x", "properties": {"bad key": 1}}, "events[0].properties"),
        ({"event_type": "x", "properties": {f"k{i}": i for i in range(33)}}, "events[0].properties"),
        ({"event_type": "x", "properties": {"s": "x" * 257}}, "events[0].properties.s"),
    ],
)
def test_events_outside_the_property_limits_are_400_naming_the_field(stack, tenant_id, event, field):
    sub = stack.subscribe(tenant_id)
    reply = stack.track(sub["id"], [event])
    assert reply.status == 400, reply.body
    violations = [d for d in reply.json()["details"] if d["@type"].endswith("BadRequest")]
    assert violations[0]["field_violations"][0]["field"] == field


def test_the_largest_valid_batch_is_accepted(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    define(stack, f"big-{tag}", event_type=f"big_{tag}", aggregation="COUNT")
    sub = stack.subscribe(tenant_id)
    properties = {f"p{i:02d}": "y" * 121 for i in range(31)}  # 31 x 131 + 30 commas + braces: about 4 KiB
    properties["z"] = "w" * (4096 - len(__import__("json").dumps(properties, separators=(",", ":"))) - len(',"z":""'))
    events = [
        {"event_id": f"e{i:04d}" + "x" * 123, "event_type": f"big_{tag}", "properties": properties} for i in range(1000)
    ]
    reply = stack.track(sub["id"], events)
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["accepted"] == 1000
    assert [r["value"] for r in usage_rows(stack, sub["id"], f"big-{tag}")] == ["1000"]


def test_hour_and_day_windows_and_explicit_ranges(stack, tenant_id):
    tag = uuid.uuid4().hex[:6]
    define(stack, f"sec-{tag}", event_type=f"compute_{tag}", aggregation="SUM", value_property="seconds")
    anchor = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).replace(minute=20, second=0, microsecond=0)
    sub = insert_subscription(tenant_id, anchor=anchor).id
    at = [anchor + dt.timedelta(minutes=m) for m in (1, 2, 61, 60 * 25)]
    events = [
        {"event_id": str(i), "event_type": f"compute_{tag}", "properties": {"seconds": 1.5}, "timestamp": iso(t)}
        for i, t in enumerate(at)
    ]
    assert stack.track(sub, events).status == 200
    hours: dict[dt.datetime, float] = {}
    for t in at:
        hour = t.replace(minute=0, second=0)
        hours[hour] = hours.get(hour, 0) + 1.5
    rows = usage_rows(stack, sub, f"sec-{tag}", window_size="HOUR")
    assert [(dt.datetime.fromisoformat(r["window_start"]), float(r["value"])) for r in rows] == sorted(hours.items())
    days = usage_rows(stack, sub, f"sec-{tag}", window_size="DAY")
    assert sum(float(r["value"]) for r in days) == 6 and all(r["window_start"].endswith("T00:00:00Z") for r in days)
    # an explicit range is read by the clock hours it touches, and says so
    ranged = usage_rows(stack, sub, f"sec-{tag}", start_time=iso(at[2]), end_time=iso(at[3]))
    first, last = at[2].replace(minute=0, second=0), at[3].replace(minute=0, second=0) + dt.timedelta(hours=1)
    assert [(r["window_start"], r["window_end"], r["value"]) for r in ranged] == [(iso(first), iso(last), "3")]
    path = f"/billing/subscriptions/{sub}/meters/sec-{tag}/usage"
    backwards = stack.rest("GET", path, params={"start_time": iso(at[3]), "end_time": iso(at[0])})
    assert (backwards.status, backwards.reason()) == (400, "INVALID_ARGUMENT")
    too_long = stack.rest(
        "GET", path, params={"start_time": iso(anchor), "end_time": iso(anchor + dt.timedelta(days=367))}
    )
    assert too_long.status == 400
    assert stack.rest("GET", path, params={"group_by": "model"}).status == 400


def test_meter_usage_is_the_owners_and_admins_only(stack, tenant_id):
    sub = stack.subscribe(tenant_id)
    owner, other = stack.tenant_key(tenant_id), stack.tenant_key(f"{tenant_id}-other")
    assert usage_rows(stack, sub["id"], "requests", key=owner) == []
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}/meters/requests/usage", key=other).status == 404
    assert stack.rest("GET", f"/billing/subscriptions/{sub['id']}/meters/nope/usage").status == 404
