"""The gateway's cost: the same request to the same upstream through a plain
Envoy and through the gateway (admission in Envoy's Lua filter, grants and access-log metering by
the billing server), side by side in one run, the way OPA-Envoy publishes its ext_authz overhead.

The upstream must not be the bottleneck, so it is an Envoy `direct_response` (a fixed 200 JSON,
with an `x-billing-usage` report as an LLM API would send); three doors reach it:
- "direct": a listener of that same Envoy proxying to it with no filters (one process);
- "proxy": a plain Envoy in a process of its own, one worker like the gateway's, no filters (the
  gateway's topology: two processes in the path, which on a busy 2-core machine costs by itself);
- "gateway": the stack's own listener (server.envoy_launcher) with BILLING_UPSTREAM_URL at it.
The throughput goal (>= 0.5) is judged against "proxy", a plain Envoy proxy in front of the same
upstream in the gateway's own topology; the ratio to "direct" is printed beside it.
The billing server runs in this process (as in bench/interceptor.py) on a fresh SQLite file; the
tenant has an ENTERPRISE subscription whose limit the bench catalogue raises so that no request
is refused (errors must be 0) and every one is admitted and metered: two usage events each, the
request and its usage report, both checked exactly once at the end.

Figures: p50/p99 at 1 connection and throughput at load_procs x threads connections, medians of
`repeats` alternating runs; metering lag = time from a request's reply until the usage endpoint
counts it, for sequential requests, p50/p99. The load generator is Python (http.client) on the
same cores: read both throughputs, and compare ratios within one run only.

`python -m bench.gateway` or `BENCH_ONLY=gateway make bench` runs it alone; `make bench` runs it
after the other figures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import http.client
import json
import multiprocessing
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench import report
from bench.interceptor import bench_catalogue, enterprise_tenant, self_cpu_seconds
from bench.stack import free_port, proc_cpu_seconds

GOAL_P50_MS, GOAL_P99_MS, GOAL_THROUGHPUT = 0.5, 5.0, 0.5
LAG_REQUESTS = 200

LISTENER = """
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: {name}
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                {action}
{extra}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"""

UPSTREAM_ENVOY = """
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:{listeners}
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}
"""


# The fixed upstream reports usage like an LLM API, so the gateway bills two events per request
# (the request and its tokens): INPUT_TOKENS per request lets the bench check both exactly once.
INPUT_TOKENS = 3
USAGE_HEADER = f"llm_tokens; model=m-large; input_tokens={INPUT_TOKENS}; output_tokens=12"
TOKENS_METER = "bench_input_tokens"


def upstream_envoy_config(admin: int, upstream: int, direct: int) -> str:
    """The fixed upstream (a direct_response with a usage report) and the direct door (a plain
    proxy to it, a listener of the same Envoy)."""
    listeners = LISTENER.format(
        name="upstream",
        port=upstream,
        action="""direct_response: {status: 200, body: {inline_string: '{"ok": true}'}}""",
        extra=" " * 16 + f"response_headers_to_add: [{{header: {{key: x-billing-usage, value: '{USAGE_HEADER}'}}}}]",
    ) + LISTENER.format(name="direct", port=direct, action="route: {cluster: upstream}", extra="")
    return UPSTREAM_ENVOY.format(admin=admin, upstream=upstream, listeners=listeners)


def proxy_envoy_config(admin: int, upstream: int, proxy: int) -> str:
    """A plain Envoy proxy in a process of its own (the gateway's topology without its filters)."""
    listeners = LISTENER.format(name="proxy", port=proxy, action="route: {cluster: upstream}", extra="")
    return UPSTREAM_ENVOY.format(admin=admin, upstream=upstream, listeners=listeners)


@dataclasses.dataclass
class Door:
    """Quacks like bench.stack.Stack for Runner.once: a REST port, the tenant's key, CPU."""

    rest_port: int
    admin_key: str
    envoy_pids: list[int]
    grpc_addresses: tuple = ()
    servers: tuple = (None,)

    def cpu_snapshot(self) -> dict:
        return {"servers": self_cpu_seconds(), "envoy": sum(proc_cpu_seconds(pid) for pid in self.envoy_pids)}


def _envoy(config: pathlib.Path, workdir: pathlib.Path, log) -> subprocess.Popen:
    from server import envoy_launcher

    return subprocess.Popen(envoy_launcher.command(config, workdir), stdout=log, stderr=log)


def metering_lag(gateway_port: int, rest_port: int, key: str, admin_key: str, subscription_id: str) -> dict:
    """Sequential requests through the gateway (50/s) while a poller reads usage every 5 ms; a
    request's lag is from its reply until the first poll that counts it."""

    def total(conn) -> int:
        conn.request(
            "GET", f"/billing/metrics/usage/{subscription_id}", headers={"authorization": f"Bearer {admin_key}"}
        )
        return int(json.loads(conn.getresponse().read())["total_requests"])

    reader = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
    client = http.client.HTTPConnection("127.0.0.1", gateway_port, timeout=10)
    # The access-log stream is processed in order: once a first request is counted, the backlog
    # of the load runs before is ingested (how long that took is reported as drain_ms).
    drain_started = time.perf_counter()
    client.request("GET", "/v1/lag/first", headers={"authorization": f"Bearer {key}"})
    client.getresponse().read()
    while total(reader) < 1:
        time.sleep(0.01)
    drain_ms = round(1000 * (time.perf_counter() - drain_started))
    base = 1
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            seen.append((time.perf_counter(), total(reader)))
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    replied = []
    for i in range(LAG_REQUESTS):
        client.request("GET", f"/v1/lag/{i}", headers={"authorization": f"Bearer {key}"})
        client.getresponse().read()
        replied.append(time.perf_counter())
        time.sleep(0.02)
    deadline = time.perf_counter() + 10
    while (not seen or seen[-1][1] < base + LAG_REQUESTS) and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join()
    client.close()
    reader.close()
    lags = [
        next((t - sent for t, n in seen if n > base + i and t >= sent), float("nan")) for i, sent in enumerate(replied)
    ]
    counted = [lag for lag in lags if lag == lag]
    return {
        "requests": LAG_REQUESTS,
        "counted": len(counted),
        "drain_ms": drain_ms,
        "p50_ms": report.percentile_ms(counted, 50, 1),
        "p99_ms": report.percentile_ms(counted, 99, 1),
    }


def measure(
    runner_cls, pool, workdir: pathlib.Path, duration: float, repeats: int, load_procs: int, threads: int
) -> dict:
    from server import collector, envoy_launcher
    from server.bootstrap import prepare
    from server.config import DEFAULT_CATALOGUE, Settings
    from server.persistence import db
    from server.persistence.models import Subscription
    from server.readiness import wait_for_http
    from server.services import keys, usage
    from server.transport.app import create_server

    upstream, direct, upstream_admin = free_port(), free_port(), free_port()
    proxy, proxy_admin = free_port(), free_port()
    config = workdir / "upstream-envoy.yaml"
    config.write_text(upstream_envoy_config(upstream_admin, upstream, direct))
    proxy_config = workdir / "proxy-envoy.yaml"
    proxy_config.write_text(proxy_envoy_config(proxy_admin, upstream, proxy))
    settings = dataclasses.replace(
        Settings(),
        database_url=f"sqlite:///{workdir / 'gateway.db'}",
        bind="127.0.0.1",
        grpc_port=0,
        http_port=free_port(),
        gateway_port=free_port(),
        gateway_authz_port=free_port(),
        upstream_url=f"http://127.0.0.1:{upstream}",
        outbox_dir=workdir / "outbox",
        catalogue_path=bench_catalogue(workdir, DEFAULT_CATALOGUE),
    )
    prepare(settings)
    load_tenant, key = enterprise_tenant("bench-gw")
    with db.session():
        admin_key = keys.create_key(now=dt.datetime.now(dt.timezone.utc), admin=True)  # usage reads
        gateway_key = keys.create_gateway_key(now=dt.datetime.now(dt.timezone.utc))  # Envoy's own calls
        tokens_meter()
    server, port = create_server(settings, "127.0.0.1:0")
    collector.tune_for_serving()  # as `billing-server` does before serving
    server.start()
    envdir = workdir / "gateway-envoy"
    envdir.mkdir(exist_ok=True)
    log = open(workdir / "gateway-envoy.log", "ab")  # noqa: SIM115 - Envoy's log until the finally below
    fixed = _envoy(config, workdir, log)
    (workdir / "proxy").mkdir(exist_ok=True)
    plain = _envoy(proxy_config, workdir / "proxy", log)
    stack_envoy = envoy_launcher.start(
        dataclasses.replace(settings, grpc_port=port), [port], envdir, gateway_key, stdout=log, stderr=log
    )
    try:
        wait_for_http(f"http://127.0.0.1:{upstream_admin}/ready", alive=lambda: fixed.poll() is None)
        wait_for_http(f"http://127.0.0.1:{proxy_admin}/ready", alive=lambda: plain.poll() is None)
        wait_for_http(f"http://127.0.0.1:{settings.http_port}/billing/health", alive=lambda: stack_envoy.poll() is None)
        doors = {
            "direct": Door(direct, key, [fixed.pid]),
            "proxy": Door(proxy, key, [fixed.pid, plain.pid]),
            "gateway": Door(settings.gateway_port, key, [fixed.pid, stack_envoy.pid]),
        }
        runs: dict[tuple[str, str], list[dict]] = {(name, conns): [] for name in doors for conns in ("1", "n")}
        print(
            "gateway vs direct (fixed Envoy upstream; enterprise limit raised; in-process server, SQLite):", flush=True
        )
        for _ in range(repeats):
            for name, door in doors.items():
                for conns, procs, loops in (("1", 1, 1), ("n", load_procs, threads)):
                    summary, _ = runner_cls(door, pool, duration, procs, loops).once(
                        "proxy", "rest", [[] for _ in range(procs)]
                    )
                    runs[name, conns].append(summary)
                    print(
                        f"  {name:<8} {procs * loops:>2} conn {summary['ops_per_s']:>7.0f} req/s "
                        f"p50 {summary['p50_ms']} ms p99 {summary['p99_ms']} ms errors {summary['errors']} "
                        f"load {summary['load_cpu_cores']} cores, envoy {summary['envoy_cpu_cores']}, "
                        f"server {summary['server_cpu_cores']}"
                        + (f" first error: {summary['first_error']}" if summary.get("first_error") else ""),
                        flush=True,
                    )
        lag_tenant, lag_key = enterprise_tenant("bench-gw-lag")  # no backlog of the load runs
        lag = metering_lag(settings.gateway_port, settings.http_port, lag_key, admin_key, f"sub_{lag_tenant}")
        with db.session():
            subscription = Subscription.get_by_id(f"sub_{load_tenant}")
            metered = usage.period_requests(subscription.id, subscription.current_period_start)
            tokens = metered_tokens(subscription)
        _, stats = envoy_launcher.admin(envdir, "/stats?filter=access_logs|gateway_authz.upstream_rq_total|gateway.lua")
        envoy_stats = dict(line.split(": ", 1) for line in stats.splitlines() if ": " in line)
    finally:
        for process in (stack_envoy, plain, fixed):
            process.terminate()
            process.wait(timeout=10)
        log.close()
        server.stop(grace=None)
        db.close()
    forwarded = sum(r["n"] for (name, _), rs in runs.items() if name == "gateway" for r in rs)
    result = summarize(runs, lag, load_procs * threads)
    result["exactly_once"] = {
        "forwarded": forwarded,
        "metered": metered,
        "token_events": tokens,
        "envoy_access_log_stats": envoy_stats,
    }
    return result


def tokens_meter() -> None:
    """The meter the fixed upstream's usage reports land in (SUM of input_tokens)."""
    from server.domain.access import SYSTEM
    from server.domain.meters import Aggregation, Meter
    from server.services import meters

    definition = Meter(TOKENS_METER, "Bench input tokens", "llm_tokens", Aggregation.SUM, "input_tokens")
    meters.create_meter(SYSTEM, definition, now=dt.datetime.now(dt.timezone.utc))


def metered_tokens(subscription) -> int:
    """Usage reports counted by the tokens meter this period (its sum / INPUT_TOKENS)."""
    from server.domain.access import SYSTEM
    from server.domain.meters import Window
    from server.services import meters

    rows = meters.meter_usage(
        SYSTEM, subscription.id, TOKENS_METER, start=None, end=None, window=Window.PERIOD, group_by=()
    )
    total = sum(decimal.Decimal(row.value) for row in rows)
    return int(total / INPUT_TOKENS)


def summarize(runs: dict, lag: dict, connections: int) -> dict:
    def median(name, conns, field):
        return round(statistics.median(r[field] for r in runs[name, conns]), 3)

    def cpu_us(name, process):  # CPU per request at n connections: steadier than req/s on a busy machine
        return round(statistics.median(r[f"{process}_cpu_cores"] * 1e6 / r["ops_per_s"] for r in runs[name, "n"]), 1)

    out: dict[str, Any] = {
        "connections": connections,
        "metering_lag": lag,
        "errors": {f"{name}/{conns}": sum(r["errors"] for r in rs) for (name, conns), rs in runs.items()},
    }
    for name in ("direct", "proxy", "gateway"):
        out[name] = {
            "p50_ms_1conn": median(name, "1", "p50_ms"),
            "p99_ms_1conn": median(name, "1", "p99_ms"),
            "req_per_s": median(name, "n", "ops_per_s"),
            "load_cpu_cores": median(name, "n", "load_cpu_cores"),
            "envoy_cpu_us_per_request": cpu_us(name, "envoy"),
            "server_cpu_us_per_request": cpu_us(name, "server"),
        }
    out["added_p50_ms"] = round(out["gateway"]["p50_ms_1conn"] - out["direct"]["p50_ms_1conn"], 3)
    out["added_p99_ms"] = round(out["gateway"]["p99_ms_1conn"] - out["direct"]["p99_ms_1conn"], 3)
    out["throughput_ratio"] = round(out["gateway"]["req_per_s"] / out["direct"]["req_per_s"], 3)
    out["throughput_ratio_vs_proxy"] = round(out["gateway"]["req_per_s"] / out["proxy"]["req_per_s"], 3)
    out["goals"] = {
        f"added p50 <= {GOAL_P50_MS} ms": out["added_p50_ms"] <= GOAL_P50_MS,
        f"added p99 <= {GOAL_P99_MS} ms": out["added_p99_ms"] <= GOAL_P99_MS,
        # Judged against the plain Envoy proxy: the same topology (a proxy process in front of the
        # same upstream process). "direct" is the upstream's own listener, one process fewer in the
        # path, and its ratio is printed beside it.
        f"throughput >= {GOAL_THROUGHPUT} of a plain Envoy proxy": out["throughput_ratio_vs_proxy"] >= GOAL_THROUGHPUT,
    }
    return out


def text(result: dict) -> str:
    d, pr, g = result["direct"], result["proxy"], result["gateway"]
    throughput = f"req/s ({result['connections']} conn)"
    lines = [
        f"  {'door':<8} {'p50 ms (1 conn)':>16} {'p99 ms (1 conn)':>16} {throughput:>15} {'CPU µs/req: Envoys':>19} "
        f"{'server':>7}",
        *(
            f"  {name:<8} {door['p50_ms_1conn']:>16} {door['p99_ms_1conn']:>16} {door['req_per_s']:>15.0f} "
            f"{door['envoy_cpu_us_per_request']:>19} {door['server_cpu_us_per_request']:>7}"
            for name, door in (("direct", d), ("proxy", pr), ("gateway", g))
        ),
        f"  added p50 {result['added_p50_ms']} ms, added p99 {result['added_p99_ms']} ms, "
        f"throughput ratio {result['throughput_ratio_vs_proxy']} of the plain Envoy proxy "
        f"({result['throughput_ratio']} of the upstream's own listener); "
        f"metering lag p50 {result['metering_lag']['p50_ms']} ms, "
        f"p99 {result['metering_lag']['p99_ms']} ms ({result['metering_lag']['counted']}/"
        f"{result['metering_lag']['requests']} counted; backlog of the load runs drained in "
        f"{result['metering_lag'].get('drain_ms')} ms)",
    ]
    if "exactly_once" in result:
        once = result["exactly_once"]
        lines.append(
            f"  metered {once['metered']} of {once['forwarded']} forwarded, {once['token_events']} usage reports in "
            f"the tokens meter; Envoy access-log stats "
            f"{once['envoy_access_log_stats']}"
        )
    lines += [f"  goal {goal}: {'PASS' if ok else 'FAIL'}" for goal, ok in result["goals"].items()]
    return "\n".join(lines)


def main() -> int:
    from bench import load
    from bench.__main__ import Runner

    duration = float(os.environ.get("BENCH_SECONDS", "5"))
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    load_procs = int(os.environ.get("BENCH_LOAD_PROCS", "4"))
    threads = int(os.environ.get("BENCH_THREADS", "4"))
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-bench-gw-"))
    pool = multiprocessing.get_context("spawn").Pool(load_procs)
    try:
        pool.map(load.warm, range(load_procs), chunksize=1)
        result = measure(Runner, pool, workdir, duration, repeats, load_procs, threads)
    finally:
        pool.close()
        pool.join()
        shutil.rmtree(workdir, ignore_errors=True)
    print(text(result))
    out = pathlib.Path(__file__).resolve().parents[1] / "bench-results" / "gateway.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
