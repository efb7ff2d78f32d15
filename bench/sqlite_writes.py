"""Batched ingestion on SQLite with 1 and with 2 server processes, in one run.

Two stacks side by side, each on a fresh SQLite file of its own: one server process behind Envoy,
and two behind one Envoy. Each repeat measures the raw batched-insert ceiling (bench/ceiling.py,
on the first stack's file), then 1,000-event TrackUsage calls through Envoy (REST, the load's
16 loops each on a subscription of its own) against each stack in turn, so every ratio to the
ceiling comes from adjacent runs; the figures are medians. The goal also asks that 2 processes
have a write p99 no worse than 1 (their writers queue on the cross-process writer lock rather
than in SQLite's sleeping busy handler)."""

from __future__ import annotations

import secrets
import statistics

from bench import report
from bench.ceiling import raw_insert_ceiling
from bench.load import GrpcClient
from bench.stack import Stack

PROCS = (1, 2)
GOAL_EVENTS_PER_S = 100_000
GOAL_VS_RAW = 0.6


def _stack(workdir, procs: int) -> Stack:
    """A started stack: `procs` servers on a new SQLite file, behind one Envoy."""
    folder = workdir / f"sqlite-writes-{procs}"
    folder.mkdir()
    stack = Stack(folder, f"sqlite:///{folder / 'billing.db'}", None, "bk_bench_" + secrets.token_urlsafe(24))
    while len(stack.servers) < procs:
        stack.add_server()
    stack.restart_envoy()
    return stack


def _subscriptions(stack: Stack, n: int) -> list[str]:
    from billing.v1 import subscription_pb2

    client = GrpcClient(stack.grpc_addresses[0], stack.admin_key)
    try:
        return [
            client.subs.CreateSubscription(
                subscription_pb2.CreateSubscriptionRequest(
                    tenant_id=f"writes-{i}", plan_id="standard", billing_email=f"writes-{i}@bench.example"
                ),
                metadata=client.md,
                timeout=30,
            ).id
            for i in range(n)
        ]
    finally:
        client.close()


def measure(runner_cls, pool, workdir, duration: float, repeats: int, load_procs: int, threads: int) -> dict:
    stacks = {n: _stack(workdir, n) for n in PROCS}
    runs: dict = {n: [] for n in PROCS}
    ceilings = []
    print(f"SQLite batched ingestion through Envoy, {' vs '.join(map(str, PROCS))} server processes:", flush=True)
    try:
        shares = {
            n: [s[w::load_procs] for w in range(load_procs)]
            for n, s in ((n, _subscriptions(stack, load_procs * threads)) for n, stack in stacks.items())
        }
        for _ in range(repeats):
            ceiling = raw_insert_ceiling(stacks[PROCS[0]].database_url, max(1.0, duration * 0.4), 1)["rows_per_s"]
            ceilings.append(ceiling)
            print(f"  raw ceiling {ceiling:>9.0f} rows/s", flush=True)
            for n, stack in stacks.items():
                summary, _ = runner_cls(stack, pool, duration, load_procs, threads).once(
                    "usage_1000", "rest", shares[n]
                )
                summary["ratio"] = summary["units_per_s"] / ceiling
                runs[n].append(summary)
                print(
                    f"  {n} process(es) {summary['units_per_s']:>9.0f} events/s ({summary['ratio']:.2f} of raw) "
                    f"p50 {summary['p50_ms']} ms p99 {summary['p99_ms']} ms errors {summary['errors']} "
                    f"servers {summary['server_cpu_cores']} cores, envoy {summary['envoy_cpu_cores']}",
                    flush=True,
                )
    finally:
        for stack in stacks.values():
            stack.close()
    return {
        "raw_rows_per_s": statistics.median(ceilings),
        "raw_runs": ceilings,
        **{
            f"procs_{n}": {
                k: statistics.median(r[k] for r in rs)
                for k in ("units_per_s", "ratio", "p50_ms", "p99_ms", "server_cpu_cores", "envoy_cpu_cores")
            }
            | {"errors": sum(r["errors"] for r in rs)}
            for n, rs in runs.items()
        },
    }


def text(result: dict) -> str:
    lines = [f"  raw ceiling {result['raw_rows_per_s']:.0f} rows/s (median of {len(result['raw_runs'])})"]
    for n in PROCS:
        r = result[f"procs_{n}"]
        lines.append(
            f"  {n} process(es): {r['units_per_s']:.0f} events/s, {r['ratio']:.2f} of raw, p99 {r['p99_ms']} ms, "
            f"errors {r['errors']}"
        )
        lines.append(
            f"  [{report.mark(r['units_per_s'] >= GOAL_EVENTS_PER_S)}] {n} process(es) >= "
            f"{GOAL_EVENTS_PER_S:,} events/s and [{report.mark(r['ratio'] >= GOAL_VS_RAW)}] >= "
            f"{GOAL_VS_RAW} of raw"
        )
    one, two = result[f"procs_{PROCS[0]}"], result[f"procs_{PROCS[-1]}"]
    lines.append(
        f"  [{report.mark(two['p99_ms'] <= one['p99_ms'])}] write p99 with {PROCS[-1]} processes no worse "
        f"than with {PROCS[0]}: {two['p99_ms']} vs {one['p99_ms']} ms"
    )
    return "\n".join(lines)
