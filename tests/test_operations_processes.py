"""The server as operators run it: a /metrics scrape of a real process, SIGTERM under load (no
call that was accepted fails, nothing acknowledged is lost), and two replicas behind Envoy with
PostgreSQL and Redis where one is killed under load."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from concurrent import futures

import grpc
import pytest

from billing.v1 import usage_pb2, usage_pb2_grpc
from calls import http_call, poll
from factories import insert_subscription, recorded_event_ids
from processes import ADMIN_KEY, billing_server, create_gateway_key, free_port, migrate, running_envoy
from server import envoy_launcher
from server.config import Settings
from stores import REDIS_URL, bound, needs_redis, new_database

BATCH = 50  # events per TrackUsage call: long enough calls that some are always in flight
KILL_BLIP_SECONDS = 2.0  # after a replica dies, reads may fail only this long


@dataclasses.dataclass
class Outcome:
    request_id: str
    started: float
    ended: float
    ok: bool
    detail: str
    event_ids: tuple[str, ...] = ()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def _track_until(stub, subscription_id: str, stop: threading.Event, auth) -> list[Outcome]:
    outcomes = []
    while not stop.is_set():
        ids = tuple(uuid.uuid4().hex for _ in range(BATCH))
        request = usage_pb2.TrackUsageRequest(
            subscription_id=subscription_id, events=[usage_pb2.UsageEvent(event_id=i, endpoint="/v1/load") for i in ids]
        )
        request_id, started = uuid.uuid4().hex, time.monotonic()
        try:
            stub.TrackUsage(request, metadata=(*auth, ("x-request-id", request_id)), timeout=30)
            outcomes.append(Outcome(request_id, started, time.monotonic(), True, "OK", ids))
        except grpc.RpcError as error:
            outcomes.append(Outcome(request_id, started, time.monotonic(), False, error.code().name, ids))
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                time.sleep(0.01)  # between retries of a refused call only
    return outcomes


def _server_calls(log_file) -> dict[str, str]:
    """request id -> grpc code of every TrackUsage the server handled, from its JSON call log."""
    entries = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    return {
        e["request_id"]: e["grpc_code"]
        for e in entries
        if e["logger"] == "billing.calls" and e["method"].endswith("/TrackUsage")
    }


def test_sigterm_under_load_finishes_every_accepted_call(stack, tmp_path):
    """Every call the server accepted (it logs each one it handled) completes OK, those in flight
    at SIGTERM included; the calls that failed (refused while stopping: UNAVAILABLE, or CANCELLED
    by gRPC before the server took them) never reached it and stored nothing; every acknowledged
    event is stored."""
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": stack.settings.database_url,
        "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "BILLING_SHUTDOWN_GRACE_S": "10",
        "BILLING_METRICS_PORT": str(metrics_port),
        "BILLING_BIND": "127.0.0.1",
        "BILLING_LOG_FORMAT": "json",
    }
    subscription_id = insert_subscription(f"graceful-{uuid.uuid4().hex[:8]}").id
    auth = (("authorization", f"Bearer {ADMIN_KEY}"),)
    stop = threading.Event()
    with (
        billing_server(env, tmp_path, "graceful", port) as process,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        futures.ThreadPoolExecutor(6) as pool,
    ):
        stub = usage_pb2_grpc.UsageServiceStub(channel)
        load = [pool.submit(_track_until, stub, subscription_id, stop, auth) for _ in range(6)]
        deadline = time.monotonic() + 30
        while 'grpc_code="OK",grpc_method="TrackUsage"' not in (text := scrape(metrics_port)) or _handled(text) < 30:
            assert time.monotonic() < deadline, "no load reached the server"
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        stop.set()
        outcomes = [o for f in load for o in f.result()]
    assert {o.detail for o in outcomes} <= {"OK", "UNAVAILABLE", "CANCELLED"}, {o.detail for o in outcomes}
    handled = _server_calls(tmp_path / "graceful.log")
    assert set(handled.values()) == {"OK"}
    assert {o.request_id for o in outcomes if o.ok} == set(handled)
    in_flight = [o for o in outcomes if o.started < sigterm_at < o.ended and o.request_id in handled]
    assert in_flight and all(o.ok for o in in_flight)
    acknowledged = {i for o in outcomes if o.ok for i in o.event_ids}
    refused = {i for o in outcomes if not o.ok for i in o.event_ids}
    recorded = recorded_event_ids(subscription_id)
    assert acknowledged <= recorded and not (refused & recorded)


def _handled(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="TrackUsage"' in line
    )


@needs_redis
@pytest.mark.postgres
@pytest.mark.redis
def test_two_replicas_lose_one_under_load(tmp_path):
    """SIGKILL one of two replicas while clients read and write through Envoy: reads fail at most
    for a bounded blip (Envoy retries them elsewhere, health checks and outlier detection take the
    dead replica out), and every write a client retried until acknowledged is stored exactly once."""
    with new_database("postgresql", tmp_path) as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "BILLING_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "BILLING_BIND": "127.0.0.1",
        }
        migrate(env)
        ports = [free_port(), free_port()]
        settings = dataclasses.replace(
            Settings(),
            http_port=free_port(),
            gateway_port=free_port(),
            demo_upstream_port=free_port(),
        )
        rest = f"http://127.0.0.1:{settings.http_port}"
        headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
        with (
            billing_server(env, tmp_path, "replica0", ports[0]) as victim,
            billing_server(env, tmp_path, "replica1", ports[1]),
            running_envoy(settings, ports, tmp_path / "envoy", create_gateway_key(env)),
        ):
            created = http_call(
                "POST",
                f"{rest}/billing/subscriptions",
                headers,
                json_body(
                    {
                        "tenant_id": f"replicas-{uuid.uuid4().hex[:8]}",
                        "plan_id": "standard",
                        "billing_email": "ops@example.com",
                    }
                ),
            )
            assert created.status == 200, created.body
            subscription_id = created.json()["id"]
            stop = threading.Event()
            reads: list[tuple[float, int]] = []  # (when, status), appended by every reader
            written: set[str] = set()  # event ids acknowledged

            def read() -> None:
                while not stop.is_set():
                    status = http_call("GET", f"{rest}/billing/subscriptions/{subscription_id}", headers).status
                    reads.append((time.monotonic(), status))

            def write() -> int:
                """Each batch is retried with the same event ids until acknowledged; returns the retries."""
                retries = 0
                while not stop.is_set():
                    ids = [uuid.uuid4().hex for _ in range(20)]
                    body = json_body(
                        {
                            "subscription_id": subscription_id,
                            "events": [{"event_id": i, "endpoint": "/v1/load"} for i in ids],
                        }
                    )
                    while http_call("POST", f"{rest}/billing/metrics/track", headers, body).status != 200:
                        retries += 1
                    written.update(ids)
                return retries

            def late_reads() -> list[int]:
                return [status for at, status in list(reads) if at > killed_at + KILL_BLIP_SECONDS]

            with futures.ThreadPoolExecutor(6) as pool:
                readers = [pool.submit(read) for _ in range(4)]
                writers = [pool.submit(write) for _ in range(2)]
                poll(
                    lambda: (len(reads), len(written)), lambda seen: seen[0] >= 20 and seen[1] > 0, timeout=30
                )  # under load
                victim.kill()
                killed_at = time.monotonic()
                poll(late_reads, lambda late: len(late) >= 50, timeout=30)  # past the blip, counted in reads
                stop.set()
                for reader in readers:
                    reader.result()
                retries = sum(f.result() for f in writers)
            clusters = envoy_launcher.admin(tmp_path / "envoy", "/clusters")[1]
        with bound(url):
            recorded = recorded_event_ids(subscription_id)
    after = [status for at, status in reads if at > killed_at]
    print(
        f"reads after the kill: {len(after)}, failed {len(after) - after.count(200)}; "
        f"writes acknowledged {len(written)}, client retries {retries}"
    )
    late = [status for at, status in reads if at > killed_at + KILL_BLIP_SECONDS]
    assert len(after) > 50 and late and set(late) == {200}, sorted(set(after))
    assert after.count(200) / len(after) > 0.95
    assert written and written == recorded
    assert (
        f"billing_grpc::127.0.0.1:{ports[0]}::health_flags::/failed_active_hc" in clusters
        or f"127.0.0.1:{ports[0]}::health_flags::/failed_outlier_check" in clusters
    ), clusters


def json_body(value) -> bytes:
    return json.dumps(value).encode()
