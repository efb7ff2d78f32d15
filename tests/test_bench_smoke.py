"""The bench's pure parts on synthetic data (fast: no stack, no load)."""

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
    rows = [row("health", "grpc", 2000, 10), row("health", "rest", 1800, 11),
            row("plan", "grpc", 1000, 4), row("plan", "rest", 800, 6),
            row("usage_1000", "grpc", 20, 150, 1000), row("usage_1000", "rest", 16, 180, 1000),
            {"op": "invoice", "door": "rest", "procs": 2, "status": "not implemented"}]
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
