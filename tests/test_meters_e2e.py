"""Meters through the real stack (endpoints 20-23): gRPC, REST via Envoy, both backends."""

from __future__ import annotations

import uuid

import grpc
import pytest

from billing.v1 import meter_pb2, meter_pb2_grpc


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
        ({"id": "Bad Id"}, "id"),
        ({"aggregation": "AGGREGATION_UNSPECIFIED"}, "aggregation"),
        ({"value_property": ""}, "value_property"),
        ({"group_by": ["a", "b", "c", "d"]}, "group_by"),
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
