"""Pure functions: percentiles, per-scenario summaries, goals and the terminal table."""

from __future__ import annotations

import statistics

# Seed targets (ms, p99) and the product owner's goals.
TARGETS_MS = {"plan": 100, "sub_create": 300, "usage_1": 200, "usage_1000": 200, "invoice": 500, "pdf": 1000}
LABELS = {
    "health": "trivial call (ceiling)",
    "plan": "plan retrieval",
    "sub_create": "subscription creation",
    "usage_1": "usage tracking x1",
    "usage_100": "usage tracking x100",
    "usage_1000": "usage tracking x1000",
    "invoice": "invoice generation",
    "pdf": "PDF generation",
    "raw_insert": "raw batched insert (ceiling)",
}
ENVOY_HEADROOM = 20  # p99 through Envoy at least 20x under the target
INGEST_EVENTS_PER_S = 15_000  # batched ingestion through Envoy on SQLite
INGEST_VS_RAW = 0.5  # within 2x of the raw insert ceiling
REST_VS_GRPC = 0.7  # REST through Envoy at least 70% of direct gRPC


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n*p/100), at least 1
    return ordered[int(min(rank, len(ordered))) - 1]


def percentile_ms(values_s: list[float], p: float, digits: int = 2) -> float | None:
    """The percentile of latencies in seconds, in ms rounded to `digits`; None when empty."""
    found = percentile(values_s, p)
    return None if found is None else round(found * 1000, digits)


def summarize(latencies_s: list[float], elapsed_s: float, errors: int = 0, batch: int = 1) -> dict:
    """One run: throughput and latency in ms from raw latencies in seconds."""
    n = len(latencies_s)
    ops = n / elapsed_s if elapsed_s > 0 else 0.0
    return {
        "n": n,
        "errors": errors,
        "elapsed_s": round(elapsed_s, 3),
        "ops_per_s": round(ops, 1),
        "units_per_s": round(ops * batch, 1),
        "p50_ms": percentile_ms(latencies_s, 50),
        "p99_ms": percentile_ms(latencies_s, 99),
        "p999_ms": percentile_ms(latencies_s, 99.9),
    }


def median_of_runs(runs: list[dict]) -> dict:
    """Median of each figure over repeated runs (the runs are kept beside it)."""
    out = dict(runs[-1])
    for field in (
        "ops_per_s",
        "units_per_s",
        "p50_ms",
        "p99_ms",
        "load_cpu_cores",
        "server_cpu_cores",
        "envoy_cpu_cores",
        "load_proc_max_util",
    ):
        values = [r[field] for r in runs if r.get(field) is not None]
        if values:
            out[field] = round(statistics.median(values), 2)
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    out["n"] = sum(r.get("n", 0) for r in runs)
    out["repeats"] = len(runs)
    return out


def find(rows, op, door, procs=None):
    for row in rows:
        if (
            row["op"] == op
            and row["door"] == door
            and (procs is None or row["procs"] == procs)
            and row.get("status") == "ok"
        ):
            return row
    return None


def annotate(rows: list[dict], raw_insert_rows_per_s: float | None) -> None:
    """Add ratio to ceiling, REST/gRPC ratio and target marks to each measured row, in place."""
    for row in rows:
        if row.get("status") != "ok":
            continue
        op, door, procs = row["op"], row["door"], row["procs"]
        if op == "usage_1000" and raw_insert_rows_per_s:
            row["ceiling"] = "raw insert"
            row["ratio_to_ceiling"] = round(row["units_per_s"] / raw_insert_rows_per_s, 3)
        elif op != "health":
            ceiling = find(rows, "health", door, procs)
            if ceiling and ceiling["ops_per_s"]:
                row["ceiling"] = f"health {door}"
                row["ratio_to_ceiling"] = round(row["ops_per_s"] / ceiling["ops_per_s"], 3)
        if door == "rest":
            direct = find(rows, op, "grpc", procs)
            if direct and direct["ops_per_s"]:
                row["rest_vs_grpc"] = round(row["ops_per_s"] / direct["ops_per_s"], 3)
        target = TARGETS_MS.get(op)
        if target and row.get("p99_ms") is not None:
            row["target_ms"] = target
            row["meets_target"] = row["p99_ms"] < target
            row["meets_20x"] = row["p99_ms"] <= target / ENVOY_HEADROOM


