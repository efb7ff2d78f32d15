"""Idempotency-Key across replicas: two billing-server processes sharing one PostgreSQL database
take eight identical calls at once, four each, and the batch counts once; either replica then
replays the one answer."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent import futures

import grpc
import pytest

from billing.v1 import subscription_pb2, subscription_pb2_grpc, usage_pb2, usage_pb2_grpc
from processes import ADMIN_KEY, free_port, migrate, server_process
from server.domain import idempotency as rules
from stores import new_database

AUTH = (("authorization", f"Bearer {ADMIN_KEY}"),)


def call(address: str, request, key: str):
    """TrackUsage on the replica at `address`: ("OK", response bytes, replayed?) or (code name,)."""
    with grpc.insecure_channel(address) as channel:
        stub = usage_pb2_grpc.UsageServiceStub(channel)
        try:
            response, done = stub.TrackUsage.with_call(request, metadata=(*AUTH, (rules.HEADER, key)), timeout=30)
        except grpc.RpcError as error:
            return (error.code().name,)
        return ("OK", response.SerializeToString(), (rules.REPLAYED_HEADER, "true") in done.initial_metadata())


@pytest.mark.postgres
def test_eight_identical_calls_on_two_replicas_have_one_effect(tmp_path):
    with new_database("postgresql", tmp_path) as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "BILLING_BIND": "127.0.0.1",
            "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "OUTBOX_DIR": str(tmp_path / "outbox"),
        }
        migrate(env)
        with (
            server_process(env, tmp_path, "a", free_port()) as first,
            server_process(env, tmp_path, "b", free_port()) as second,
        ):
            with grpc.insecure_channel(first) as channel:
                subscription = subscription_pb2_grpc.SubscriptionServiceStub(channel).CreateSubscription(
                    subscription_pb2.CreateSubscriptionRequest(
                        tenant_id=f"idem-{uuid.uuid4().hex[:8]}", plan_id="standard", billing_email="b@example.com"
                    ),
                    metadata=AUTH,
                )
            request = usage_pb2.TrackUsageRequest(
                subscription_id=subscription.id, events=[usage_pb2.UsageEvent(endpoint="/v1/x") for _ in range(5)]
            )
            key = f"key-{uuid.uuid4().hex}"
            start = threading.Barrier(8)

            def together(address: str):
                start.wait(timeout=10)
                return call(address, request, key)

            with futures.ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(together, [first, second] * 4))
            later = [call(address, request, key) for address in (first, second)]
            with grpc.insecure_channel(second) as channel:
                usage = usage_pb2_grpc.UsageServiceStub(channel).GetUsage(
                    usage_pb2.GetUsageRequest(subscription_id=subscription.id), metadata=AUTH
                )
    done = [o for o in outcomes if o[0] == "OK"]
    assert done and {o[0] for o in outcomes} <= {"OK", "ABORTED"}, outcomes
    assert [o[2] for o in done].count(False) <= 1  # at most one first answer; the rest replays
    assert {o[1] for o in done + later} == {done[0][1]} and all(o[2] for o in later)
    assert usage_pb2.TrackUsageResponse.FromString(done[0][1]).accepted == 5
    assert usage.total_requests == 5
