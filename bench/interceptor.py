"""The tier rate-limit interceptor's cost per call: the same tenant-key GetPlan through
one gRPC server with the interceptor off, with the in-process limiter, and with Redis.

The servers are built by `create_server(settings, "127.0.0.1:0", rate_limits=...)` inside the
bench's own process (no server change, no env switch), after the main stack has stopped; the
load comes from the bench's load processes, as for every other figure. The tenant has an ACTIVE
ENTERPRISE subscription; a bench-only catalogue (BILLING_CATALOGUE's format, written to the temp
dir) raises the enterprise limit to 100,000,000/min so no call is refused (errors must be 0), so
every call pays the whole check: tier (cached per tenant for a bounded time), limiter hit,
x-ratelimit-* initial metadata. Runs alternate off / in-process / redis, `repeats` times; each repeat gives a
ratio and a per-call cost from adjacent runs, and the figures are the medians."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pathlib
import secrets
import statistics

from server.domain.plans import MAX_RATE_LIMIT, Tier

# The largest limit a plan may have: far above what the bench's loops reach in a rolling minute.
RAISED_LIMIT = MAX_RATE_LIMIT


def run_line(label: str, width: int, summary: dict) -> str:
    """One in-process run as the bench prints it while measuring."""
    return (
        f"  {label:<{width}} {summary['ops_per_s']:>7.0f} calls/s p50 {summary['p50_ms']} ms "
        f"p99 {summary['p99_ms']} ms errors {summary['errors']} server CPU {summary['server_cpu_cores']} cores"
        + (f" first error: {summary['first_error']}" if summary.get("first_error") else "")
    )


def bench_catalogue(workdir: pathlib.Path, source: pathlib.Path, limit: int = RAISED_LIMIT) -> pathlib.Path:
    """A copy of the plan catalogue with the ENTERPRISE tier's limit raised to `limit`."""
    data = json.loads(source.read_text())
    for plan in data["plans"]:
        if plan["tier"] == Tier.ENTERPRISE:
            plan["rate_limit_per_minute"] = limit
    out = workdir / "catalogue-bench.json"
    out.write_text(json.dumps(data, indent=1))
    return out


def self_cpu_seconds() -> float:
    """This process's CPU (all threads), where the servers under test run."""
    times = os.times()
    return times.user + times.system


class InProcessServers:
    """Quacks like bench.stack.Stack for Runner.once: one gRPC address, the tenant's key, CPU."""

    def __init__(self, address: str, key: str):
        self.grpc_addresses, self.admin_key, self.rest_port, self.servers = [address], key, None, [None]

    def cpu_snapshot(self) -> dict:
        return {"servers": self_cpu_seconds(), "envoy": 0.0}


def summarize(runs: dict[str, list[dict]], base_name: str = "off") -> dict:
    """runs[config] = the repeated runs (ops_per_s, server_cpu_cores, ...), in alternating order.
    Per repeat i and config: ratio = ops/s with / ops/s of `base_name`; cost = 1e6/ops_with -
    1e6/ops_base (µs of the server process's wall time per call) and the same from server CPU per call."""
    base = runs[base_name]
    out = {
        base_name: {
            "ops_per_s": statistics.median(r["ops_per_s"] for r in base),
            "p50_ms": statistics.median(r["p50_ms"] for r in base),
            "cpu_us_per_call": statistics.median(_cpu_us(r) for r in base),
        }
    }
    for config, with_runs in runs.items():
        if config == base_name:
            continue
        pairs = list(zip(with_runs, base, strict=True))
        out[config] = {
            "ops_per_s": statistics.median(r["ops_per_s"] for r in with_runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in with_runs),
            "cpu_us_per_call": statistics.median(_cpu_us(r) for r in with_runs),
            "ratio": round(statistics.median(w["ops_per_s"] / o["ops_per_s"] for w, o in pairs), 3),
            "cost_us": round(statistics.median(1e6 / w["ops_per_s"] - 1e6 / o["ops_per_s"] for w, o in pairs), 1),
            "cpu_cost_us": round(statistics.median(_cpu_us(w) - _cpu_us(o) for w, o in pairs), 1),
            "ratios": [round(w["ops_per_s"] / o["ops_per_s"], 3) for w, o in pairs],
        }
    return out


def _cpu_us(run: dict) -> float:
    return round(1e6 * run["server_cpu_cores"] / run["ops_per_s"], 1) if run["ops_per_s"] else float("nan")


def enterprise_tenant(prefix: str) -> tuple[str, str]:
    """A new tenant with an ACTIVE enterprise subscription (id `sub_<tenant>`) and its key, in the
    database `prepare` bound; returns (tenant, key)."""
    from server.domain.subscriptions import SubscriptionStatus
    from server.persistence import db
    from server.persistence.models import Subscription
    from server.services import keys

    tenant, now = f"{prefix}-{secrets.token_hex(4)}", dt.datetime.now(dt.timezone.utc)
    with db.session():
        key = keys.create_key(now=now, tenant_id=tenant)
        Subscription.create(
            id=f"sub_{tenant}",
            tenant_id=tenant,
            plan="enterprise",
            billing_email="rl@bench.example",
            status=SubscriptionStatus.ACTIVE,
            anchor_at=now,
            current_period_start=now,
            current_period_end=now + dt.timedelta(days=30),
            created_at=now,
            updated_at=now,
        )
    return tenant, key


