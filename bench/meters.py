"""Meters' cost, in one run per backend: batched ingestion of events with 3 properties
matched by 3 meters (SUM, UNIQUE_COUNT, MAX) against plain api_request batches, and endpoint 24
over a whole period holding BENCH_METER_EVENTS events (default 1,000,000).

Measured in-process through the services (usage.track, meters.meter_usage), one thread, on a
fresh SQLite file and on a scratch PostgreSQL database (skipped with a line when unreachable):
the per-event cost of matching and folding, and of the rollup writes and reads, without the
network and Envoy, which the other parts of the bench measure. Plain and metered rounds alternate
so their ratio comes from adjacent runs; the figures are medians."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import pathlib
import statistics
import time

from bench import report
from bench.postgres import scratch_database

BATCH = 1000
ROUNDS = 7
READS = 200
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0


def _events(kind: str, round_: int, at: dt.datetime):
    """A batch as a gateway or an app sends one: its events within the same minute."""
    from server.domain.usage import RawEvent

    for i in range(BATCH):
        event_id = f"{kind}-{round_}-{i}"
        when = at + dt.timedelta(milliseconds=i * 50)
        if kind == "plain":
            yield RawEvent(event_id, f"/v1/items/{i % 20}", 1, when)
        else:
            props = {"model": f"m-{i % 5}", "tokens": (i % 997) + 0.5, "user": f"u{(round_ * BATCH + i) % 10_000}"}
            yield RawEvent(event_id, "", None, when, "llm_tokens", props)


def _subscription(tenant_id: str, anchor: dt.datetime) -> str:
    """A standard subscription whose first period began at `anchor` (written as the tests' factory
    does: the API starts periods now, and the bench needs one with a month of past in it)."""
    from server.domain.periods import period
    from server.persistence.models import PlanChange, Subscription

    first = period(anchor, 0)
    sub = Subscription.create(
        id=f"sub_bench_{tenant_id}",
        tenant_id=tenant_id,
        plan="standard",
        billing_email=f"{tenant_id}@bench.example",
        status="ACTIVE",
        anchor_at=anchor,
        current_period_start=first.start,
        current_period_end=first.end,
        created_at=anchor,
        updated_at=anchor,
    )
    PlanChange.create(subscription=sub, plan="standard", effective_at=anchor)
    return sub.id


def _backend(database_url: str) -> dict:
    from server.bootstrap import prepare
    from server.config import Settings
    from server.domain import meters as rules
    from server.domain.access import KeyScope, Principal
    from server.persistence import db
    from server.services import meters, usage

    admin = Principal(key_id=0, scope=KeyScope.ADMIN)
    now = dt.datetime.now(dt.timezone.utc)
    prepare(dataclasses.replace(Settings(), database_url=database_url))
    with contextlib.closing(db), db.session():
        for meter_id, aggregation, prop in (
            ("tokens", "SUM", "tokens"),
            ("users", "UNIQUE_COUNT", "user"),
            ("peak", "MAX", "tokens"),
        ):
            meters.create_meter(
                admin, rules.validate_meter(meter_id, meter_id, "llm_tokens", aggregation, prop, ["model"], {}), now=now
            )
        anchor = now - dt.timedelta(days=26)
        plain_sub, metered_sub = _subscription("plain", anchor), _subscription("metered", anchor)
        span = dt.timedelta(days=25)
        seconds: dict[str, list[float]] = {"plain": [], "metered": []}
        for round_ in range(ROUNDS):
            for kind, sub in (("plain", plain_sub), ("metered", metered_sub)):
                batch = list(_events(kind, round_, anchor + span * round_ / ROUNDS))
                started = time.perf_counter()
                usage.track(admin, sub, batch, now=now)
                seconds[kind].append(time.perf_counter() - started)
        plain, metered = (BATCH / statistics.median(seconds[k]) for k in ("plain", "metered"))

        total = int(os.environ.get("BENCH_METER_EVENTS", "1000000"))
        big = _subscription("big", anchor)
        started = time.perf_counter()
        rounds = total // BATCH
        for round_ in range(rounds):
            usage.track(admin, big, list(_events("big", round_, anchor + span * round_ / rounds)), now=now)
        loaded = time.perf_counter() - started
        reads: dict[str, list[float]] = {}
        for meter_id in ("tokens", "users", "peak"):
            for grouped in ((), ("model",)):
                key = f"{meter_id}{'/model' if grouped else ''}"
                reads[key] = []
                for _ in range(READS // 6):
                    started = time.perf_counter()
                    meters.meter_usage(
                        admin, big, meter_id, start=None, end=None, window=rules.Window.PERIOD, group_by=grouped
                    )
                    reads[key].append((time.perf_counter() - started) * 1000)
        every = sorted(ms for values in reads.values() for ms in values)
    return {
        "plain_events_per_s": round(plain),
        "metered_events_per_s": round(metered),
        "ratio": round(metered / plain, 2),
        "loaded_events": total,
        "load_events_per_s": round(total / loaded),
        "read_p50_ms": round(statistics.median(every), 2),
        "read_p99_ms": round(every[min(len(every) - 1, int(len(every) * 0.99))], 2),
        "read_p99_by_query_ms": {k: round(sorted(v)[min(len(v) - 1, int(len(v) * 0.99))], 2) for k, v in reads.items()},
    }


def measure(workdir: pathlib.Path) -> dict:
    result = {"sqlite": _backend(f"sqlite:///{workdir / 'meters.db'}")}
    print(f"meters on SQLite: {result['sqlite']}", flush=True)
    try:
        with scratch_database(prefix="bench_meters") as url:
            result["postgresql"] = _backend(url)
            print(f"meters on PostgreSQL: {result['postgresql']}", flush=True)
    except Exception as error:  # noqa: BLE001 - a missing server is a line in the report, not a failed bench
        result["postgresql"] = {"skipped": f"PostgreSQL unreachable: {str(error).strip()[:200]}"}
    return result


def text(result: dict) -> str:
    lines = []
    for backend, figures in result.items():
        if "skipped" in figures:
            lines.append(f"  {backend}: {figures['skipped']}")
            continue
        lines.append(
            f"  {backend}: plain {figures['plain_events_per_s']:,} events/s, 3 meters "
            f"{figures['metered_events_per_s']:,} events/s, ratio {figures['ratio']} "
            f"[{report.mark(figures['ratio'] >= GOAL_RATIO)}] >= {GOAL_RATIO}"
        )
        lines.append(
            f"  {backend}: endpoint 24 over {figures['loaded_events']:,} events: p50 {figures['read_p50_ms']} ms, "
            f"p99 {figures['read_p99_ms']} ms "
            f"[{report.mark(figures['read_p99_ms'] <= GOAL_P99_MS)}] <= {GOAL_P99_MS} ms"
        )
    return "\n".join(lines)
