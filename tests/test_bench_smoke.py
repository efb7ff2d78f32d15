"""The bench's parts on synthetic data (fast: no stack, no load; one reads a PostgreSQL backend's CPU)."""

import itertools

import pytest

from bench import report


def test_percentile_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert report.percentile(values, 50) == 0.050
    assert report.percentile(values, 99) == 0.099
    assert report.percentile([], 50) is None
    assert report.percentile([0.3], 99) == 0.3


def test_report_ratios_goals_and_table():
    def row(op, door, ops, p99, batch=1):
        r = report.summarize([p99 / 1000] * 100, 100 / ops, batch=batch)
        r.update(op=op, door=door, procs=2, status="ok", load_cpu_cores=0.2, server_cpu_cores=1.5)
        return r

    rows = [
        row("health", "grpc", 2000, 10),
        row("health", "rest", 1800, 11),
        row("plan", "grpc", 1000, 4),
        row("plan", "rest", 800, 6),
        row("usage_1000", "grpc", 20, 150, 1000),
        row("usage_1000", "rest", 16, 180, 1000),
        {"op": "invoice", "door": "rest", "procs": 2, "status": "not implemented"},
    ]
    report.annotate(rows, raw_insert_rows_per_s=30000)
    plan_rest = rows[3]
    assert plan_rest["ratio_to_ceiling"] == round(800 / 1800, 3)
    assert plan_rest["rest_vs_grpc"] == 0.8
    assert plan_rest["meets_target"] and not plan_rest["meets_20x"]
    assert rows[5]["ratio_to_ceiling"] == round(16000 / 30000, 3)
    verdicts = {g["goal"]: g["pass"] for g in report.goals(rows, 30000, sqlite=True)}
    assert verdicts["batched ingestion via Envoy >= 15000 events/s"] is True
    assert verdicts["batched ingestion within 2x of raw insert ceiling"] is True
    assert verdicts["plan retrieval: REST >= 70% of direct gRPC"] is True
    assert verdicts["plan retrieval: p99 via Envoy <= 5 ms (20x under)"] is False
    text = report.table(rows, {"backend": "sqlite", "rows_per_s": 30000})
    assert "not implemented" in text and "raw batched insert" in text
    median = report.median_of_runs([dict(rows[2], ops_per_s=v) for v in (900, 1000, 1100)])
    assert median["ops_per_s"] == 1000 and median["repeats"] == 3


def test_scratch_table_keeps_the_real_shape():
    from bench import ceiling

    real = [
        'CREATE TABLE "usage_event" ("id" INTEGER NOT NULL PRIMARY KEY, "subscription_id" VARCHAR(40) NOT NULL, '
        '"event_id" VARCHAR(128) NOT NULL, FOREIGN KEY ("subscription_id") REFERENCES "subscription" ("id") '
        "ON DELETE CASCADE)",
        'CREATE UNIQUE INDEX "usage_event_subscription_id_event_id" ON "usage_event" ("subscription_id", "event_id")',
        'CREATE INDEX "usage_event_received_at" ON "usage_event" ("received_at")',
    ]
    table, unique, received = ceiling.sqlite_scratch_ddl(real)
    assert table.startswith(f'CREATE TABLE "{ceiling.TABLE}" (')
    assert f'REFERENCES "{ceiling.PARENT}" ("id") ON DELETE CASCADE' in table
    assert unique == (
        f'CREATE UNIQUE INDEX "{ceiling.TABLE}_subscription_id_event_id" ON "{ceiling.TABLE}" '
        '("subscription_id", "event_id")'
    )
    assert received.endswith(f'ON "{ceiling.TABLE}" ("received_at")')


def test_interceptor_catalogue_and_summary(tmp_path):
    import json

    from bench import interceptor
    from server.config import DEFAULT_CATALOGUE

    plans = {
        p["tier"]: p for p in json.loads(interceptor.bench_catalogue(tmp_path, DEFAULT_CATALOGUE).read_text())["plans"]
    }
    assert plans["ENTERPRISE"]["rate_limit_per_minute"] == interceptor.RAISED_LIMIT
    assert plans["FREE"]["rate_limit_per_minute"] == 50

    def run(ops, cpu):
        return {"ops_per_s": ops, "p50_ms": 10.0, "server_cpu_cores": cpu, "errors": 0}

    result = interceptor.summarize(
        {
            "off": [run(1000, 1.0), run(800, 1.0), run(1000, 1.0)],
            "in-process": [run(800, 1.0), run(800, 1.0), run(500, 1.0)],
        }
    )
    assert result["off"]["ops_per_s"] == 1000
    assert result["in-process"]["ratio"] == 0.8  # median of paired ratios 0.8, 1.0, 0.5
    assert result["in-process"]["cost_us"] == 250.0  # median of 250, 0, 1000
    assert result["in-process"]["cpu_cost_us"] == 250.0
    result["errors"] = {"off": 0, "in-process": 0}
    assert "in-process" in interceptor.text(result)


