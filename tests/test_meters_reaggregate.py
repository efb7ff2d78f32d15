"""`billing-server reaggregate --meter ID`: a meter's figures of the open periods rebuilt from the
raw events kept, including events stored before the meter existed; idempotent. Both backends,
a database of the test's own."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
import sys

from factories import insert_subscription
from server.domain import meters as rules
from server.domain.access import KeyScope, Principal
from server.domain.issuer import Issuer
from server.domain.usage import RawEvent
from server.persistence import db
from server.services import invoices, metering, meters, usage

ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
BIN = pathlib.Path(sys.executable).parent


def figures(sub_id: str, meter_id: str) -> list[tuple[dict, str]]:
    rows = meters.meter_usage(
        ADMIN, sub_id, meter_id, start=None, end=None, window=rules.Window.PERIOD, group_by=["model"]
    )
    return [(row.groups, row.value) for row in rows]


def test_reaggregate_counts_events_stored_before_the_meter_and_is_idempotent(own_database_url):
    now = dt.datetime.now(dt.timezone.utc)
    sub = insert_subscription("reagg", anchor=now - dt.timedelta(days=2))
    earlier = insert_subscription("reagg-invoiced", anchor=now - dt.timedelta(days=2))
    events = [
        RawEvent("a", "", None, now - dt.timedelta(hours=5), "llm", {"model": "m1", "tokens": 10}),
        RawEvent("b", "", None, now - dt.timedelta(hours=1), "llm", {"model": "m2", "tokens": "2.5"}),
        RawEvent("c", "", None, now - dt.timedelta(hours=1), "llm", {"model": "m1"}),  # no tokens: left out
        RawEvent("d", "/v1/x", 3, now - dt.timedelta(hours=1)),
    ]
    with db.session():
        usage.track(ADMIN, sub.id, events, now=now)
        usage.track(ADMIN, earlier.id, events[:1], now=now)
        invoices.generate_invoice(earlier.id, now=now, issuer=Issuer("I", "A", "T"), principal=ADMIN)
        meters.create_meter(
            ADMIN, rules.validate_meter("tokens", "Tokens", "llm", "SUM", "tokens", ["model"], {}), now=now
        )
        assert figures(sub.id, "tokens") == []  # a meter counts events stored after its creation
        usage.track(ADMIN, sub.id, [RawEvent("e", "", None, now, "llm", {"model": "m2", "tokens": 1})], now=now)
        assert figures(sub.id, "tokens") == [({"model": "m2"}, "1")]
        for _ in range(2):
            done = metering.reaggregate("tokens", now=now, retention_days=35)
            assert (done.periods, done.events, done.skipped) == (1, 3, 1)
            assert figures(sub.id, "tokens") == [({"model": "m1"}, "10"), ({"model": "m2"}, "3.5")]
            assert figures(earlier.id, "tokens") == []  # an invoiced period is closed: left as it is


def test_reaggregate_command_reports_and_refuses_an_unknown_meter(own_database_url):
    env = {**os.environ, "DATABASE_URL": own_database_url}
    with db.session():
        meters.create_meter(
            ADMIN,
            rules.validate_meter("calls", "Calls", "call", "COUNT", "", [], {}),
            now=dt.datetime.now(dt.timezone.utc),
        )
    done = subprocess.run(
        [str(BIN / "billing-server"), "reaggregate", "--meter", "calls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "meter calls reaggregated: 0 period(s), 0 event(s) counted, 0 without a valid value left out" in done.stderr
    missing = subprocess.run(
        [str(BIN / "billing-server"), "reaggregate", "--meter", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (missing.returncode, missing.stderr.strip()) == (2, "billing-server reaggregate: meter 'nope' not found")
    no_meter = subprocess.run(
        [str(BIN / "billing-server"), "reaggregate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert no_meter.returncode == 2 and "reaggregate needs --meter ID" in no_meter.stderr
