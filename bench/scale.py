"""`python -m bench.scale` (`make bench-scale`): the scale-out curve.

The real stack on PostgreSQL (a scratch database created and dropped here, or DATABASE_URL if it
names a PostgreSQL database the bench may write to) and REDIS_URL when set: `max(BENCH_SCALE)`
`billing-server` processes are started once; each setup restarts Envoy with the first n of them
as upstreams (and spreads the direct gRPC loops over the same n), so 1 -> 2 -> 4 processes differ
only in how many serve. Each round runs every setup in turn and, in each, the main seed
operations (OPS) with the same 4 x 4 closed loops as `make bench`; `BENCH_REPEATS` rounds. Every
figure is the median over the rounds; the speed-up is the median of each round's ratio to the
1-process setup (the smallest in BENCH_SCALE) of that round. CPU over each load window: all server
processes (idle ones included), Envoy, the load processes, and PostgreSQL's backends for the
database plus its WAL writer, checkpointer and background writer, and the WAL it writes
(bench.postgres.PostgresUse). Per-unit costs divide by events/s for usage tracking and by calls/s
otherwise.

Environment: BENCH_SCALE (default "1,2,4"), BENCH_SECONDS (per run, default 3), BENCH_REPEATS
(rounds, default 3), BENCH_LOAD_PROCS (4), BENCH_THREADS (4), DATABASE_URL, REDIS_URL, BENCH_KEEP=1
(keep the temp directory and its logs). Writes bench-results/scale.json."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import secrets
import statistics
import sys
import tempfile
import time

from bench import load, report
from bench.__main__ import Runner, finish, run_info
from bench.postgres import PostgresUse, scratch_database
from bench.stack import Stack

# (op, door) in run order: subscription creation first, as usage tracking runs on its subscriptions;
# 100 events per call is the most Stripe's v2 meter event stream takes in one request.
OPS = [
    ("plan", "grpc"),
    ("plan", "rest"),
    ("sub_create", "rest"),
    ("usage_1", "grpc"),
    ("usage_1", "rest"),
    ("usage_100", "rest"),
    ("usage_1000", "grpc"),
    ("usage_1000", "rest"),
]
CORES = ("server_cpu_cores", "postgres_cpu_cores", "envoy_cpu_cores", "load_cpu_cores")


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _per_unit(run: dict, field: str, scale: float = 1.0) -> float | None:
    """A per-second figure per unit (event for usage tracking, call otherwise), times `scale`."""
    value = run.get(field)
    return None if value is None or not run["units_per_s"] else value * scale / run["units_per_s"]


def summarize(runs: dict[tuple[str, str, int], list[dict]]) -> list[dict]:
    """One row per (op, door, processes): medians over the rounds of throughput, latency, CPU
    (cores, and µs per unit), and the speed-up against the smallest setup, paired by round."""
    rows = []
    for (op, door, procs), op_runs in runs.items():
        base = runs[op, door, min(n for o, d, n in runs if (o, d) == (op, door))]
        row = {
            "op": op,
            "door": door,
            "procs": procs,
            "rounds": len(op_runs),
            "errors": sum(r["errors"] for r in op_runs),
            "speedup": _median(
                r["ops_per_s"] / b["ops_per_s"] for r, b in zip(op_runs, base, strict=True) if b["ops_per_s"]
            ),
        }
        for field in ("ops_per_s", "units_per_s", "p50_ms", "p99_ms", *CORES):
            row[field] = _median(r.get(field) for r in op_runs)
        for field in ("server_cpu_cores", "postgres_cpu_cores", "envoy_cpu_cores"):
            row[field.replace("_cpu_cores", "_us_per_unit")] = _median(_per_unit(r, field, 1e6) for r in op_runs)
        row["wal_bytes_per_unit"] = _median(_per_unit(r, "wal_bytes_per_s") for r in op_runs)
        row["busy_cores"] = _median(sum(r.get(f) or 0 for f in CORES) for r in op_runs)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    header = [
        "op",
        "door",
        "procs",
        "ops/s",
        "events/s",
        "speed-up",
        "p50 ms",
        "p99 ms",
        "server cores",
        "server µs/unit",
        "PG cores",
        "PG µs/unit",
        "WAL B/unit",
        "Envoy cores",
        "Envoy µs/unit",
        "load cores",
        "busy cores",
        "errors",
    ]

    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        [
            report.LABELS[r["op"]],
            r["door"],
            str(r["procs"]),
            cell(r["ops_per_s"], ".0f"),
            cell(r["units_per_s"], ".0f") if r["op"].startswith("usage") else "",
            cell(r["speedup"], ".2f"),
            cell(r["p50_ms"], ".1f"),
            cell(r["p99_ms"], ".1f"),
            cell(r["server_cpu_cores"], ".2f"),
            cell(r["server_us_per_unit"], ".0f"),
            cell(r["postgres_cpu_cores"], ".2f"),
            cell(r["postgres_us_per_unit"], ".0f"),
            cell(r["wal_bytes_per_unit"], ".0f"),
            cell(r["envoy_cpu_cores"], ".2f"),
            cell(r["envoy_us_per_unit"] if r["door"] == "rest" else None, ".0f"),
            cell(r["load_cpu_cores"], ".2f"),
            cell(r["busy_cores"], ".2f"),
            str(r["errors"]),
        ]
        for r in sorted(rows, key=lambda r: (OPS.index((r["op"], r["door"])), r["procs"]))
    ]
    return report._render(header, lines)


def measure(stack: Stack, runner: Runner, scale: list[int], repeats: int, load_procs: int) -> dict:
    """`repeats` rounds over every setup and operation; returns the runs by (op, door, processes)."""
    runs: dict[tuple[str, str, int], list[dict]] = {(op, door, n): [] for n in scale for op, door in OPS}
    subscriptions: list[str] = []
    loops = load_procs * runner.threads
    for round_no in range(1, repeats + 1):
        for n in scale:
            stack.restart_envoy(n)
            print(f"round {round_no}/{repeats}, {n} server process(es):", flush=True)
            for op, door in OPS:
                if op.startswith("usage") and len(subscriptions) < loops:
                    raise RuntimeError(
                        f"usage tracking needs {loops} subscriptions, subscription creation made {len(subscriptions)}"
                    )
                items = subscriptions[:loops] if op.startswith("usage") else []
                summary, made = runner.once(op, door, [items[w::load_procs] for w in range(load_procs)])
                subscriptions += made
                runs[op, door, n].append(summary)
                print(
                    f"  {report.LABELS[op]:<22} {door:<4} {summary['ops_per_s']:>7.0f} ops/s "
                    f"p50 {summary['p50_ms']} p99 {summary['p99_ms']} ms errors {summary['errors']}; cores: "
                    + ", ".join(f"{f.split('_')[0]} {summary.get(f)}" for f in CORES)
                    + (f"  first error: {summary['first_error']}" if summary.get("first_error") else ""),
                    flush=True,
                )
    return runs


def postgres_url() -> contextlib.AbstractContextManager[str]:
    """DATABASE_URL when it names PostgreSQL, else a scratch database for the run."""
    url = os.environ.get("DATABASE_URL", "")
    return contextlib.nullcontext(url) if url.startswith("postgres") else scratch_database()


def main() -> int:
    scale = sorted(int(n) for n in os.environ.get("BENCH_SCALE", "1,2,4").split(","))
    duration = float(os.environ.get("BENCH_SECONDS", "3"))
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    load_procs = int(os.environ.get("BENCH_LOAD_PROCS", "4"))
    threads = int(os.environ.get("BENCH_THREADS", "4"))
    redis_url = os.environ.get("REDIS_URL") or None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-bench-scale-"))
    info = run_info(duration, repeats, load_procs, threads, database="postgresql", redis=bool(redis_url), scale=scale)
    print(
        f"bench.scale: {info['nproc']} x {info['cpu_model']}, PostgreSQL, redis={info['redis']}, "
        f"{load_procs}x{threads} connections, {duration:g} s per run, {repeats} rounds of {scale} server "
        f"processes, workdir {workdir}",
        flush=True,
    )
    started = time.time()
    with postgres_url() as database_url, contextlib.closing(PostgresUse(database_url)) as postgres:
        stack = Stack(workdir, database_url, redis_url, "bk_bench_" + secrets.token_urlsafe(24), postgres)
        pool = multiprocessing.get_context("spawn").Pool(load_procs)
        try:
            while len(stack.servers) < max(scale):
                stack.add_server()
            pool.map(load.warm, range(load_procs), chunksize=1)
            runs = measure(stack, Runner(stack, pool, duration, load_procs, threads), scale, repeats, load_procs)
        finally:
            pool.close()
            pool.join()
            stack.close()
    rows = summarize(runs)
    info["loadavg_after"] = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    info["total_seconds"] = round(time.time() - started, 1)
    print(
        f"\nscale-out, medians of {repeats} rounds (speed-up: paired with the {scale[0]}-process setup of the same "
        f"round; unit: an event for usage tracking, a call otherwise; busy cores: server + PG + Envoy + load, "
        f"of {info['nproc']}; load average {' '.join(info['loadavg_before'])} before, "
        f"{' '.join(info['loadavg_after'])} after):"
    )
    print(table(rows))
    finish(
        "scale.json",
        {
            "machine": info,
            "rows": rows,
            "runs": [{"op": op, "door": door, "procs": n, "runs": r} for (op, door, n), r in runs.items()],
        },
        workdir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