def test_gateway_summary_compares_doors_and_judges_goals():
    from bench import gateway

    def run(p50, p99, ops, envoy=0.5, server=0.0):
        return {
            "p50_ms": p50,
            "p99_ms": p99,
            "ops_per_s": ops,
            "errors": 0,
            "load_cpu_cores": 0.5,
            "envoy_cpu_cores": envoy,
            "server_cpu_cores": server,
        }

    runs = {
        ("direct", "1"): [run(0.1, 0.3, 9000)] * 3,
        ("direct", "n"): [run(1, 3, 10000)] * 3,
        ("proxy", "1"): [run(0.2, 0.4, 5000)] * 3,
        ("proxy", "n"): [run(2, 4, 4000)] * 3,
        ("gateway", "1"): [run(0.6, 3.0, 1500), run(0.7, 9.0, 1400), run(0.8, 4.0, 1300)],
        ("gateway", "n"): [run(7, 15, 2000, 0.4, 0.2), run(7, 15, 2000, 0.3, 0.1), run(7, 15, 2000, 0.5, 0.3)],
    }
    result = gateway.summarize(runs, {"p50_ms": 3.0, "p99_ms": 90.0, "counted": 200, "requests": 200}, 16)
    assert (result["added_p50_ms"], result["added_p99_ms"], result["throughput_ratio"]) == (0.6, 3.7, 0.2)
    assert result["throughput_ratio_vs_proxy"] == 0.5
    # CPU per request at n connections: the median of each run's cores / req/s, in µs.
    assert (result["gateway"]["envoy_cpu_us_per_request"], result["gateway"]["server_cpu_us_per_request"]) == (
        200.0,
        100.0,
    )
    assert (result["direct"]["envoy_cpu_us_per_request"], result["direct"]["server_cpu_us_per_request"]) == (50.0, 0.0)
    assert result["goals"] == {
        "added p50 <= 0.5 ms": False,
        "added p99 <= 5.0 ms": True,
        "throughput >= 0.5 of a plain Envoy proxy": True,  # 2000 / 4000, not 2000 / 10000
    }
    assert "FAIL" in gateway.text(result) and "metering lag p50 3.0 ms" in gateway.text(result)


def test_floor_server_answers_the_noop_and_text_judges_goals():
    import grpc

    from bench import floor

    server, port = floor.bare_server(threads=2)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary(floor.FLOOR_METHOD)(b"", timeout=10) == b""
    finally:
        server.stop(0)

    def fig(ops, ratio):
        return {"ops_per_s": ops, "p50_ms": 1.0, "cpu_us_per_call": 100.0, "ratio": ratio}

    result = {
        "floor": fig(5000, 1.0),
        "GetHealth": fig(4500, 0.9),
        "GetPlan (tenant key)": fig(2000, 0.4),
        "errors": {"floor": 0, "GetHealth": 0, "GetPlan (tenant key)": 0},
    }
    text = floor.text(result)
    assert "[PASS] GetHealth >= 0.8 of the floor: 0.90" in text
    assert "[FAIL] GetPlan (tenant key) >= 0.67 of the floor: 0.40" in text


def test_open_loop_rows_judge_p99_against_the_20x_goal():
    fast = report.summarize([0.001] * 999 + [0.050], elapsed_s=1.0)
    row = report.open_loop_row("plan", 400.0, fast)
    assert row["p999_ms"] == 1.0 and row["meets_20x"] is True  # 999th of 1,000 is nearest-rank p99.9
    slow = report.open_loop_row("plan", 400.0, report.summarize([0.006] * 100, elapsed_s=1.0))
    assert slow["meets_20x"] is False  # 6 ms > 100 ms / 20
    text = report.open_loop_table([row, slow, {"op": "pdf", "status": "skipped: nothing to act on"}])
    assert "<=5 ms" in text and "FAIL" in text and "skipped: nothing to act on" in text


