"""Waiting for a door to open by asking it, never by sleeping a fixed time."""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_for_grpc(address: str, timeout: float = 30.0, credentials: grpc.ChannelCredentials | None = None) -> None:
    """Poll grpc.health.v1 until SERVING (over TLS with `credentials`)."""
    deadline = time.monotonic() + timeout
    with grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                check = stub.Check  # type: ignore[attr-defined]  # the stubs leave the client's methods out
                reply = check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gRPC server at {address} not SERVING after {timeout}s") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"gRPC server at {address} not SERVING after {timeout}s")


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 30.0, alive=lambda: True) -> None:
    """Poll `ready()` until it is true (an OSError counts as not yet); `alive` lets the caller
    stop early if its process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:  # refused, reset, timed out, no socket file yet; urllib's URLError too
            pass
        if not alive():
            raise RuntimeError(f"the process behind {what} exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer 200 within {timeout}s")
        time.sleep(0.05)  # between polls only: readiness is decided by the answer


def wait_for_http(url: str, timeout: float = 30.0, alive=lambda: True, context: ssl.SSLContext | None = None) -> None:
    """Poll `url` until it answers 200; `context` is the TLS context of an https:// URL."""

    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=1, context=context) as reply:
            return reply.status == 200

    wait_until(ready, url, timeout, alive)
