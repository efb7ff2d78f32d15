"""`python -m bench`: start the stack, measure ceilings and operations, print and save results.

Environment: BENCH_SECONDS (per run, default 5), BENCH_REPEATS (runs of the ceilings and plan
retrieval on the largest server setup, median taken; default 3), BENCH_LOAD_PROCS (load processes,
default 4), BENCH_THREADS (loops per load process, default 4), BENCH_SERVER_PROCS (default "1,2"),
DATABASE_URL, REDIS_URL, BENCH_POSTGRES=1 (create and drop a scratch PostgreSQL database for the
run, see bench/postgres.py), BENCH_FLOOR=0 (skip the bare grpcio floor, bench/floor.py),
BENCH_ONLY=floor (only the floor: no stack, no other figures; for iterating on the per-call cost)
or BENCH_ONLY=sqlite_writes (only batched ingestion on SQLite with 1 and 2 server processes)
or BENCH_ONLY=meters (only the meters' ingestion and read cost, bench/meters.py; BENCH_METERS=0
skips it in a full run, BENCH_METER_EVENTS sets the events read over, default 1,000,000)
or BENCH_ONLY=gateway (only the gateway against plain Envoy proxies, bench/gateway.py),
BENCH_SQLITE_WRITES=0 (on SQLite, skip batched ingestion with 1 and 2 server processes,
bench/sqlite_writes.py), BENCH_INTERCEPTOR=0 (skip the rate-limit interceptor's cost,
bench/interceptor.py), BENCH_GATEWAY=0 (skip the gateway's cost against a direct proxy,
bench/gateway.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import pathlib
import platform
import secrets
import shutil
import sys
import tempfile
import time

import grpc

from bench import floor, gateway, interceptor, load, meters, report, sqlite_writes
from bench.ceiling import raw_insert_ceiling
from bench.postgres import PostgresUse, scratch_database
from bench.stack import Stack

ROOT = pathlib.Path(__file__).resolve().parents[1]
FEATURES = ["sub_create", "usage_1", "usage_1000", "invoice", "pdf"]
BATCH = {"usage_100": 100, "usage_1000": 1000}  # events per call


def machine() -> dict:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": pathlib.Path("/proc/loadavg").read_text().split()[:3],
    }


def run_info(duration: float, repeats: int, load_procs: int, threads: int, **about) -> dict:
    """The machine and a run's knobs, as each bench's results record them."""
    return {
        **machine(),
        **about,
        "seconds": duration,
        "repeats": repeats,
        "load_procs": load_procs,
        "threads_per_load_proc": threads,
    }


def probe(op: str, door: str, stack: Stack) -> str | None:
    """'not implemented' when the method answers UNIMPLEMENTED (gRPC) / 501 (REST), else None.
    Probes use ids that do not exist or an empty request, so they change nothing."""
    if door == "grpc":
        from billing.v1 import invoice_pb2, subscription_pb2, usage_pb2

        client = load.GrpcClient(stack.grpc_addresses[0], stack.admin_key)
        calls = {
            "sub_create": lambda: client.subs.CreateSubscription(
                subscription_pb2.CreateSubscriptionRequest(), metadata=client.md, timeout=10
            ),
            "usage_1": lambda: client.usage.TrackUsage(
                usage_pb2.TrackUsageRequest(subscription_id="sub_bench_probe"), metadata=client.md, timeout=10
            ),
            "invoice": lambda: client.invoices.GenerateInvoice(
                invoice_pb2.GenerateInvoiceRequest(subscription_id="sub_bench_probe"), metadata=client.md, timeout=10
            ),
            "pdf": lambda: client.invoices.GetInvoicePdf(
                invoice_pb2.GetInvoicePdfRequest(id="inv_bench_probe"), metadata=client.md, timeout=10
            ),
        }
        calls["usage_1000"] = calls["usage_1"]
        try:
            calls[op]()
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "not implemented"
        finally:
            client.close()
        return None
    method, path, body = {
        "sub_create": ("POST", "/billing/subscriptions", b"{}"),
        "usage_1": ("POST", "/billing/metrics/track", b'{"subscription_id": "sub_bench_probe"}'),
        "usage_1000": ("POST", "/billing/metrics/track", b'{"subscription_id": "sub_bench_probe"}'),
        "invoice": ("POST", "/billing/invoices/generate", b'{"subscription_id": "sub_bench_probe"}'),
        "pdf": ("GET", "/billing/invoices/inv_bench_probe/pdf", None),
    }[op]
    conn = http.client.HTTPConnection("127.0.0.1", stack.rest_port, timeout=10)
    conn.request(
        method,
        path,
        body=body,
        headers={"authorization": f"Bearer {stack.admin_key}", "content-type": "application/json"},
    )
    status = conn.getresponse().status
    conn.close()
    return "not implemented" if status == 501 else None


class Runner:
    def __init__(self, stack: Stack, pool, duration: float, load_procs: int, threads: int):
        self.stack, self.pool, self.duration = stack, pool, duration
        self.load_procs, self.threads = load_procs, threads

    def once(self, op: str, door: str, shares: list[list], rate: float | None = None) -> tuple[dict, list]:
        """One run of closed loops or, with `rate` (calls/s offered by all load processes together),
        of an open loop."""
        start_at = time.time() + 0.7
        run = secrets.token_hex(3)
        specs = [
            {
                "op": op,
                "door": door,
                "key": self.stack.admin_key,
                "threads": self.threads,
                "worker": w,
                "run": run,
                "start_at": start_at,
                "duration": self.duration,
                "items": shares[w],
                "grpc_addresses": self.stack.grpc_addresses,
                "rest_port": self.stack.rest_port,
                "rate": rate and rate / self.load_procs,
                "procs": self.load_procs,
            }
            for w in range(self.load_procs)
        ]
        pending = self.pool.map_async(load.run_worker, specs, chunksize=1)
        time.sleep(max(0.0, start_at - time.time()))  # align the CPU window with the load window
        cpu0, t0 = self.stack.cpu_snapshot(), time.time()
        pending.wait(self.duration)
        cpu1, t1 = self.stack.cpu_snapshot(), time.time()
        results = pending.get(timeout=120)
        latencies = [x for r in results for x in r["latencies"]]
        last = max((r["last_done"] for r in results if r["last_done"]), default=None)
        elapsed = (last - start_at) if last else self.duration
        summary = report.summarize(latencies, elapsed, sum(r["errors"] for r in results), BATCH.get(op, 1))
        load_cpu = sum(r["cpu_s"] for r in results)
        load_wall = max(r["wall_s"] for r in results)
        window = max(t1 - t0, 1e-6)
        summary.update(
            load_cpu_s=round(load_cpu, 2),
            load_wall_s=round(load_wall, 2),
            load_cpu_cores=round(load_cpu / load_wall, 2),
            load_proc_max_util=round(max(r["cpu_s"] / r["wall_s"] for r in results), 2),
            server_cpu_cores=round((cpu1["servers"] - cpu0["servers"]) / window, 2),
            envoy_cpu_cores=round((cpu1["envoy"] - cpu0["envoy"]) / window, 2),
            first_error=next((r["first_error"] for r in results if r["first_error"]), None),
            exhausted=any(r["exhausted"] for r in results),
        )
        if cpu0.get("postgres") is not None:
            summary["postgres_cpu_cores"] = round((cpu1["postgres"] - cpu0["postgres"]) / window, 2)
            summary["wal_bytes_per_s"] = round((cpu1["wal_bytes"] - cpu0["wal_bytes"]) / window)
        return summary, [c for r in results for c in r["created"]]

    def scenario(self, op: str, door: str, repeats: int = 1, shares=None) -> tuple[dict, list]:
        shares = shares or [[] for _ in range(self.load_procs)]
        runs, created = [], []
        for _ in range(repeats):
            summary, made = self.once(op, door, shares)
            runs.append(summary)
            created += made
        row = report.median_of_runs(runs) if repeats > 1 else dict(runs[0], repeats=1)
        if repeats > 1:
            row["runs"] = [{k: r[k] for k in ("ops_per_s", "p50_ms", "p99_ms", "errors")} for r in runs]
        row.update(
            op=op, door=door, procs=len(self.stack.servers), status="ok", connections=self.load_procs * self.threads
        )
        if row["n"] == 0:
            row["status"] = f"failed: {row.get('first_error')}"
        line = (
            f"  {report.LABELS[op]:<24} {door:<4} procs={row['procs']} {row['ops_per_s']:>8.0f} ops/s "
            f"p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms errors {row['errors']} "
            f"load {row['load_cpu_cores']} cores, servers {row['server_cpu_cores']}, envoy {row['envoy_cpu_cores']}"
        )
        print(line + (f"  first error: {row['first_error']}" if row.get("first_error") else ""), flush=True)
        return row, created


def split(items: list, parts: int) -> list[list]:
    return [items[w::parts] for w in range(parts)]


OPEN_LOOP_OPS = ["plan", "sub_create", "usage_1", "invoice", "pdf"]


def open_loops(runner: Runner, rows: list[dict], usage_subs: list, invoices: list) -> list[dict]:
    """Each seed operation through Envoy at half its closed-loop saturation on this setup, arrivals
    on a fixed schedule that no reply delays; latency runs from each call's scheduled arrival. The
    subscriptions created here are the ones invoiced here."""
    made: dict[str, list] = {}
    procs, out = len(runner.stack.servers), []
    for op in OPEN_LOOP_OPS:
        closed = report.find(rows, op, "rest", procs)
        items = {"usage_1": usage_subs, "invoice": made.get("sub_create", []), "pdf": invoices}.get(op)
        if closed is None or items == []:
            out.append(
                {
                    "op": op,
                    "status": "skipped: " + ("no closed-loop saturation" if closed is None else "nothing to act on"),
                }
            )
            continue
        rate = closed["ops_per_s"] * report.OPEN_LOOP_SHARE
        shares = (
            split(items or [], runner.load_procs)
            if len(items or []) >= runner.load_procs
            else [items or []] * runner.load_procs
        )
        summary, made[op] = runner.once(op, "rest", shares, rate=rate)
        row = report.open_loop_row(op, rate, summary)
        print(
            f"  {report.LABELS[op]:<24} offered {rate:.0f}/s done {row['ops_per_s']:.0f}/s p50 {row['p50_ms']} ms "
            f"p99 {row['p99_ms']} ms p99.9 {row['p999_ms']} ms errors {row['errors']}"
            + (f"  first error: {row['first_error']}" if row.get("first_error") else ""),
            flush=True,
        )
        out.append(row)
    return out


def main() -> int:
    with contextlib.ExitStack() as cleanup:
        scratch_pg = None
        if os.environ.get("BENCH_POSTGRES") == "1":
            scratch_pg = cleanup.enter_context(scratch_database())
        part = os.environ.get("BENCH_ONLY")
        if part:
            return only(part, scratch_pg)
        return run(scratch_pg)


def knobs() -> tuple[float, int, int, int]:
    """BENCH_SECONDS, BENCH_REPEATS, BENCH_LOAD_PROCS, BENCH_THREADS."""
    return (
        float(os.environ.get("BENCH_SECONDS", "5")),
        int(os.environ.get("BENCH_REPEATS", "3")),
        int(os.environ.get("BENCH_LOAD_PROCS", "4")),
        int(os.environ.get("BENCH_THREADS", "4")),
    )


def only(part: str, scratch_pg: str | None) -> int:
    """One part of the bench, nothing else (BENCH_ONLY=floor, sqlite_writes, meters or gateway)."""
    if part not in ("floor", "sqlite_writes", "meters", "gateway"):
        print(f"BENCH_ONLY must be floor, sqlite_writes, meters or gateway, not {part!r}", file=sys.stderr)
        return 2
    duration, repeats, load_procs, threads = knobs()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-bench-"))
    if part == "meters":
        try:
            print(meters.text(meters.measure(workdir)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    pool = multiprocessing.get_context("spawn").Pool(load_procs)
    try:
        pool.map(load.warm, range(load_procs), chunksize=1)
        if part == "gateway":
            result = gateway.measure(Runner, pool, workdir, duration, repeats, load_procs, threads)
            summary = gateway.text(result)
        elif part == "floor":
            database_url = scratch_pg or f"sqlite:///{workdir / 'floor.db'}"
            result = floor.measure(Runner, pool, workdir, database_url, duration, repeats, load_procs, threads)
            summary = floor.text(result)
        else:
            result = sqlite_writes.measure(Runner, pool, workdir, duration, repeats, load_procs, threads)
            summary = sqlite_writes.text(result)
    finally:
        pool.close()
        pool.join()
        shutil.rmtree(workdir, ignore_errors=True)
    print(summary)
    return 0


def run(scratch_pg: str | None) -> int:
    """The whole bench: the stack's operations, then each cost measured on its own, then the report."""
    duration, repeats, load_procs, threads = knobs()
    server_procs = [int(n) for n in os.environ.get("BENCH_SERVER_PROCS", "1,2").split(",")]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="billing-bench-"))
    database_url = scratch_pg or os.environ.get("DATABASE_URL") or f"sqlite:///{workdir / 'bench.db'}"
    redis_url = os.environ.get("REDIS_URL") or None
    sqlite = database_url.startswith("sqlite")
    database = "sqlite (fresh file)" if sqlite else ("postgresql, scratch database " if scratch_pg else "")
    if not sqlite:
        database += database_url.split("@")[-1]
    info = run_info(
        duration, repeats, load_procs, threads, database=database, redis=bool(redis_url), server_procs=server_procs
    )
    print(
        f"bench: {info['nproc']} x {info['cpu_model']}, {info['database']}, redis={info['redis']}, "
        f"{load_procs}x{threads} connections, {duration:g} s per run, workdir {workdir}",
        flush=True,
    )
    started = time.time()
    postgres = None if sqlite else PostgresUse(database_url)
    stack = Stack(workdir, database_url, redis_url, "bk_bench_" + secrets.token_urlsafe(24), postgres)
    pool = multiprocessing.get_context("spawn").Pool(load_procs)
    try:
        pool.map(load.warm, range(load_procs), chunksize=1)
        runner = Runner(stack, pool, duration, load_procs, threads)
        rows, raw = ceilings(runner, stack, server_procs, database_url, duration, repeats)
        rows, open_rows = operations(runner, stack, rows)
        stack.close()
        costs = side_costs(pool, workdir, scratch_pg, redis_url, sqlite, duration, repeats, load_procs, threads)
    finally:
        pool.close()
        pool.join()
        stack.close()
        if postgres:
            postgres.close()
    ceiling = None if raw is None else raw["rows_per_s"]
    report.annotate(rows, ceiling)
    goal_rows = report.goals(rows, ceiling, sqlite)
    info["loadavg_after"] = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    info["total_seconds"] = round(time.time() - started, 1)
    print_report(rows, raw, goal_rows, open_rows, costs, len(stack.servers), info)
    finish(
        "latest.json",
        {"machine": info, "raw_insert_ceiling": raw, "rows": rows, "open_loop": open_rows, "goals": goal_rows, **costs},
        workdir,
    )
    return 0