def test_open_loop_schedule_offers_a_fixed_rate_whatever_the_replies():
    import queue
    import time

    from bench import load

    arrivals = queue.Queue()
    load._schedule(
        {"rate": 1000.0, "duration": 0.05, "start_at": time.time(), "worker": 1, "procs": 2}, arrivals, senders=2
    )
    items = [arrivals.get() for _ in range(arrivals.qsize())]
    dues, ends = items[:-2], items[-2:]
    assert ends == [None, None] and len(dues) == 50
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(dues)}
    assert gaps == {0.001}  # spaced by 1/rate, not by replies


def test_scale_rows_pair_speedups_by_round_and_cost_cpu_per_unit():
    from bench import scale

    def run(ops, units, server, pg):
        return {
            "ops_per_s": ops,
            "units_per_s": units,
            "p50_ms": 5.0,
            "p99_ms": 9.0,
            "errors": 0,
            "server_cpu_cores": server,
            "postgres_cpu_cores": pg,
            "envoy_cpu_cores": 0.2,
            "load_cpu_cores": 0.1,
            "wal_bytes_per_s": units * 300,
        }

    runs = {
        ("usage_1000", "rest", 1): [run(10, 10_000, 0.5, 0.5), run(20, 20_000, 0.5, 0.5), run(10, 10_000, 0.5, 0.5)],
        ("usage_1000", "rest", 2): [run(15, 15_000, 1.0, 0.6), run(20, 20_000, 1.0, 0.6), run(30, 30_000, 1.0, 0.6)],
    }
    rows = {r["procs"]: r for r in scale.summarize(runs)}
    assert rows[1]["speedup"] == 1.0
    assert rows[2]["speedup"] == 1.5  # median of paired 1.5, 1.0, 3.0, not 20 / 10
    assert rows[2]["ops_per_s"] == 20 and rows[2]["units_per_s"] == 20_000
    assert rows[2]["server_us_per_unit"] == 50.0  # 1.0 core / 20,000 events/s (median of 66.7, 50, 33.3)
    assert rows[1]["postgres_us_per_unit"] == 50.0
    assert rows[2]["busy_cores"] == 1.9  # server 1.0 + PG 0.6 + Envoy 0.2 + load 0.1
    assert rows[2]["wal_bytes_per_unit"] == 300
    text = scale.table(list(rows.values()))
    assert "usage tracking x1000" in text and "1.50" in text


@pytest.mark.postgres
def test_postgres_use_counts_a_backends_cpu_and_the_wal_it_writes(tmp_path):
    import psycopg2

    from bench.postgres import PostgresUse
    from stores import new_database

    with new_database("postgresql", tmp_path) as url:
        meter = PostgresUse(url.replace("postgresql://", "postgresql+pool://"))
        worker = psycopg2.connect(url)
        try:
            cpu, wal = meter.cpu_seconds(), meter.wal_bytes()
            with worker, worker.cursor() as cur:
                cur.execute("SELECT count(*) FROM generate_series(1, 5000000)")
                cur.execute("CREATE TABLE filler AS SELECT repeat('x', 100) AS pad FROM generate_series(1, 10000)")
            assert meter.cpu_seconds() - cpu > 0.1  # ~0.5 s of a backend's CPU, read from /proc
            assert meter.wal_bytes() - wal > 1_000_000  # ~1.3 MB of rows
        finally:
            worker.close()
            meter.close()


def test_sqlite_writes_verdicts():
    from bench import sqlite_writes

    def procs(events, ratio, p99):
        return {"units_per_s": events, "ratio": ratio, "p99_ms": p99, "errors": 0}

    text = sqlite_writes.text(
        {
            "raw_rows_per_s": 150000,
            "raw_runs": [150000],
            "procs_1": procs(110000, 0.73, 300),
            "procs_2": procs(90000, 0.6, 350),
        }
    )
    lines = [line.strip() for line in text.splitlines()]
    assert "[PASS] 1 process(es) >= 100,000 events/s and [PASS] >= 0.6 of raw" in lines
    assert "[FAIL] 2 process(es) >= 100,000 events/s and [PASS] >= 0.6 of raw" in lines
    assert lines[-1].startswith("[FAIL] write p99 with 2 processes no worse than with 1")
