"""`billing-scheduler run` (the clock) and `billing-scheduler run-once JOB [--now RFC3339]`.

The clock only triggers jobs; what a job does is a function of `now` in jobs.py. Run one
scheduler with SQLite; with PostgreSQL several may run, and an advisory lock per job lets only
one of them run it at a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import threading
import time

import schedule

from server.bootstrap import start
from server.config import Settings
from server.persistence import db
from server.scheduler import jobs

log = logging.getLogger("billing.scheduler")
UTC = dt.timezone.utc
OUTBOX_EVERY_SECONDS = 10


def parse_now(text: str) -> dt.datetime:
    """RFC 3339 (`2025-03-01T00:10:00Z`); a time without offset is taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _trigger(name: str) -> None:
    try:
        jobs.run_job(name, dt.datetime.now(UTC))
    except Exception:  # noqa: BLE001 - a failed run is logged; the next one retries
        log.exception("job %s failed", name)


def build_schedule(scheduler: schedule.Scheduler) -> None:
    scheduler.every(5).minutes.do(_trigger, "period_invoicing")
    scheduler.every().hour.do(_trigger, "overdue_sweep")
    scheduler.every(15).minutes.do(_trigger, "usage_alerts")
    # `schedule` reads local time (a zone argument needs pytz); run() sets the process to UTC.
    scheduler.every().day.at("00:10").do(_trigger, "daily_rollup")
    scheduler.every(OUTBOX_EVERY_SECONDS).seconds.do(_trigger, "deliver_outbox")


def run(settings: Settings) -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler = schedule.Scheduler()
    build_schedule(scheduler)
    log.info("scheduler started: %s", ", ".join(sorted(jobs.JOBS)))
    for name in ("period_invoicing", "overdue_sweep", "usage_alerts", "deliver_outbox"):
        if not stop.is_set():
            _trigger(name)  # catch up at start rather than after the first interval
    while not stop.is_set():
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        stop.wait(1.0 if idle is None else min(max(idle, 0.05), 1.0))
    log.info("scheduler stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="billing-scheduler", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the jobs on their schedules until SIGTERM or Ctrl-C")
    once = commands.add_parser("run-once", help="run one job once and print its JSON summary")
    once.add_argument("job", choices=sorted(jobs.JOBS))
    once.add_argument("--now", type=parse_now, default=None, help="RFC 3339 instant (default: the current time)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = start("billing-scheduler")
    jobs.configure(settings)
    try:
        if args.command == "run":
            return run(settings)
        summary = jobs.run_job(args.job, args.now or dt.datetime.now(UTC))
        print(json.dumps(summary, sort_keys=True), flush=True)
        return 0
    finally:
        db.close()