def goals(rows: list[dict], raw_insert_rows_per_s: float | None, sqlite: bool) -> list[dict]:
    """The product owner's goals, each with a verdict (True/False, or None when not measurable)."""
    out = []
    rest_rows = [r for r in rows if r["door"] == "rest" and r["op"] in TARGETS_MS and r.get("status") == "ok"]
    main_procs = max((r["procs"] for r in rest_rows), default=None)
    rest_rows = [r for r in rest_rows if r["procs"] == main_procs]
    for r in rest_rows:
        out.append(
            {
                "goal": f"{LABELS[r['op']]}: p99 via Envoy <= {TARGETS_MS[r['op']] / ENVOY_HEADROOM:g} ms (20x under)",
                "value": f"{r['p99_ms']} ms",
                "pass": r["meets_20x"],
            }
        )
    ingest = find(rows, "usage_1000", "rest", main_procs)
    if ingest is None:
        out.append(
            {
                "goal": f"batched ingestion via Envoy >= {INGEST_EVENTS_PER_S} events/s",
                "value": "not measured",
                "pass": None,
            }
        )
        out.append({"goal": "batched ingestion within 2x of raw insert ceiling", "value": "not measured", "pass": None})
    else:
        ev = ingest["units_per_s"]
        out.append(
            {
                "goal": f"batched ingestion via Envoy >= {INGEST_EVENTS_PER_S} events/s"
                + ("" if sqlite else " (goal is for SQLite)"),
                "value": f"{ev:.0f} events/s",
                "pass": ev >= INGEST_EVENTS_PER_S if sqlite else None,
            }
        )
        if raw_insert_rows_per_s:
            ratio = ev / raw_insert_rows_per_s
            out.append(
                {
                    "goal": "batched ingestion within 2x of raw insert ceiling",
                    "value": f"{ratio:.2f} of {raw_insert_rows_per_s:.0f} rows/s",
                    "pass": ratio >= INGEST_VS_RAW,
                }
            )
    for r in rest_rows:
        if "rest_vs_grpc" in r:
            out.append(
                {
                    "goal": f"{LABELS[r['op']]}: REST >= 70% of direct gRPC",
                    "value": f"{r['rest_vs_grpc']:.2f}",
                    "pass": r["rest_vs_grpc"] >= REST_VS_GRPC,
                }
            )
    return out


def _fmt(value, spec="", none="-"):
    return none if value is None else format(value, spec)


def mark(flag) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[flag]


def table(rows: list[dict], raw_insert: dict | None) -> str:
    header = [
        "op",
        "door",
        "procs",
        "ops/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "ratio to ceiling",
        "REST/gRPC",
        "target",
        "<target",
        "20x",
        "errors",
        "load CPU",
        "server CPU",
    ]
    lines = []
    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                [
                    LABELS.get(r["op"], r["op"]),
                    r["door"],
                    str(r["procs"]),
                    r.get("status", "?"),
                    *[""] * (len(header) - 4),
                ]
            )
            continue
        ratio = "" if r.get("ratio_to_ceiling") is None else f"{r['ratio_to_ceiling']:.2f} ({r['ceiling']})"
        lines.append(
            [
                LABELS.get(r["op"], r["op"]),
                r["door"],
                str(r["procs"]),
                _fmt(r["ops_per_s"], ".0f"),
                _fmt(r["units_per_s"], ".0f") if r["op"].startswith("usage") else "",
                _fmt(r["p50_ms"], ".1f"),
                _fmt(r["p99_ms"], ".1f"),
                ratio,
                _fmt(r.get("rest_vs_grpc"), ".2f", ""),
                f"<{r['target_ms']} ms" if r.get("target_ms") else "",
                mark(r.get("meets_target")) if r.get("target_ms") else "",
                mark(r.get("meets_20x")) if r.get("target_ms") else "",
                str(r["errors"]),
                _fmt(r.get("load_cpu_cores"), ".2f"),
                _fmt(r.get("server_cpu_cores"), ".2f"),
            ]
        )
    if raw_insert:
        lines.append(
            [
                LABELS["raw_insert"],
                raw_insert["backend"],
                "-",
                "",
                _fmt(raw_insert["rows_per_s"], ".0f"),
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "0",
                "",
                "",
            ]
        )
    return _render(header, lines)


def goals_text(goal_rows: list[dict]) -> str:
    return "\n".join(f"  [{mark(g['pass']):4}] {g['goal']}: {g['value']}" for g in goal_rows)


OPEN_LOOP_SHARE = 0.5  # offered rate = this share of the operation's closed-loop saturation


def open_loop_row(op: str, offered_per_s: float, summary: dict) -> dict:
    """An open-loop run judged against the seed target's 20x headroom."""
    target = TARGETS_MS[op] / ENVOY_HEADROOM
    return dict(
        summary,
        op=op,
        offered_per_s=round(offered_per_s, 1),
        goal_ms=target,
        meets_20x=summary["p99_ms"] is not None and summary["p99_ms"] <= target,
    )


def open_loop_table(rows: list[dict]) -> str:
    header = ["op", "offered/s", "done/s", "p50 ms", "p99 ms", "p99.9 ms", "goal p99", "20x", "errors"]
    lines = []
    for r in rows:
        if r.get("status"):
            lines.append([LABELS[r["op"]], r["status"], *[""] * (len(header) - 2)])
            continue
        lines.append(
            [
                LABELS[r["op"]],
                f"{r['offered_per_s']:.0f}",
                f"{r['ops_per_s']:.0f}",
                _fmt(r["p50_ms"], ".1f"),
                _fmt(r["p99_ms"], ".1f"),
                _fmt(r["p999_ms"], ".1f"),
                f"<={r['goal_ms']:g} ms",
                mark(r["meets_20x"]),
                str(r["errors"]),
            ]
        )
    return _render(header, lines)


def _render(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def row(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([row(header), row(["-" * w for w in widths]), *map(row, lines)])
