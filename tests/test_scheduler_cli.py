"""`billing-scheduler run-once` as operators run it: a subprocess against a temporary SQLite file,
e-mails written as .eml files to OUTBOX_DIR; and `run` stops cleanly on SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request

import schedule

from processes import BIN, free_port, migrate
from server.config import Settings
from server.scheduler.cli import build_schedule

SCRIPT = BIN / "billing-scheduler"


def run_once(env, *args):
    done = subprocess.run([str(SCRIPT), "run-once", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_run_once_invoices_and_writes_eml(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}", "OUTBOX_DIR": str(tmp_path / "out")}
    env.pop("SMTP_URL", None)
    migrate(env)
    assert run_once(env, "daily_rollup", "--now", "2025-03-01T00:10:00Z")["rows"] == 0
    with sqlite3.connect(tmp_path / "billing.db") as conn:
        conn.execute(
            "INSERT INTO subscription (id, tenant_id, plan_id, billing_email, status, anchor_at, current_period_start,"
            " current_period_end, created_at, updated_at) VALUES ('sub_cli', 'acme', 'standard', 'acme@example.com',"
            " 'ACTIVE', '2025-01-15 09:00:00', '2025-01-15 09:00:00', '2025-02-15 09:00:00', '2025-01-15 09:00:00',"
            " '2025-01-15 09:00:00')"
        )
    summary = run_once(env, "period_invoicing", "--now", "2025-03-20T00:00:00Z")
    assert summary["job"] == "period_invoicing" and summary["rows"] == 2 and "duration_ms" in summary
    assert run_once(env, "period_invoicing", "--now", "2025-03-20T00:00:00Z")["rows"] == 0
    assert run_once(env, "deliver_outbox", "--now", "2025-03-20T00:00:10Z")["sent"] == 2
    emls = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(emls) == 2 and all(name.startswith("invoice_issued_inv_") and name.endswith(".eml") for name in emls)


def test_run_serves_metrics_and_stops_on_sigterm(tmp_path):
    metrics_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}",
        "OUTBOX_DIR": str(tmp_path / "out"),
        "BILLING_SCHEDULER_METRICS_PORT": str(metrics_port),
    }
    migrate(env)
    process = subprocess.Popen([str(SCRIPT), "run"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        lines.append(process.stderr.readline())
        if '"job": "deliver_outbox"' in lines[-1]:
            break
    ran = 'billing_job_runs_total{job="deliver_outbox",result="success"} 1.0'
    while ran not in (scrape := scraped(metrics_port)):  # counted just after the run's log line
        assert time.monotonic() < deadline, scrape
    assert {
        "billing_outbox_pending 0.0",
        "billing_outbox_oldest_pending_seconds 0.0",
        "billing_outbox_dead_letters 0.0",
    } <= set(scrape)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "scheduler stopped" in rest


def scraped(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode().splitlines()


def refused(env, *args):
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr.strip().splitlines()


def test_now_out_of_range_is_refused_in_one_line_and_does_nothing(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}", "OUTBOX_DIR": str(tmp_path / "out")}
    for now in (
        "2200-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59-14:00",
        "not-a-time",
    ):
        code, lines = refused(env, "run-once", "daily_rollup", "--now", now)
        assert code == 2 and len(lines) == 1 and ("--now" in lines[0] or "timestamp" in lines[0]), (now, lines)
    assert not (tmp_path / "billing.db").exists()  # refused before touching anything
    code, lines = refused(env, "run-once", "daily_rollup", "--now", "2200-01-01T00:00:00Z")
    assert "--allow-future" in lines[0]
    migrate(env)
    assert run_once(env, "daily_rollup", "--now", "2200-01-01T00:00:00Z", "--allow-future")["rows"] == 0
    assert run_once(env, "daily_rollup", "--now", "2000-01-02T00:00:00+14:00")["rows"] == 0


def test_outbox_command_counts_lists_and_retries_dead_letters(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}", "OUTBOX_DIR": str(tmp_path / "out")}
    migrate(env)
    with sqlite3.connect(tmp_path / "billing.db") as conn:
        conn.execute(
            "INSERT INTO outbox_message (dedup_key, template, recipient, payload, created_at, next_attempt_at,"
            " attempts, last_error, dead_at) VALUES ('k1', 'usage_alert', 'a@example.com', '{}',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00', 10, 'refused', '2026-01-02 00:00:00')"
        )
        [(row_id,)] = conn.execute("SELECT id FROM outbox_message")
    script = [str(SCRIPT), "outbox"]
    counts = json.loads(subprocess.run(script, env=env, capture_output=True, text=True, check=True).stdout)
    assert counts == {"dead": 1, "pending": 0, "retrying": 0}
    [line] = subprocess.run(
        script + ["--failed"], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert json.loads(line)["id"] == row_id and json.loads(line)["last_error"] == "refused"
    subprocess.run(script + ["--retry", str(row_id)], env=env, check=True, capture_output=True)
    assert json.loads(subprocess.run(script, env=env, capture_output=True, text=True).stdout)["pending"] == 1
    assert subprocess.run(script + ["--retry", str(row_id)], env=env, capture_output=True).returncode == 2


def test_the_daily_rollup_runs_at_00_10_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30: 00:10 there is 18:40 UTC
    time.tzset()
    try:
        scheduler = schedule.Scheduler()
        build_schedule(scheduler, Settings())
        [rollup] = [job for job in scheduler.jobs if job.job_func.args[0] == "daily_rollup"]
        at = rollup.next_run.astimezone(dt.timezone.utc)  # next_run is naive local time
        assert (at.hour, at.minute) == (0, 10)
    finally:
        monkeypatch.undo()
        time.tzset()
