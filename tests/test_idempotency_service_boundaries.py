"""services/idempotency.py called directly, each test on a SQLite database of its own, with an explicit
`now`: a new key is claimed; a retry while its call runs is refused (IN_USE, after exactly
CLAIM_ATTEMPTS tries) until the claim's lease expires exactly RUNNING_LEASE later; a retry with a
different request is a conflict (MISMATCH) until the record expires exactly KEPT_FOR later; an
answered key replays its answer (code, body, metadata) byte for byte; a released key runs again;
the purge takes records expiring exactly now and no later one, at most `limit` of them. Each
refusal's code, reason and wording word for word. The races between the store's statements
(a record released or taken over between two of them) are staged by wrapping the store.
Fast enough for the mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain import idempotency as rules
from server.persistence import db
from server.persistence import idempotency as store
from server.persistence.idempotency import IdempotencyKey
from server.services import idempotency as service
from server.services.idempotency import Answer, Claim
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLDER = "tenant:acme"
KEY = "order-42"
PRINT = rules.fingerprint("/billing.v1.Invoices/Create", b"\x08\x01")
OTHER_PRINT = rules.fingerprint("/billing.v1.Invoices/Create", b"\x08\x02")
IN_USE = (
    "ABORTED",
    "IDEMPOTENCY_KEY_IN_USE",
    "a request with this Idempotency-Key is still running; retry once it has answered",
)
MISMATCH = (
    "ALREADY_EXISTS",
    "IDEMPOTENCY_KEY_MISMATCH",
    "this Idempotency-Key was used with a different request; use a new key for a new request",
)


@pytest.fixture(autouse=True)
def idempotency_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        yield


def at(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def refusal(error: rules.KeyInUse | rules.KeyMismatch) -> tuple[str, str, str]:
    return error.code, error.reason, error.message


def rows() -> list[tuple]:
    """Every record: (holder, key, fingerprint, claim, claimed_at, expires_at, code, body, metadata)."""
    return [
        (
            r.holder,
            r.key,
            r.fingerprint,
            r.claim,
            at(r.claimed_at),
            at(r.expires_at),
            r.code,
            None if r.body is None else bytes(r.body),
            r.metadata,
        )
        for r in IdempotencyKey.select().order_by(IdempotencyKey.holder, IdempotencyKey.key)
    ]


def claimed(now: dt.datetime = T0, *, key: str = KEY, fingerprint: str = PRINT) -> Claim:
    claim = service.begin(HOLDER, key, fingerprint, now)
    assert isinstance(claim, Claim)
    return claim


def counting(monkeypatch, name: str, outcomes: list | None = None) -> list:
    """Wrap store.`name`: each call is recorded; while `outcomes` lasts, its next item is returned
    instead of calling the store (a race staged between two statements)."""
    real = getattr(store, name)
    calls: list = []

    def wrapped(*args):
        calls.append(args)
        if outcomes:
            return outcomes.pop(0)
        return real(*args)

    monkeypatch.setattr(store, name, wrapped)
    return calls


# --- begin: a new key, a running one, its lease ----------------------------------------------------


def test_a_new_key_is_claimed_for_the_call_and_kept_for_exactly_kept_for():
    claim = claimed()

    assert (claim.holder, claim.key) == (HOLDER, KEY)
    assert len(claim.token) == 32 and int(claim.token, 16) >= 0
    assert rows() == [(HOLDER, KEY, PRINT, claim.token, T0, T0 + rules.KEPT_FOR, None, None, None)]


def test_a_retry_while_the_call_runs_is_refused_in_use_up_to_the_leases_last_instant(monkeypatch):
    first = claimed()
    claims = counting(monkeypatch, "claim")
    finds = counting(monkeypatch, "find")
    again = counting(monkeypatch, "claim_again")
    lease_left = T0 + rules.RUNNING_LEASE - US  # the lease's last instant

    with pytest.raises(rules.KeyInUse) as refused:
        service.begin(HOLDER, KEY, PRINT, lease_left)

    assert refusal(refused.value) == IN_USE
    assert claims == [(HOLDER, KEY, PRINT, lease_left)]
    assert finds == [(HOLDER, KEY)]
    assert again == []
    assert rows() == [(HOLDER, KEY, PRINT, first.token, T0, T0 + rules.KEPT_FOR, None, None, None)]


def test_a_claim_whose_lease_expires_exactly_now_is_taken_over_by_the_retry():
    first = claimed()
    now = T0 + rules.RUNNING_LEASE

    second = claimed(now)

    assert (second.holder, second.key) == (HOLDER, KEY)
    assert second.token != first.token and len(second.token) == 32
    assert rows() == [(HOLDER, KEY, PRINT, second.token, now, now + rules.KEPT_FOR, None, None, None)]
    # The lost call's answer is not kept over the new claim.
    service.keep(first, Answer(0, b"late"))
    assert rows()[0][6:] == (None, None, None)


def test_a_takeover_lost_to_another_retry_is_refused_in_use_while_that_retry_runs(monkeypatch):
    claimed()
    now = T0 + rules.RUNNING_LEASE
    real = store.claim_again
    winners: list[str] = []
    calls: list = []

    def lost(found, fingerprint, when):
        calls.append(when)
        if not winners:  # another retry takes the record over between our read and our update
            winners.append(real(store.find(HOLDER, KEY), fingerprint, when))
        return real(found, fingerprint, when)

    monkeypatch.setattr(store, "claim_again", lost)
    with pytest.raises(rules.KeyInUse) as refused:
        service.begin(HOLDER, KEY, PRINT, now)

    assert refusal(refused.value) == IN_USE
    assert calls == [now]
    assert rows()[0][3:5] == (winners[0], now)


def test_a_takeover_lost_once_then_won_claims_the_key(monkeypatch):
    claimed()
    now = T0 + rules.RUNNING_LEASE
    claims = counting(monkeypatch, "claim")
    again = counting(monkeypatch, "claim_again", [None])

    claim = service.begin(HOLDER, KEY, PRINT, now)

    assert isinstance(claim, Claim) and (claim.holder, claim.key) == (HOLDER, KEY)
    assert len(claims) == 2 and len(again) == 2
    assert rows()[0][3:5] == (claim.token, now)


def test_a_key_released_between_the_insert_and_the_read_is_claimed_on_the_next_attempt(monkeypatch):
    claims = counting(monkeypatch, "claim", [None])  # the INSERT lost to a record ...
    finds = counting(monkeypatch, "find", [None])  # ... released before it was read

    claim = service.begin(HOLDER, KEY, PRINT, T0)

    assert isinstance(claim, Claim)
    assert len(claims) == 2 and len(finds) == 1
    assert rows() == [(HOLDER, KEY, PRINT, claim.token, T0, T0 + rules.KEPT_FOR, None, None, None)]


def test_a_key_released_before_every_read_is_refused_in_use_after_the_claim_attempts(monkeypatch):
    claims = counting(monkeypatch, "claim", [None, None, None])
    finds = counting(monkeypatch, "find", [None, None, None])

    with pytest.raises(rules.KeyInUse) as refused:
        service.begin(HOLDER, KEY, PRINT, T0)

    assert refusal(refused.value) == IN_USE
    assert (len(claims), len(finds)) == (3, 3)
    assert rows() == []


# --- begin: a different request, an expired record --------------------------------------------------


def test_a_retry_with_a_different_request_is_a_conflict_running_or_answered():
    claim = claimed()
    with pytest.raises(rules.KeyMismatch) as running:
        service.begin(HOLDER, KEY, OTHER_PRINT, T0 + rules.RUNNING_LEASE)  # even once the lease is over
    service.keep(claim, Answer(0, b"done"))
    with pytest.raises(rules.KeyMismatch) as answered:
        service.begin(HOLDER, KEY, OTHER_PRINT, T0 + rules.KEPT_FOR - US)  # the record's last instant

    assert refusal(running.value) == MISMATCH
    assert refusal(answered.value) == MISMATCH
    assert rows()[0][2:4] == (PRINT, claim.token)


def test_a_record_expiring_exactly_now_is_claimed_afresh_whatever_it_held():
    claim = claimed()
    service.keep(claim, Answer(5, b"gone", {"reason": "x"}))
    now = T0 + rules.KEPT_FOR

    fresh = claimed(now, fingerprint=OTHER_PRINT)

    assert rows() == [(HOLDER, KEY, OTHER_PRINT, fresh.token, now, now + rules.KEPT_FOR, None, None, None)]


def test_keys_are_per_holder_and_per_key():
    claim = claimed()
    other_holder = service.begin("admin", KEY, PRINT, T0)
    other_key = claimed(key="order-43")

    assert isinstance(other_holder, Claim) and other_holder.holder == "admin"
    assert len({claim.token, other_holder.token, other_key.token}) == 3
    assert [(r[0], r[1]) for r in rows()] == [("admin", KEY), (HOLDER, KEY), (HOLDER, "order-43")]


# --- keep, replay ------------------------------------------------------------------------------------


def test_an_answer_kept_is_replayed_with_its_code_body_and_metadata():
    claim = claimed()
    service.keep(claim, Answer(6, b"\x08\x06\x12\x03dup", {"retry-after": "3", "a-first": "yes"}))

    assert rows()[0][6:] == (6, b"\x08\x06\x12\x03dup", '{"a-first": "yes", "retry-after": "3"}')
    replay = service.begin(HOLDER, KEY, PRINT, T0 + rules.KEPT_FOR - US)  # the last instant it is kept
    assert replay == Answer(6, b"\x08\x06\x12\x03dup", {"a-first": "yes", "retry-after": "3"})
    assert type(replay.body) is bytes


def test_an_answer_without_metadata_is_kept_without_any_and_replayed_with_none():
    claim = claimed()
    service.keep(claim, Answer(0, b"ok"))

    assert rows()[0][6:] == (0, b"ok", None)
    assert service.begin(HOLDER, KEY, PRINT, T0 + US) == Answer(0, b"ok", {})
    assert Answer(0, b"ok").metadata == {}


def test_an_empty_answer_is_replayed_as_empty():
    claim = claimed()
    service.keep(claim, Answer(0, b""))

    replay = service.begin(HOLDER, KEY, PRINT, T0 + rules.RUNNING_LEASE + US)
    assert replay == Answer(0, b"", {})


def test_a_replay_does_not_claim_or_change_the_record():
    claim = claimed()
    service.keep(claim, Answer(0, b"ok"))
    before = rows()

    service.begin(HOLDER, KEY, PRINT, T0 + dt.timedelta(hours=1))

    assert rows() == before


# --- release ----------------------------------------------------------------------------------------


def test_a_released_key_runs_again():
    first = claimed()
    service.release(first)
    assert rows() == []

    second = claimed(T0 + US)
    assert second.token != first.token
    assert rows() == [(HOLDER, KEY, PRINT, second.token, T0 + US, T0 + US + rules.KEPT_FOR, None, None, None)]


def test_a_release_by_a_call_that_lost_its_key_leaves_the_new_claim():
    first = claimed()
    second = claimed(T0 + rules.RUNNING_LEASE)
    service.release(first)

    assert rows()[0][3] == second.token
    service.keep(second, Answer(0, b"mine"))
    assert rows()[0][6:] == (0, b"mine", None)


# --- purge_expired ----------------------------------------------------------------------------------


def test_the_purge_takes_records_expiring_exactly_now_and_none_later():
    claimed(T0 - US, key="a")  # expires a microsecond before the cutoff
    claimed(T0, key="b")  # exactly at it
    claimed(T0 + US, key="c")  # a microsecond after
    cutoff = T0 + rules.KEPT_FOR

    assert service.purge_expired(cutoff, 10) == 2
    assert [r[1] for r in rows()] == ["c"]
    assert service.purge_expired(cutoff, 10) == 0
    assert service.purge_expired(cutoff + US, 10) == 1
    assert rows() == []


def test_the_purge_takes_at_most_its_limit():
    for n in range(3):
        claimed(T0, key=f"k{n}")
    cutoff = T0 + rules.KEPT_FOR

    assert service.purge_expired(cutoff, 2) == 2
    assert len(rows()) == 1
    assert service.purge_expired(cutoff, 2) == 1
    assert rows() == []
