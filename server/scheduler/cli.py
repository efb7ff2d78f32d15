"""`billing-scheduler run` (the clock), `billing-scheduler run-once JOB [--now RFC3339]` and
`billing-scheduler outbox [--failed | --retry ID]`.

The clock only triggers jobs; what a job does is a function of `now` in jobs.py. Beside it, the
webhook dispatcher sends due webhook deliveries every half second (scheduler/webhook_dispatcher.py). Run one
scheduler with SQLite; with PostgreSQL several may run, and an advisory lock per job lets only
one of them run it at a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading

import schedule

from server.bootstrap import serve_metrics, start
from server.config import Settings
from server.observability import metrics
from server.persistence import db
from server.scheduler import jobs
from server.scheduler.webhook_dispatcher import Dispatcher
from server.services import outbox

log = logging.getLogger("billing.scheduler")
UTC = dt.timezone.utc
OUTBOX_EVERY_SECONDS = 10
# The range a job's clock may be set to: nothing in this service predates 2000, and a year of
# slack below datetime's end keeps every period and backoff computed from `now` representable.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=UTC)
LATEST = dt.datetime(9998, 1, 1, tzinfo=UTC)
MAX_AHEAD = dt.timedelta(hours=24)


def parse_now(text: str) -> dt.datetime:
    """RFC 3339 (`2025-03-01T00:10:00Z`); a time without offset is taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp in range: {text!r}") from None


def check_now(now: dt.datetime, real_now: dt.datetime, *, allow_future: bool) -> str | None:
    """Why `now` may not drive a job, or None. A clock far ahead would invoice periods that have
    not happened and purge the events deduplication needs; one before 2000 is a typo."""
    if now < EARLIEST:
        return f"--now {now.isoformat()} is before {EARLIEST:%Y-%m-%d}"
    if now >= LATEST:
        return f"--now {now.isoformat()} is not before {LATEST:%Y-%m-%d}"
    if now > real_now + MAX_AHEAD and not allow_future:
        return (
            f"--now {now.isoformat()} is more than 24 hours ahead of the clock ({real_now.isoformat()}); "
            "pass --allow-future if you mean it"
        )
    return None


def _outbox(args: argparse.Namespace) -> int:
    """Counts, dead letters, or a retry of one; prints JSON."""
    with db.session():
        if args.retry is not None:
            if not outbox.retry(args.retry, dt.datetime.now(UTC)):
                print(f"billing-scheduler: no dead letter with id {args.retry}", file=sys.stderr)
                return 2
            print(json.dumps({"retried": args.retry}))
        elif args.failed:
            for row in outbox.dead_letters():
                print(
                    json.dumps(
                        {
                            "id": row.id,
                            "template": row.template,
                            "recipient": row.recipient,
                            "attempts": row.attempts,
                            "last_error": row.last_error,
                            "dead_at": row.dead_at.isoformat(),
                        },
                        sort_keys=True,
                    )
                )
        else:
            print(json.dumps(outbox.counts(), sort_keys=True))
    return 0


def _outbox_backlog():
    with db.session():
        return outbox.backlog()


def _trigger(name: str, settings: Settings) -> None:
    try:
        jobs.run_job(name, dt.datetime.now(UTC), settings)
    except Exception:
        log.exception("job %s failed", name)


def build_schedule(scheduler: schedule.Scheduler, settings: Settings) -> None:
    scheduler.every(5).minutes.do(_trigger, "period_invoicing", settings)
    scheduler.every().hour.do(_trigger, "overdue_sweep", settings)
    scheduler.every(15).minutes.do(_trigger, "usage_alerts", settings)
    scheduler.every(15).minutes.do(_trigger, "trial_notices", settings)
    # `schedule` reads local time unless told the zone (which it resolves with pytz).
    scheduler.every().day.at("00:10", "UTC").do(_trigger, "daily_rollup", settings)
    scheduler.every(OUTBOX_EVERY_SECONDS).seconds.do(_trigger, "deliver_outbox", settings)
    scheduler.every().hour.do(_trigger, "idempotency_purge", settings)


def run(settings: Settings) -> int:
    stop = jobs.STOPPING  # also tells a running job to stop after the item in hand
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler = schedule.Scheduler()
    build_schedule(scheduler, settings)
    webhooks = threading.Thread(
        target=Dispatcher(allowed=settings.webhooks_allow).run, args=(stop,), name="webhook-dispatcher"
    )
    webhooks.start()
    log.info("scheduler started: %s", ", ".join(sorted(jobs.JOBS)))
    for name in ("period_invoicing", "overdue_sweep", "usage_alerts", "trial_notices", "deliver_outbox"):
        if not stop.is_set():
            _trigger(name, settings)  # catch up at start rather than after the first interval
    while not stop.is_set():
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        stop.wait(1.0 if idle is None else min(max(idle, 0.05), 1.0))
    webhooks.join()
    log.info("scheduler stopped")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the problem (exit 2), not the usage text."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="billing-scheduler", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the jobs on their schedules until SIGTERM or Ctrl-C")
    once = commands.add_parser("run-once", help="run one job once and print its JSON summary")
    once.add_argument("job", choices=sorted(jobs.JOBS))
    once.add_argument("--now", type=parse_now, default=None, help="RFC 3339 instant (default: the current time)")
    once.add_argument("--allow-future", action="store_true", help="accept --now more than 24 hours ahead")
    box = commands.add_parser("outbox", help="e-mail outbox: counts, dead letters (--failed), or --retry ID")
    which = box.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="list dead letters (delivery given up)")
    which.add_argument("--retry", type=int, metavar="ID", help="queue a dead letter again, with fresh attempts")
    args = parser.parse_args(argv)
    if args.command == "run-once" and args.now is not None:
        problem = check_now(args.now, dt.datetime.now(UTC), allow_future=args.allow_future)
        if problem:
            parser.error(problem)
    settings = start("billing-scheduler")
    try:
        if args.command == "run":
            serve_metrics(
                "billing-scheduler",
                "BILLING_SCHEDULER_METRICS_PORT",
                settings.scheduler_metrics_port,
                settings.bind,
                collectors=[metrics.OutboxCollector(_outbox_backlog)],
            )
            return run(settings)
        if args.command == "outbox":
            return _outbox(args)
        summary = jobs.run_job(args.job, args.now or dt.datetime.now(UTC), settings)
        print(json.dumps(summary, sort_keys=True), flush=True)
        return 0
    finally:
        db.close()
