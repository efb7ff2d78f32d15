"""The pure webhook rules: signing (checked against PyPI's standardwebhooks), URL safety, the
retry schedule, thresholds and the rotation window."""

from __future__ import annotations

import datetime as dt

import pytest
import standardwebhooks

from server.domain import webhooks as rules
from server.domain.errors import InvalidArgument

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_signature_is_what_standard_webhooks_verifies():
    secret = rules.new_secret(bytes(range(32)))
    assert secret == "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    body = b'{"id":"msg_1","type":"invoice.paid"}'
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    headers = rules.headers([secret], "msg_1", now, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"id": "msg_1", "type": "invoice.paid"}
    assert headers["webhook-signature"] == standardwebhooks.Webhook(secret).sign("msg_1", dt.datetime.fromtimestamp(
        now, dt.timezone.utc), body.decode())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)


def test_a_secret_needs_32_random_bytes():
    with pytest.raises(ValueError):
        rules.new_secret(b"short")


@pytest.mark.parametrize("url, allow_private, ok", [
    ("https://hooks.example.com/billing", False, True),
    ("https://hooks.example.com:8443/b?x=1", False, True),
    ("http://hooks.example.com/billing", False, False),
    ("http://hooks.example.com/billing", True, False),    # http only to private addresses
    ("http://127.0.0.1:9000/hook", False, False),
    ("http://127.0.0.1:9000/hook", True, True),
    ("http://localhost/hook", True, True),
    ("http://10.1.2.3/hook", True, True),
    ("https://192.168.0.1/hook", False, False),           # a literal private address needs the setting
    ("https://169.254.169.254/latest/meta-data", False, False),
    ("https://user:pw@hooks.example.com/", False, False),
    ("ftp://hooks.example.com/", True, False),
    ("https://", False, False),
    ("https://hooks.example.com:99999/", False, False),
])
def test_url_rules(url, allow_private, ok):
    if ok:
        assert rules.validate_url(url, allow_private=allow_private) == url
    else:
        with pytest.raises(InvalidArgument) as error:
            rules.validate_url(url, allow_private=allow_private)
        assert [v.field for v in error.value.violations] == ["url"]


def test_event_types_are_checked_and_named_by_index():
    assert rules.validate_event_types(["invoice.paid", "invoice.paid", "quota.exhausted"]) == [
        "invoice.paid", "quota.exhausted"]
    with pytest.raises(InvalidArgument) as error:
        rules.validate_event_types(["invoice.paid", "nope", "also.nope"])
    assert [v.field for v in error.value.violations] == ["event_types[1]", "event_types[2]"]
    assert rules.wants([], "invoice.sent") and not rules.wants(["invoice.paid"], "invoice.sent")


def test_retry_schedule_is_svix_then_failed():
    delays = [rules.next_attempt(n, T0, 0.0) - T0 for n in range(1, rules.MAX_ATTEMPTS)]
    assert delays == [dt.timedelta(seconds=5), dt.timedelta(minutes=5), dt.timedelta(minutes=30),
                      dt.timedelta(hours=2), dt.timedelta(hours=5), dt.timedelta(hours=10), dt.timedelta(hours=10)]
    assert rules.MAX_ATTEMPTS == 8 and rules.next_attempt(8, T0, 0.0) is None
    assert rules.next_attempt(1, T0, 1.0) - T0 == dt.timedelta(seconds=5.5)
    assert rules.next_attempt(1, T0, -5.0) - T0 == dt.timedelta(seconds=4.5)  # jitter is clamped


@pytest.mark.parametrize("code, succeeded", [(200, True), (204, True), (299, True), (301, False), (302, False),
                                             (400, False), (500, False)])
def test_only_2xx_succeeds_and_redirects_are_failures(code, succeeded):
    outcome = rules.judge(code)
    assert outcome.succeeded is succeeded and outcome.status_code == code
    assert rules.Outcome(None, "timed out").succeeded is False


def test_thresholds_crossed_once():
    assert rules.crossed_thresholds(0, 79, 100) == []
    assert rules.crossed_thresholds(79, 80, 100) == [80]
    assert rules.crossed_thresholds(80, 99, 100) == []
    assert rules.crossed_thresholds(0, 150, 100) == [80, 100]
    assert rules.crossed_thresholds(100, 200, 100) == []
    assert rules.crossed_thresholds(0, 10, 0) == []


def test_previous_secret_signs_for_24_hours_after_rotation():
    expires = T0 + rules.PREVIOUS_SECRET_GRACE
    assert rules.live_secrets("new", "old", expires, T0) == ["new", "old"]
    assert rules.live_secrets("new", "old", expires, expires) == ["new"]
    assert rules.live_secrets("new", None, None, T0) == ["new"]
