"""The true floor: a bare grpcio server with one no-op unary method (no interceptors,
no database, no protobuf: bytes in, bytes out) and the same thread settings as the billing
server, driven by the same load loops as every other figure.

Both servers are hosted in the bench's own process (as in bench/interceptor.py), after the main
stack has stopped: the billing server is `create_server(settings, "127.0.0.1:0")` with the
in-process limiter, on its own fresh database, and the tenant is an ACTIVE ENTERPRISE one whose
limit the bench catalogue raises so no call is refused. Runs alternate floor / GetHealth /
authenticated GetPlan (tenant key: auth + tier limit + plan), `repeats` times; each repeat gives
a ratio to the adjacent floor run and the figures are the medians. Single-event tracking (admin
key, one event a call, every loop into the tenant's one subscription: auth + validation + a write transaction,
group-committed) is measured the same way, for the group-commit goal."""

from __future__ import annotations

import datetime as dt
from concurrent import futures

import grpc

from bench import interceptor
from bench.load import FLOOR_METHOD

# (label, load op) in run order; the floor first so each repeat's ratios use the run just before.
RUNS = [("floor", "floor"), ("GetHealth", "health"), ("GetPlan (tenant key)", "plan"), ("TrackUsage x1", "usage_1")]
# The goals: throughput as a fraction of the floor
GOALS = {"GetHealth": 0.8, "GetPlan (tenant key)": 0.67, "TrackUsage x1": 0.5}


def bare_server(threads: int) -> tuple[grpc.Server, int]:
    """The floor: grpcio with the billing server's thread pool and options, one no-op method."""
    noop: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="floor"),
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=threads * 64,
    )
    service, method = FLOOR_METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: noop})])
    return server, server.add_insecure_port("127.0.0.1:0")


def measure(
    runner_cls, pool, workdir, database_url: str, duration: float, repeats: int, load_procs: int, threads: int
) -> dict:
    from server import collector
    from server.persistence import db
    from server.services import keys
    from server.transport.app import create_server

    settings, tenant, key = interceptor.prepared(workdir, database_url, "bench-floor")
    with db.session():
        admin_key = keys.create_key(now=dt.datetime.now(dt.timezone.utc), admin=True)
    keys_of = {"usage_1": admin_key}
    items_of = {"usage_1": [f"sub_{tenant}"] * threads}  # each loop of a load process takes one
    floor, floor_port = bare_server(settings.grpc_threads)
    billing, billing_port = create_server(settings, "127.0.0.1:0")
    collector.tune_for_serving()  # as billing-server does; the floor shares the process and so the settings
    address = {op: f"127.0.0.1:{floor_port if op == 'floor' else billing_port}" for _, op in RUNS}
    runs: dict[str, list[dict]] = {label: [] for label, _ in RUNS}
    print(
        f"floor: bare grpcio no-op vs the billing server ({settings.grpc_threads} threads each, in-process):",
        flush=True,
    )
    try:
        floor.start()
        billing.start()
        for _ in range(repeats):
            for label, op in RUNS:
                runner = runner_cls(
                    interceptor.InProcessServers(address[op], keys_of.get(op, key)), pool, duration, load_procs, threads
                )
                summary, _ = runner.once(op, "grpc", [list(items_of.get(op, [])) for _ in range(load_procs)])
                runs[label].append(summary)
                print(interceptor.run_line(label, 21, summary), flush=True)
    finally:
        floor.stop(0)
        billing.stop(0)
        db.close()
    result = interceptor.summarize(runs, base_name="floor")
    result.update(
        errors={label: sum(r["errors"] for r in rs) for label, rs in runs.items()},
        threads=settings.grpc_threads,
        runs={
            label: [{k: r[k] for k in ("ops_per_s", "p50_ms", "p99_ms", "errors", "server_cpu_cores")} for r in rs]
            for label, rs in runs.items()
        },
    )
    return result


def text(result: dict) -> str:
    """The interceptor table's columns (ratio and cost against the floor), then the issue's goals."""
    lines = [interceptor.text(result, first_column="server")]
    for label, goal in GOALS.items():
        if label not in result:
            continue
        ratio = result[label]["ratio"]
        lines.append(f"  [{'PASS' if ratio >= goal else 'FAIL'}] {label} >= {goal} of the floor: {ratio:.2f}")
    return "\n".join(lines)