def ceilings(
    runner: Runner, stack: Stack, server_procs: list[int], database_url: str, duration: float, repeats: int
) -> tuple[list[dict], dict | None]:
    """The raw insert ceiling, then health and plan reads on each server setup (1, 2, … processes)."""
    rows: list[dict] = []
    raw = None
    for n in server_procs:
        while len(stack.servers) < n:
            stack.add_server()
        stack.restart_envoy()
        if raw is None:
            print("raw batched insert ceiling ...", flush=True)
            raw = raw_insert_ceiling(database_url, max(1.0, duration * 0.4), repeats)
            print(f"  {raw['rows_per_s']:.0f} rows/s ({raw['method']}, runs {raw['runs']})", flush=True)
        print(f"{n} server process(es), Envoy with {n} upstream(s):", flush=True)
        # Medians of `repeats` runs on the main (largest) setup; one run each for the scaling points.
        reps = repeats if n == max(server_procs) else 1
        for op in ("health", "plan"):
            for door in ("grpc", "rest"):
                rows.append(runner.scenario(op, door, reps)[0])
    return rows, raw


def operations(runner: Runner, stack: Stack, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The seed operations through both doors (creation feeds usage, invoices feed PDFs), then each
    in an open loop; returns (all rows, open-loop rows)."""
    print(f"operations being built ({len(stack.servers)} server processes):", flush=True)
    status = {(op, door): probe(op, door, stack) for op in FEATURES for door in ("grpc", "rest")}
    per_loop = runner.load_procs * runner.threads

    def skipped(op, door, why):
        rows.append({"op": op, "door": door, "procs": len(stack.servers), "status": why})
        print(f"  {report.LABELS[op]:<24} {door:<4} {why}", flush=True)

    def each_door(op: str, items: list | None, missing: str, shares=None) -> list:
        made = []
        for door in ("grpc", "rest"):
            if status[op, door]:
                skipped(op, door, status[op, door])
            elif items is not None and not items:
                skipped(op, door, missing)
            else:
                row, created = runner.scenario(op, door, shares=shares(door) if shares else None)
                rows.append(row)
                made += created
        return made

    subs = each_door("sub_create", None, "")
    usage_subs, invoice_subs = subs[:per_loop], subs[per_loop:]
    for op in ("usage_1", "usage_1000"):
        enough = usage_subs if len(usage_subs) >= per_loop else []
        each_door(
            op, enough, "skipped: no subscriptions to track usage on", lambda _: split(usage_subs, runner.load_procs)
        )
    halves = {"grpc": invoice_subs[0::2], "rest": invoice_subs[1::2]}
    invoices: list = []
    for door in ("grpc", "rest"):
        if status["invoice", door]:
            skipped("invoice", door, status["invoice", door])
        elif not halves[door]:
            skipped("invoice", door, "skipped: no subscriptions to invoice")
        else:
            row, made = runner.scenario("invoice", door, shares=split(halves[door], runner.load_procs))
            row["subscriptions_available"] = len(halves[door])
            rows.append(row)
            invoices += made
    pdf_shares = split(invoices, runner.load_procs) if len(invoices) >= per_loop else [invoices] * runner.load_procs
    each_door("pdf", invoices, "skipped: no invoices to render", lambda _: pdf_shares)
    print(f"open loop through Envoy at {report.OPEN_LOOP_SHARE:g} of each operation's saturation:", flush=True)
    return rows, open_loops(runner, rows, usage_subs, invoices)


def side_costs(
    pool, workdir: pathlib.Path, scratch_pg, redis_url, sqlite: bool, duration, repeats, load_procs, threads
) -> dict:
    """The costs measured on their own stacks, each skippable (BENCH_FLOOR=0, …): the grpcio floor,
    SQLite batched ingestion, the rate-limit interceptor, the gateway, the meters."""
    knob = (duration, repeats, load_procs, threads)
    costs: dict = dict.fromkeys(("floor", "sqlite_writes", "rate_limit_interceptor", "gateway", "meters"))
    # Each its own database unless this run owns a scratch one: the bench catalogues they seed
    # raise the enterprise limit, which must not reach a database the bench does not own.
    if os.environ.get("BENCH_FLOOR", "1") != "0":
        own_db = scratch_pg or f"sqlite:///{workdir / 'floor.db'}"
        costs["floor"] = floor.measure(Runner, pool, workdir, own_db, *knob)
        print(floor.text(costs["floor"]), flush=True)
    if sqlite and os.environ.get("BENCH_SQLITE_WRITES", "1") != "0":
        costs["sqlite_writes"] = sqlite_writes.measure(Runner, pool, workdir, *knob)
    if os.environ.get("BENCH_INTERCEPTOR", "1") != "0":
        own_db = scratch_pg or f"sqlite:///{workdir / 'interceptor.db'}"
        costs["rate_limit_interceptor"] = interceptor.measure(Runner, pool, workdir, own_db, redis_url, *knob)
        print(interceptor.text(costs["rate_limit_interceptor"]), flush=True)
    if os.environ.get("BENCH_GATEWAY", "1") != "0":
        costs["gateway"] = gateway.measure(Runner, pool, workdir, *knob)
    if os.environ.get("BENCH_METERS", "1") != "0":
        costs["meters"] = meters.measure(workdir)
    return costs


def print_report(rows, raw, goal_rows, open_rows, costs: dict, servers: int, info: dict) -> None:
    repeats = info["repeats"]
    print()
    print(report.table(rows, raw))
    print("\nproduct owner's goals:")
    print(report.goals_text(goal_rows))
    if open_rows:
        print(
            f"\nopen loop through Envoy ({servers} server processes), offered "
            f"{report.OPEN_LOOP_SHARE:g} x closed-loop saturation, latency from each scheduled arrival:"
        )
        print(report.open_loop_table(open_rows))
    sections = [
        (
            "floor",
            f"floor: a bare grpcio no-op server vs the billing server, direct gRPC, in-process, medians of "
            f"{repeats} (ratio = throughput / the floor's; cost = 1e6/server - 1e6/floor):",
            floor.text,
        ),
        (
            "sqlite_writes",
            f"SQLite batched ingestion through Envoy (REST), 1 vs 2 server processes, medians of {repeats}:",
            sqlite_writes.text,
        ),
        (
            "rate_limit_interceptor",
            f"rate-limit interceptor, tenant-key GetPlan over direct gRPC, in-process server, medians of "
            f"{repeats} (ratio = throughput with / without; cost = 1e6/with - 1e6/without):",
            interceptor.text,
        ),
        (
            "gateway",
            f"gateway (Envoy Lua admission + metering) vs plain Envoy proxies to the same fixed upstream, "
            f"medians of {repeats}:",
            gateway.text,
        ),
        (
            "meters",
            f"meters, in-process through the services, medians of {meters.ROUNDS} alternating rounds:",
            meters.text,
        ),
    ]
    for name, title, text in sections:
        if costs.get(name):
            print(f"\n{title}")
            print(text(costs[name]))
    loads = [r for r in rows if r.get("status") == "ok"]
    if loads:
        print(
            f"\nload generator: {info['load_procs']} processes x {info['threads_per_load_proc']} loops; CPU used "
            f"{min(r['load_cpu_cores'] for r in loads):.2f}-{max(r['load_cpu_cores'] for r in loads):.2f} cores "
            f"of {info['nproc']} (busiest single load process {max(r['load_proc_max_util'] for r in loads):.0%} "
            f"of a core); servers {min(r['server_cpu_cores'] for r in loads):.2f}-"
            f"{max(r['server_cpu_cores'] for r in loads):.2f} cores, Envoy up to "
            f"{max(r['envoy_cpu_cores'] for r in loads):.2f}. Machine is shared: figures are noisy, compare "
            f"ratios within one run."
        )


def finish(name: str, results: dict, workdir: pathlib.Path) -> None:
    """Write bench-results/<name> and remove the temp directory unless BENCH_KEEP is set."""
    out = ROOT / "bench-results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out.relative_to(ROOT)} in {results['machine']['total_seconds']} s total")
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
