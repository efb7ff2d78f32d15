"""Idempotency-Key rules, pure: valid keys, holders, fingerprints, kept answers, and what a record
found under a key means for a new call."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from server.domain import idempotency as rules
from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
MICRO = dt.timedelta(microseconds=1)


def test_the_contracts_names_and_bounds():
    assert (rules.HEADER, rules.REPLAYED_HEADER) == ("idempotency-key", "idempotent-replayed")
    assert rules.MAX_KEY_LENGTH == 255
    assert dt.timedelta(hours=24) == rules.KEPT_FOR
    assert dt.timedelta(minutes=5) == rules.RUNNING_LEASE


@pytest.mark.parametrize(
    "key", ["a", "x" * 255, " ", "~", "order-2026-03-01/42 retry=1", "".join(map(chr, range(32, 127)))]
)
def test_a_key_of_1_to_255_printable_ascii_characters_is_the_calls_key(key):
    assert rules.call_key([key]) == key


def test_a_call_without_the_header_has_no_key():
    assert rules.call_key([]) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "\x1f", "\x7f", "caf\u00e9", "new\nline"])
def test_any_other_key_is_refused_naming_the_header(key):
    with pytest.raises(InvalidArgument) as refused:
        rules.call_key([key])
    error = refused.value
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "INVALID_IDEMPOTENCY_KEY")
    assert error.message == (
        "header Idempotency-Key (gRPC metadata idempotency-key) must be 1 to 255 printable ASCII characters"
    )
    assert [(v.field, v.description) for v in error.violations] == [("Idempotency-Key", error.message)]


def test_a_key_given_twice_is_refused_even_if_both_are_equal():
    with pytest.raises(InvalidArgument) as refused:
        rules.call_key(["a", "a"])
    assert refused.value.message == "header Idempotency-Key (gRPC metadata idempotency-key) is given more than once"
    assert refused.value.reason == "INVALID_IDEMPOTENCY_KEY"
    assert refused.value.violations[0].field == "Idempotency-Key"


def test_keys_are_held_per_tenant_and_by_the_admins_together():
    assert rules.holder(Principal(key_id=1, scope=KeyScope.TENANT, tenant_id="acme")) == "tenant:acme"
    assert rules.holder(Principal(key_id=2, scope=KeyScope.ADMIN)) == "admin"
    assert rules.holder(Principal(key_id=3, scope=KeyScope.ADMIN, tenant_id="acme")) == "admin"


def test_the_fingerprint_is_a_sha256_of_the_method_and_the_request():
    assert (
        rules.fingerprint("/billing.v1.S/M", b"\x0a\x01x") == hashlib.sha256(b"/billing.v1.S/M\n\x0a\x01x").hexdigest()
    )
    assert rules.fingerprint("/a", b"b") != rules.fingerprint("/a", b"c") != rules.fingerprint("/d", b"c")


@pytest.mark.parametrize("code", ["INTERNAL", "UNAVAILABLE", "UNKNOWN"])
def test_a_server_error_is_not_kept(code):
    assert not rules.keeps(code)


@pytest.mark.parametrize("code", ["OK", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION"])
def test_any_other_answer_is_kept(code):
    assert rules.keeps(code)


def record(*, fingerprint="f", answered=False, claimed_at=NOW, expires_at=NOW + rules.KEPT_FOR) -> rules.Record:
    return rules.Record(fingerprint, answered, claimed_at, expires_at)


def test_the_same_request_after_its_answer_replays_it():
    assert rules.reuse(record(answered=True), "f", NOW) is rules.Reuse.REPLAY
    assert rules.reuse(record(answered=True), "f", NOW + rules.KEPT_FOR - MICRO) is rules.Reuse.REPLAY


def test_another_request_under_the_key_is_a_mismatch_answered_or_running():
    for found in (record(answered=True), record()):
        with pytest.raises(rules.KeyMismatch) as refused:
            rules.reuse(found, "g", NOW)
        error = refused.value
        assert (error.code, error.reason) == ("ALREADY_EXISTS", "IDEMPOTENCY_KEY_MISMATCH")
        assert error.message == (
            "this Idempotency-Key was used with a different request; use a new key for a new request"
        )


def test_the_same_request_while_the_first_runs_is_refused_as_in_use_until_its_lease_ends():
    with pytest.raises(rules.KeyInUse) as refused:
        rules.reuse(record(), "f", NOW + rules.RUNNING_LEASE - MICRO)
    error = refused.value
    assert (error.code, error.reason) == ("ABORTED", "IDEMPOTENCY_KEY_IN_USE")
    assert error.message == "a request with this Idempotency-Key is still running; retry once it has answered"
    assert rules.reuse(record(), "f", NOW + rules.RUNNING_LEASE) is rules.Reuse.CLAIM


def test_an_expired_record_is_claimed_afresh_whatever_it_held():
    expires = NOW + rules.KEPT_FOR
    for found in (record(answered=True), record(fingerprint="other"), record()):
        assert rules.reuse(found, "f", expires) is rules.Reuse.CLAIM
    with pytest.raises(rules.KeyMismatch):
        rules.reuse(record(fingerprint="other"), "f", expires - MICRO)
