"""Idempotency-Key through the real stack, on both backends: a retry replays the first answer
(REST via Envoy and gRPC, successes and kept refusals alike) with `idempotent-replayed: true` and
does nothing; another request under the key is a mismatch; a key whose call still runs is in
use; eight identical calls at once have one effect; expired records go with the scheduler."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from concurrent import futures

import grpc
import peewee
import pytest

from billing.v1 import subscription_pb2, subscription_pb2_grpc, usage_pb2, usage_pb2_grpc
from grpc_errors import grpc_error, grpc_fields
from processes import BIN
from server.domain import idempotency as rules
from server.persistence import db
from server.persistence import idempotency as store
from server.persistence.idempotency import IdempotencyKey
from server.services import usage

TRACK = "/billing.v1.UsageService/TrackUsage"
UTC = dt.timezone.utc


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def events(n: int = 3) -> list[dict]:
    """Events without event ids: without a key, every call of them counts again."""
    return [{"endpoint": "/v1/search"} for _ in range(n)]


def track(stack, subscription_id: str, key: str, batch: list[dict]):
    return stack.rest(
        "POST",
        "/billing/metrics/track",
        body={"subscription_id": subscription_id, "events": batch},
        headers=keyed(key),
    )


def test_a_rest_retry_replays_the_first_answer_byte_for_byte_and_does_nothing(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    first = track(stack, subscription_id, key, events(3))
    again = track(stack, subscription_id, key, events(3))
    assert first.status == again.status == 200, first.body
    assert again.body == first.body and json.loads(first.body)["accepted"] == 3
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert stack.total_requests(subscription_id) == 3


def test_a_grpc_retry_replays_the_first_answer_with_the_marker_in_initial_metadata(stack, tenant_id):
    stub = stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)
    request = subscription_pb2.CreateSubscriptionRequest(
        tenant_id=tenant_id, plan_id="standard", billing_email="ops@example.com"
    )
    metadata = (*stack.auth(stack.admin_key), (rules.HEADER, new_key()))
    first, first_call = stub.CreateSubscription.with_call(request, metadata=metadata)
    again, again_call = stub.CreateSubscription.with_call(request, metadata=metadata)
    assert again == first  # without the key: ALREADY_EXISTS, one ACTIVE subscription per tenant
    assert (rules.REPLAYED_HEADER, "true") in again_call.initial_metadata()
    assert rules.REPLAYED_HEADER not in dict(first_call.initial_metadata())


def test_the_same_key_over_rest_and_grpc_is_one_request(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    first = track(stack, subscription_id, key, [{"endpoint": "/v1/a", "count": 2}])
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    request = usage_pb2.TrackUsageRequest(
        subscription_id=subscription_id, events=[usage_pb2.UsageEvent(endpoint="/v1/a", count=2)]
    )
    again, call = stub.TrackUsage.with_call(request, metadata=(*stack.auth(stack.admin_key), (rules.HEADER, key)))
    assert first.status == 200 and again.accepted == 1
    assert (rules.REPLAYED_HEADER, "true") in call.initial_metadata()
    assert stack.total_requests(subscription_id) == 2


def test_a_refusal_by_the_method_is_kept_and_replayed_with_the_marker(stack, tenant_id):
    body = {"tenant_id": tenant_id, "plan_id": "no-such-plan", "billing_email": "ops@example.com"}
    key = new_key()
    first = stack.rest("POST", "/billing/subscriptions", body=body, headers=keyed(key))
    again = stack.rest("POST", "/billing/subscriptions", body=body, headers=keyed(key))
    assert first.status == again.status == 400 and first.reason() == "UNKNOWN_PLAN"
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true" and "idempotent-replayed" not in first.headers

    stub = stack.stub(subscription_pb2_grpc.SubscriptionServiceStub)
    request = subscription_pb2.CreateSubscriptionRequest(**body)
    metadata = (*stack.auth(stack.admin_key), (rules.HEADER, key))
    replayed = grpc_error(stub.CreateSubscription, request, metadata=metadata)
    assert replayed.code() == grpc.StatusCode.INVALID_ARGUMENT and grpc_fields(replayed) == ["plan_id"]
    assert (rules.REPLAYED_HEADER, "true") in replayed.initial_metadata()


def test_the_key_with_another_request_is_a_mismatch(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    assert track(stack, subscription_id, key, events(2)).status == 200
    other = track(stack, subscription_id, key, events(5))
    assert other.status == 409 and other.reason() == "IDEMPOTENCY_KEY_MISMATCH"
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    request = usage_pb2.TrackUsageRequest(subscription_id=subscription_id, events=[usage_pb2.UsageEvent(endpoint="/x")])
    error = grpc_error(stub.TrackUsage, request, metadata=(*stack.auth(stack.admin_key), (rules.HEADER, key)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stack.total_requests(subscription_id) == 2


def test_keys_are_per_holder(stack, tenant_id):
    """A tenant's key and the admins' key of the same name are two keys: another request under
    it is no mismatch."""
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    assert track(stack, subscription_id, key, events(1)).status == 200
    tenant_call = stack.rest(
        "POST",
        "/billing/subscriptions",
        key=stack.tenant_key(tenant_id),
        body={"tenant_id": tenant_id, "plan_id": "no-such-plan", "billing_email": "ops@example.com"},
        headers=keyed(key),
    )
    assert tenant_call.status == 400 and tenant_call.reason() == "UNKNOWN_PLAN"
    assert "idempotent-replayed" not in tenant_call.headers
    # Its retry is replayed, the marker beside the rate limit's headers of a tenant key.
    retried = stack.rest(
        "POST",
        "/billing/subscriptions",
        key=stack.tenant_key(tenant_id),
        body={"tenant_id": tenant_id, "plan_id": "no-such-plan", "billing_email": "ops@example.com"},
        headers=keyed(key),
    )
    assert retried.body == tenant_call.body and retried.headers.get("idempotent-replayed") == "true"
    assert "x-ratelimit-remaining" in retried.headers


def test_a_key_whose_call_still_runs_is_in_use_and_free_again_once_released(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    request = usage_pb2.TrackUsageRequest(subscription_id=subscription_id, events=[usage_pb2.UsageEvent(endpoint="/x")])
    key = new_key()
    with db.session():  # a call on another replica has claimed the key and is still running
        token = store.claim(
            "admin", key, rules.fingerprint(TRACK, request.SerializeToString(deterministic=True)), dt.datetime.now(UTC)
        )
    assert token is not None
    rest = track(stack, subscription_id, key, [{"endpoint": "/x"}])
    assert rest.status == 409 and rest.reason() == "IDEMPOTENCY_KEY_IN_USE"
    stub = stack.stub(usage_pb2_grpc.UsageServiceStub)
    metadata = (*stack.auth(stack.admin_key), (rules.HEADER, key))
    assert grpc_error(stub.TrackUsage, request, metadata=metadata).code() == grpc.StatusCode.ABORTED
    assert stack.total_requests(subscription_id) == 0
    with db.session():
        store.release("admin", key, token)
    assert stub.TrackUsage(request, metadata=metadata).accepted == 1


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_invalid_key_is_refused_naming_the_header(stack, tenant_id, value):
    """Over REST too, where Envoy drops other headers gRPC would not take (a value that is not
    printable ASCII): this one reaches the server emptied, to be refused, not run without it."""
    subscription_id = stack.subscribe(tenant_id)["id"]
    reply = track(stack, subscription_id, value, events(1))
    assert reply.status == 400 and reply.reason() == "INVALID_IDEMPOTENCY_KEY", reply.body
    assert "Idempotency-Key" in reply.json()["message"]
    assert stack.total_requests(subscription_id) == 0


def test_eight_identical_calls_at_once_have_one_effect(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    with futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: track(stack, subscription_id, key, events(4)), range(8)))
    done = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status != 200]
    assert done and {r.body for r in done} == {done[0].body}
    assert [r.headers.get("idempotent-replayed") for r in done].count(None) <= 1
    assert {(r.status, r.reason()) for r in refused} <= {(409, "IDEMPOTENCY_KEY_IN_USE")}
    assert stack.total_requests(subscription_id) == 4
    assert track(stack, subscription_id, key, events(4)).headers.get("idempotent-replayed") == "true"


def test_the_scheduler_purges_expired_records(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    assert track(stack, subscription_id, key, events(1)).status == 200
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url}
    later = (dt.datetime.now(UTC) + rules.KEPT_FOR + dt.timedelta(minutes=1)).isoformat()
    done = subprocess.run(
        [str(BIN / "billing-scheduler"), "run-once", "idempotency_purge", "--now", later, "--allow-future"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["purged"] >= 1
    with db.session():
        assert store.find("admin", key) is None
        assert not IdempotencyKey.select().where(IdempotencyKey.expires_at <= later).exists()
    again = track(stack, subscription_id, key, events(1))  # a new request under the old key
    assert again.status == 200 and "idempotent-replayed" not in again.headers
    assert stack.total_requests(subscription_id) == 2


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RuntimeError("a bug"), 500), (peewee.OperationalError("server closed the connection"), 503)],
)
def test_a_server_error_releases_the_key_so_a_retry_runs(stack, tenant_id, monkeypatch, failure, status):
    subscription_id = stack.subscribe(tenant_id)["id"]
    key = new_key()
    track_once = usage.track

    def failing_once(*args, **kwargs):
        monkeypatch.setattr(usage, "track", track_once)
        raise failure

    monkeypatch.setattr(usage, "track", failing_once)
    assert track(stack, subscription_id, key, events(2)).status == status
    with db.session():
        assert store.find("admin", key) is None
    retried = track(stack, subscription_id, key, events(2))
    assert retried.status == 200 and "idempotent-replayed" not in retried.headers
    assert stack.total_requests(subscription_id) == 2


def test_grpcurl_shows_a_replay_in_its_response_headers(stack, tenant_id):
    subscription_id = stack.subscribe(tenant_id)["id"]
    command = [
        str(BIN / "grpcurl"),
        "-plaintext",
        "-v",
        "-H",
        f"authorization: Bearer {stack.admin_key}",
        "-H",
        f"idempotency-key: {new_key()}",
        "-d",
        json.dumps({"subscription_id": subscription_id, "events": events(2)}),
        stack.grpc_address,
        "billing.v1.UsageService/TrackUsage",
    ]
    first, again = [subprocess.run(command, capture_output=True, text=True, check=True, timeout=30) for _ in range(2)]
    assert "idempotent-replayed: true" not in first.stdout
    assert "idempotent-replayed: true" in again.stdout.split("Response contents:")[0]
    assert '"accepted": 2' in again.stdout
    assert stack.total_requests(subscription_id) == 2