def redis_reachable(url: str | None) -> bool:
    if not url:
        return False
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001 - unreachable for any reason: measure without it
        return False


def prepared(workdir: pathlib.Path, database_url: str, prefix: str):
    """Settings for an in-process server on `database_url` (migrated, bench catalogue seeded) and a
    new enterprise tenant there; returns (settings, tenant, key)."""
    from server.bootstrap import prepare
    from server.config import DEFAULT_CATALOGUE, Settings

    settings = dataclasses.replace(
        Settings(),
        database_url=database_url,
        redis_url=None,
        bind="127.0.0.1",
        catalogue_path=bench_catalogue(workdir, DEFAULT_CATALOGUE),
    )
    prepare(settings)
    return (settings, *enterprise_tenant(prefix))


def measure(
    runner_cls,
    pool,
    workdir: pathlib.Path,
    database_url: str,
    redis_url: str | None,
    duration: float,
    repeats: int,
    load_procs: int,
    threads: int,
) -> dict:
    import grpc

    from billing.v1 import plan_pb2, plan_pb2_grpc
    from server.persistence import db
    from server.transport.app import create_server

    settings, tenant, key = prepared(workdir, database_url, "bench-rl")
    configs: dict[str, tuple[str | None, bool]] = {"off": (None, False), "in-process": (None, True)}
    if redis_reachable(redis_url):
        configs["redis"] = (redis_url, True)
    runs: dict[str, list[dict]]
    servers, runs, header = {}, {name: [] for name in configs}, {}
    try:
        for name, (redis, on) in configs.items():
            server, port = create_server(dataclasses.replace(settings, redis_url=redis), "127.0.0.1:0", rate_limits=on)
            server.start()
            servers[name] = (server, f"127.0.0.1:{port}")
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            _, call = plan_pb2_grpc.PlanServiceStub(channel).GetPlan.with_call(
                plan_pb2.GetPlanRequest(plan_id="standard"), metadata=(("authorization", f"Bearer {key}"),), timeout=10
            )
            header[name] = dict(call.initial_metadata()).get("x-ratelimit-limit")
            channel.close()
        if header["off"] is not None or header["in-process"] != str(RAISED_LIMIT):
            raise RuntimeError(f"interceptor bench misconfigured: x-ratelimit-limit {header}")
        print(
            f"rate-limit interceptor cost (tenant-key GetPlan, enterprise limit raised to {RAISED_LIMIT:,}/min; "
            f"in-process server; configs {', '.join(configs)}):",
            flush=True,
        )
        for _ in range(repeats):
            for name in configs:
                runner = runner_cls(InProcessServers(servers[name][1], key), pool, duration, load_procs, threads)
                summary, _ = runner.once("plan", "grpc", [[] for _ in range(load_procs)])
                runs[name].append(summary)
                print(run_line(name, 10, summary), flush=True)
    finally:
        for server, _ in servers.values():
            server.stop(0)
        if "redis" in configs and redis_url:
            import redis as redis_py

            client = redis_py.Redis.from_url(redis_url)
            client.delete(f"billing:rl:{{{tenant}}}", f"billing:rl:{{{tenant}}}:seq")
            client.close()
        db.close()
    result = summarize(runs)
    result.update(
        database=database_url.split("@")[-1],
        raised_limit=RAISED_LIMIT,
        x_ratelimit_limit=header,
        errors={name: sum(r["errors"] for r in rs) for name, rs in runs.items()},
        runs={
            name: [{k: r[k] for k in ("ops_per_s", "p50_ms", "p99_ms", "errors", "server_cpu_cores")} for r in rs]
            for name, rs in runs.items()
        },
    )
    return result


def text(result: dict, first_column: str = "limiter") -> str:
    rows = [(name, fig) for name, fig in result.items() if isinstance(fig, dict) and "ops_per_s" in fig]
    width = max(11, *(len(name) + 1 for name, _ in rows))
    lines = [
        f"  {first_column:<{width}} {'calls/s':>8} {'p50 ms':>7} {'server CPU µs/call':>19} {'ratio':>6} "
        f"{'cost µs/call':>13} {'CPU cost µs':>12} errors"
    ]
    for name, fig in rows:
        lines.append(
            f"  {name:<{width}} {fig['ops_per_s']:>8.0f} {fig['p50_ms']:>7.2f} {fig['cpu_us_per_call']:>19.0f} "
            f"{fig.get('ratio', 1.0):>6.2f} {fig.get('cost_us', 0.0):>13.0f} {fig.get('cpu_cost_us', 0.0):>12.0f}"
            f" {result['errors'][name]}"
        )
    return "\n".join(lines)
