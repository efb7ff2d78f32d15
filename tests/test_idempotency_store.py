"""Idempotency-Key records on each backend, through the service and the store: one claim per key,
void records claimed afresh by one call only, writes of a call that lost its key going nowhere,
and the scheduler's purge in batches."""

from __future__ import annotations

import datetime as dt

import pytest

from server.config import Settings
from server.domain import idempotency as rules
from server.persistence import db
from server.persistence import idempotency as store
from server.persistence.idempotency import IdempotencyKey
from server.scheduler.jobs import run_job
from server.services import idempotency

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def session(own_database_url):
    with db.session():
        yield


def test_a_key_is_claimed_once_then_answered_and_replayed(session):
    claim = idempotency.begin("admin", "k", "f", NOW)
    assert isinstance(claim, idempotency.Claim)
    assert store.claim("admin", "k", "f", NOW) is None
    with pytest.raises(rules.KeyInUse):
        idempotency.begin("admin", "k", "f", NOW)
    idempotency.keep(claim, idempotency.Answer(3, b"status", {"retry-after": "1"}))
    assert idempotency.begin("admin", "k", "f", NOW) == idempotency.Answer(3, b"status", {"retry-after": "1"})
    with pytest.raises(rules.KeyMismatch):
        idempotency.begin("admin", "k", "g", NOW)
    assert isinstance(idempotency.begin("tenant:acme", "k", "g", NOW), idempotency.Claim)


def test_a_released_key_is_claimed_again(session):
    claim = idempotency.begin("admin", "k", "f", NOW)
    idempotency.release(claim)
    assert isinstance(idempotency.begin("admin", "k", "g", NOW), idempotency.Claim)


def test_an_expired_record_is_claimed_afresh_by_one_call_only(session):
    first = idempotency.begin("admin", "k", "f", NOW)
    idempotency.keep(first, idempotency.Answer(0, b"ok"))
    later = NOW + rules.KEPT_FOR
    found = store.find("admin", "k")
    second = idempotency.begin("admin", "k", "g", later)
    assert isinstance(second, idempotency.Claim) and second.token != first.token
    assert store.claim_again(found, "h", later) is None  # read before the second call took it over
    row = store.find("admin", "k")
    assert (row.fingerprint, row.code, row.body, row.expires_at) == ("g", None, None, later + rules.KEPT_FOR)


def test_a_call_that_lost_its_key_writes_nothing_into_the_new_claim(session):
    lost = idempotency.begin("admin", "k", "f", NOW)
    taker = idempotency.begin("admin", "k", "f", NOW + rules.RUNNING_LEASE)
    assert isinstance(taker, idempotency.Claim)
    idempotency.keep(lost, idempotency.Answer(0, b"late"))
    idempotency.release(lost)
    assert store.find("admin", "k").code is None
    idempotency.keep(taker, idempotency.Answer(0, b"mine"))
    idempotency.release(taker)  # an answered record is kept
    assert idempotency.begin("admin", "k", "f", NOW + rules.RUNNING_LEASE) == idempotency.Answer(0, b"mine")


def test_the_scheduler_purges_expired_records_in_batches(session):
    for index in range(5):
        idempotency.begin("admin", f"old-{index}", "f", NOW)
    idempotency.begin("admin", "new", "f", NOW + dt.timedelta(hours=1))
    summary = run_job("idempotency_purge", NOW + rules.KEPT_FOR, Settings(), batch=2)
    assert (summary["purged"], summary["batches"]) == (5, 3)
    assert [row.key for row in IdempotencyKey.select()] == ["new"]
