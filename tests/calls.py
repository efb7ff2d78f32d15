"""Calls on the system under test: one HTTP request, polling until a change shows within a
bound, and limiter hits released together from many threads."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures

import grpc

from billing.v1 import plan_pb2, plan_pb2_grpc

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BOUND_SECONDS = 5.0  # docs/api.md: revoke, plan change and cancel take effect within 5 s


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def reason(self) -> str:
        """The ErrorInfo reason of a google.rpc.Status body."""
        details = {d["@type"]: d for d in self.json()["details"]}
        return details[ERROR_INFO]["reason"]


def iso(instant: dt.datetime) -> str:
    """A timestamp as the API writes it: RFC 3339 in UTC with a Z (Python reads it back with
    datetime.fromisoformat)."""
    return instant.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def http_call(method: str, url: str, headers: dict[str, str], data: bytes | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return Reply(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def poll(probe, until, timeout: float = BOUND_SECONDS):
    """Call `probe` until `until(result)`; returns (result, seconds taken) or fails at `timeout`."""
    started = time.monotonic()
    while True:
        result = probe()
        elapsed = time.monotonic() - started
        if until(result):
            return result, elapsed
        assert elapsed < timeout, f"not within {timeout}s: {result}"
        time.sleep(0.1)  # between probes only


def burst(stack, key: str, calls: int, path=lambda i: f"/v1/items/{i}") -> list[Reply]:
    """`calls` gateway requests with one tenant key, 16 at a time."""
    with futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda i: stack.gateway("GET", path(i), key=key), range(calls)))


def fire(limiter, key: str, limit: int, calls: int, threads: int = 16, now: float | None = None, quota=None) -> int:
    """`calls` hits from `threads` threads released together; returns how many were admitted."""
    admitted = collections.Counter()
    barrier = threading.Barrier(threads)

    def worker(share: int) -> None:
        barrier.wait()
        for _ in range(share):
            if limiter.hit(key, limit, now, quota=quota).allowed:
                admitted[threading.get_ident()] += 1

    shares = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(admitted.values())


def plan_reads_metadata(channel: grpc.Channel, metadata, calls: int) -> list[dict[str, str]]:
    """`calls` GetPlan calls one after the other; the initial metadata of each (a refusal raises)."""
    stub = plan_pb2_grpc.PlanServiceStub(channel)
    return [
        dict(stub.GetPlan.with_call(plan_pb2.GetPlanRequest(plan_id="free"), metadata=metadata)[1].initial_metadata())
        for _ in range(calls)
    ]
