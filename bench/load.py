"""The load generator: one function run in each of several separate processes; each process
drives `threads` closed loops, one connection each, for a fixed window shared by all."""

from __future__ import annotations

import http.client
import json
import os
import queue
import resource
import threading
import time

import grpc

RPC_TIMEOUT = 30.0
FLOOR_METHOD = "/bench.Floor/Noop"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Failure(Exception):
    pass


class GrpcClient:
    def __init__(self, address: str, key: str):
        from billing.v1 import health_pb2_grpc, invoice_pb2_grpc, plan_pb2_grpc, subscription_pb2_grpc, usage_pb2_grpc

        # A local subchannel pool gives each loop its own HTTP/2 connection.
        self.channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.md = (("authorization", f"Bearer {key}"),)
        self.health = health_pb2_grpc.HealthServiceStub(self.channel)
        self.plans = plan_pb2_grpc.PlanServiceStub(self.channel)
        self.subs = subscription_pb2_grpc.SubscriptionServiceStub(self.channel)
        self.usage = usage_pb2_grpc.UsageServiceStub(self.channel)
        self.invoices = invoice_pb2_grpc.InvoiceServiceStub(self.channel)
        # bench/floor.py's bare server: bytes in and out
        self.noop: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(FLOOR_METHOD)
        grpc.channel_ready_future(self.channel).result(timeout=10)

    def close(self):
        self.channel.close()


