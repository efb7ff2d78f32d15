"""CI's switch against passing by skipping: with REQUIRE_BACKENDS=1 (`.ci/run` sets it) a skipped
test fails, naming why it would have been skipped (PostgreSQL or Redis unreachable, chromium
missing, ...). Without it a skip stays a skip with its reason in pytest's summary, so `make test`
still runs on a machine that lacks a backend. A plugin of its own so a test can load it into a
pytest run of its own."""

from __future__ import annotations

import os

import pytest

SWITCH = "REQUIRE_BACKENDS"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(SWITCH) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"{SWITCH}=1: this test may not skip ({reason})"