class RestClient:
    """http.client keep-alive connection to Envoy."""

    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=RPC_TIMEOUT)
        self.headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    def call(self, method: str, path: str, body=None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            reply = self.conn.getresponse()
            payload = reply.read()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()  # reconnects on the next request
            raise
        if reply.status != 200:
            raise Failure(f"HTTP {reply.status}: {payload[:200]!r}")
        return payload

    def close(self):
        self.conn.close()


def _events(tag: str, n: int) -> list[tuple[str, str]]:
    return [(f"{tag}-{j}", f"/v1/endpoint/{j % 7}") for j in range(n)]


def call_once(op: str, door: str, client, state: dict, i: int):
    """One operation; returns a created id or None; raises on any failure."""
    tag = state["tag"]
    if op == "floor":
        client.noop(b"", timeout=RPC_TIMEOUT)
    elif op == "health":
        if door == "grpc":
            from billing.v1 import health_pb2

            client.health.GetHealth(health_pb2.GetHealthRequest(), timeout=RPC_TIMEOUT)
        else:
            client.call("GET", "/billing/health")
    elif op == "plan":
        if door == "grpc":
            from billing.v1 import plan_pb2

            client.plans.GetPlan(plan_pb2.GetPlanRequest(plan_id="standard"), metadata=client.md, timeout=RPC_TIMEOUT)
        else:
            client.call("GET", "/billing/plans/standard")
    elif op == "proxy":  # a request to the platform's API (bench/gateway.py): direct or via the gateway
        client.call("GET", f"/v1/items/{i % 1000}")
    elif op == "sub_create":
        tenant = f"bench-{tag}-{i}"
        body: dict = {"tenant_id": tenant, "plan_id": "standard", "billing_email": f"{tenant}@bench.example"}
        if door == "grpc":
            from billing.v1 import subscription_pb2

            return client.subs.CreateSubscription(
                subscription_pb2.CreateSubscriptionRequest(**body), metadata=client.md, timeout=RPC_TIMEOUT
            ).id
        return json.loads(client.call("POST", "/billing/subscriptions", body))["id"]
    elif op.startswith("usage_"):  # usage_<events per call>
        n = int(op.removeprefix("usage_"))
        sub = state["items"][0]
        events = _events(f"{tag}-{i}", n)
        if door == "grpc":
            from billing.v1 import usage_pb2

            reply = client.usage.TrackUsage(
                usage_pb2.TrackUsageRequest(
                    subscription_id=sub,
                    events=[usage_pb2.UsageEvent(event_id=e, endpoint=p, count=1) for e, p in events],
                ),
                metadata=client.md,
                timeout=RPC_TIMEOUT,
            )
            accepted = reply.accepted
        else:
            reply = json.loads(
                client.call(
                    "POST",
                    "/billing/metrics/track",
                    {"subscription_id": sub, "events": [{"event_id": e, "endpoint": p, "count": 1} for e, p in events]},
                )
            )
            accepted = int(reply.get("accepted", 0))
        if accepted != n:
            raise Failure(f"accepted {accepted} of {n}: {str(reply)[:200]}")
    elif op == "invoice":
        if not state["items"]:
            raise StopIteration
        sub = state["items"].pop()
        if door == "grpc":
            from billing.v1 import invoice_pb2

            return client.invoices.GenerateInvoice(
                invoice_pb2.GenerateInvoiceRequest(subscription_id=sub), metadata=client.md, timeout=RPC_TIMEOUT
            ).id
        return json.loads(client.call("POST", "/billing/invoices/generate", {"subscription_id": sub}))["id"]
    elif op == "pdf":
        invoice = state["items"][i % len(state["items"])]
        if door == "grpc":
            from billing.v1 import invoice_pb2

            data = client.invoices.GetInvoicePdf(
                invoice_pb2.GetInvoicePdfRequest(id=invoice), metadata=client.md, timeout=RPC_TIMEOUT
            ).data
        else:
            data = client.call("GET", f"/billing/invoices/{invoice}/pdf")
        if not data.startswith(b"%PDF"):
            raise Failure("not a PDF")
    else:
        raise ValueError(op)
    return None


class Tally:
    """One loop's results, merged into the process's `out` at the end."""

    def __init__(self):
        self.latencies, self.created, self.errors, self.first_error, self.last_done = [], [], 0, None, None

    def attempt(self, op: str, door: str, client, state: dict, i: int, since: float) -> None:
        """One call; its latency runs from `since` (perf_counter): the call's start in a closed
        loop, its scheduled arrival in an open one. StopIteration (no items left) propagates."""
        try:
            result = call_once(op, door, client, state, i)
        except StopIteration:
            raise
        except Exception as error:  # noqa: BLE001 - counted and reported, the loop goes on
            self.errors += 1
            detail = error.details() if isinstance(error, grpc.RpcError) else error
            self.first_error = self.first_error or f"{type(error).__name__}: {detail}"
            return
        self.latencies.append(time.perf_counter() - since)
        self.last_done = time.time()
        if result is not None:
            self.created.append(result)

    def merge(self, out: dict) -> None:
        with out["lock"]:
            out["latencies"].extend(self.latencies)
            out["created"].extend(self.created)
            out["errors"] += self.errors
            out["first_error"] = out["first_error"] or self.first_error
            if self.last_done:
                out["last_done"] = max(out["last_done"] or 0, self.last_done)


def _connect(spec: dict, slot: int):
    if spec["door"] == "grpc":
        addresses = spec["grpc_addresses"]
        return GrpcClient(addresses[(spec["worker"] * spec["threads"] + slot) % len(addresses)], spec["key"])
    return RestClient(spec["rest_port"], spec["key"])


def _loop(spec: dict, slot: int, items: list, out: dict, ready: threading.Barrier, arrivals: queue.Queue | None):
    """A closed loop (each call starts when the previous one has returned) or, with `arrivals`, one
    sender of an open loop: it takes scheduled arrival times (perf_counter) until None."""
    op, door = spec["op"], spec["door"]
    client = _connect(spec, slot)
    state = {"tag": f"{spec['run']}-{spec['worker']}-{slot}", "items": items}
    tally = Tally()
    ready.wait()
    end = spec["start_at"] + spec["duration"]
    while time.time() < spec["start_at"]:
        time.sleep(0.001)  # synchronised start of all load processes
    i = 0
    try:
        while True:
            due = arrivals.get() if arrivals else time.perf_counter()
            if due is None or (arrivals is None and time.time() >= end):
                break
            i += 1
            tally.attempt(op, door, client, state, i, due)
    except StopIteration:
        out["exhausted"] = True
    finally:
        client.close()
    tally.merge(out)


def _schedule(spec: dict, arrivals: queue.Queue, senders: int) -> None:
    """Open loop: put one arrival every 1/rate s for the window, whatever the replies are doing
    (a reply that is late delays no arrival), then one None per sender. Load processes are offset
    by a fraction of the interval so that together they offer evenly spaced arrivals."""
    interval = 1.0 / spec["rate"]
    while time.time() < spec["start_at"]:
        time.sleep(0.001)
    first = time.perf_counter() + interval * spec["worker"] / spec["procs"]
    for k in range(int(spec["duration"] * spec["rate"])):
        due = first + k * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        arrivals.put(due)
    for _ in range(senders):
        arrivals.put(None)


def run_worker(spec: dict) -> dict:
    """Entry point in each load process. spec: op, door, key, threads, worker, run, start_at,
    duration, items (this process's share), grpc_addresses / rest_port; with `rate` (calls/s
    offered by this process) and `procs` (load processes), an open loop: `threads` senders share
    the arrivals and the items."""
    threads = spec["threads"]
    open_loop = spec.get("rate") is not None
    arrivals: queue.Queue | None = queue.Queue() if open_loop else None
    shares = [spec["items"]] * threads if open_loop else [spec["items"][t::threads] for t in range(threads)]
    out = {
        "latencies": [],
        "created": [],
        "errors": 0,
        "first_error": None,
        "last_done": None,
        "exhausted": False,
        "lock": threading.Lock(),
    }
    ready = threading.Barrier(threads + 1)
    loops = [
        threading.Thread(target=_loop, args=(spec, t, shares[t], out, ready, arrivals), daemon=True)
        for t in range(threads)
    ]
    for loop in loops:
        loop.start()
    ready.wait()  # all connections set up; CPU is counted from here
    cpu0, wall0 = _cpu(), time.time()
    if arrivals is not None:
        _schedule(spec, arrivals, threads)
    for loop in loops:
        loop.join()
    cpu = _cpu() - cpu0
    wall = time.time() - max(wall0, spec["start_at"])
    out.pop("lock")
    out.update(pid=os.getpid(), cpu_s=cpu, wall_s=wall)
    return out


def warm(_=None) -> int:
    """Import everything once in each load process before any measurement."""
    from billing.v1 import health_pb2, invoice_pb2, plan_pb2, subscription_pb2, usage_pb2  # noqa: F401

    return os.getpid()
