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
    assert headers["webhook-signature"] == standardwebhooks.Webhook(secret).sign(
        "msg_1", dt.datetime.fromtimestamp(now, dt.timezone.utc), body.decode()
    )
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)


def test_a_secret_needs_32_random_bytes():
    with pytest.raises(ValueError):
        rules.new_secret(b"short")


@pytest.mark.parametrize(
    "url, allow_private, ok",
    [
        ("https://hooks.example.com/billing", False, True),
        ("https://hooks.example.com:8443/b?x=1", False, True),
        ("http://hooks.example.com/billing", False, False),
        ("http://hooks.example.com/billing", True, False),  # http only to private addresses
        ("http://127.0.0.1:9000/hook", False, False),
        ("http://127.0.0.1:9000/hook", True, True),
        ("http://localhost/hook", True, True),
        ("http://10.1.2.3/hook", True, True),
        ("https://192.168.0.1/hook", False, False),  # a literal private address needs the setting
        ("https://169.254.169.254/latest/meta-data", False, False),
        ("https://user:pw@hooks.example.com/", False, False),
        ("ftp://hooks.example.com/", True, False),
        ("https://", False, False),
        ("https://hooks.example.com:99999/", False, False),
    ],
)
def test_url_rules(url, allow_private, ok):
    if ok:
        assert rules.validate_url(url, allow_private=allow_private) == url
    else:
        with pytest.raises(InvalidArgument) as error:
            rules.validate_url(url, allow_private=allow_private)
        assert [v.field for v in error.value.violations] == ["url"]


def test_event_types_are_checked_and_named_by_index():
    assert rules.validate_event_types(["invoice.paid", "invoice.paid", "quota.exhausted"]) == [
        "invoice.paid",
        "quota.exhausted",
    ]
    with pytest.raises(InvalidArgument) as error:
        rules.validate_event_types(["invoice.paid", "nope", "also.nope"])
    assert [v.field for v in error.value.violations] == ["event_types[1]", "event_types[2]"]
    assert rules.wants([], "invoice.sent") and not rules.wants(["invoice.paid"], "invoice.sent")


def test_retry_schedule_is_svix_then_failed():
    delays = [rules.next_attempt(n, T0, 0.0) - T0 for n in range(1, rules.MAX_ATTEMPTS)]
    assert delays == [
        dt.timedelta(seconds=5),
        dt.timedelta(minutes=5),
        dt.timedelta(minutes=30),
        dt.timedelta(hours=2),
        dt.timedelta(hours=5),
        dt.timedelta(hours=10),
        dt.timedelta(hours=10),
    ]
    assert rules.MAX_ATTEMPTS == 8 and rules.next_attempt(8, T0, 0.0) is None
    assert rules.next_attempt(1, T0, 1.0) - T0 == dt.timedelta(seconds=5.5)
    assert rules.next_attempt(1, T0, -5.0) - T0 == dt.timedelta(seconds=4.5)  # jitter is clamped


@pytest.mark.parametrize(
    "code, succeeded", [(200, True), (204, True), (299, True), (301, False), (302, False), (400, False), (500, False)]
)
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


def test_headers_are_exactly_the_standard_webhooks_set():
    secret = rules.new_secret(bytes(range(32)))
    assert rules.headers([secret], "msg_1", 1772366400, b"{}") == {
        "content-type": "application/json",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1772366400",
        "webhook-signature": rules.sign(secret, "msg_1", 1772366400, b"{}"),
    }


def test_during_a_rotation_both_signatures_are_sent_space_separated():
    new, old = rules.new_secret(bytes(range(32))), rules.new_secret(bytes(32))
    header = rules.signature_header([new, old], "msg_1", 1772366400, b"{}")
    assert header == rules.sign(new, "msg_1", 1772366400, b"{}") + " " + rules.sign(old, "msg_1", 1772366400, b"{}")


def test_a_short_secret_says_how_many_bytes_it_needs():
    with pytest.raises(ValueError, match="^a signing secret needs 32 random bytes$"):
        rules.new_secret(bytes(31))


CREDENTIALS = "url must not carry a user name or password"
BAD_PORT = "url must have a port from 1 to 65535"
NOT_PRIVATE = "url must not point at a loopback or private address (BILLING_WEBHOOKS_ALLOW_PRIVATE=1 allows it)"
NOT_HTTP = "url must be https:// (http:// only to loopback or private addresses with BILLING_WEBHOOKS_ALLOW_PRIVATE=1)"


@pytest.mark.parametrize(
    "url, allow_private, message",
    [
        (None, True, "url is required"),
        ("", True, "url is required"),
        ("  ", True, "url is required"),
        ("https://user@hooks.example.com/", True, CREDENTIALS),  # a user name alone is a credential too
        ("https://:pw@hooks.example.com/", True, CREDENTIALS),  # so is a password alone
        ("ftp://hooks.example.com/", True, "url must start with http:// or https://"),
        ("https://localhost/hook", False, NOT_PRIVATE),
        ("http://hooks.example.com/billing", True, NOT_HTTP),
        ("https://hooks.example.com:x/", True, BAD_PORT),
        ("https://hooks.example.com:0/", True, BAD_PORT),
        ("https://a b/", True, "url must not contain spaces or control characters"),
        ("https://hooks.example.com/\r\nx-injected: 1", True, "url must not contain spaces or control characters"),
        ("https://hooks.exa_mple-.com/", True, "url has an invalid host name 'hooks.exa_mple-.com'"),
        ("https:///path-only", True, "url must name a host"),
        ("https://" + "a" * 2100, True, "url must be at most 2048 characters, got 2108"),
    ],
)
def test_each_refused_url_says_why_on_the_url_field(url, allow_private, message):
    with pytest.raises(InvalidArgument) as error:
        rules.validate_url(url, allow_private=allow_private)
    assert error.value.message == message
    assert [(v.field, v.description) for v in error.value.violations] == [("url", message)]


@pytest.mark.parametrize(
    "url",
    [
        "https://a b/",
        "https://hooks.example.com\t/",
        "https://hooks.example.com/a\u2028b",
        "https://hooks.example.com/\x00",
        "https://-hooks.example.com/",
        "https://hooks..example.com/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:-1/",
        "https://" + "a" * 64 + ".example.com/",  # a label over 63 characters
        "https://" + ".".join(["abcdefghi"] * 26) + "/",  # a name over 253 characters
        "https://999.1.1.1/",
        "https://[::1/",
        "https://[example.com]/",
        "https://::1/",
        "https://hooks.example.com%0d%0a/",
        "https://hooks.exämple.com\u0301x\u200d/",
        "http://user:pw@10.0.0.1/",
    ],
)
def test_urls_that_can_never_be_dialled_are_refused_at_registration(url):
    with pytest.raises(InvalidArgument) as error:
        rules.validate_url(url, allow_private=True)
    assert error.value.reason == "INVALID_URL"
    assert [v.field for v in error.value.violations] == ["url"]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/billing?x=1#f",
        "https://HOOKS.Example.COM.:443/",
        "https://bücher.example/hook",  # IDNA
        "https://hooks_1.internal.example/",
        "https://[2606:4700::1111]:8443/hook",
        "https://8.8.8.8/hook",
        "https://" + ".".join(["abcdefghi"] * 25) + "/",  # 249 characters
    ],
)
def test_valid_urls_pass_the_syntax_rules(url):
    assert rules.validate_url(url, allow_private=False) == url


def test_an_unknown_event_type_is_quoted_up_to_64_characters_with_the_known_ones():
    long_type = "x" * 70
    with pytest.raises(InvalidArgument) as error:
        rules.validate_event_types([long_type])
    assert (error.value.message, error.value.reason) == ("unknown event types", "UNKNOWN_EVENT_TYPE")
    known = ", ".join(rules.EventType)
    assert [(v.field, v.description) for v in error.value.violations] == [
        ("event_types[0]", f"'{'x' * 64}' is not an event type ({known})")
    ]
    assert known.startswith("subscription.created, subscription.updated, ")


def test_jitter_above_one_is_clamped_to_a_tenth_more():
    assert rules.next_attempt(1, T0, 1.5) - T0 == dt.timedelta(seconds=5.5)


@pytest.mark.parametrize(
    "before, after, included, crossed",
    [
        (0, 1, 1, [80, 100]),  # one included request: the first one crosses both
        (100, 101, 101, [100]),  # 100 of 101 is under 100 %; the 101st reaches it
        (0, 100, 101, [80]),  # ... and 100 of 101 is past 80 % only
        (80, 81, 101, [80]),  # 80 of 101 is under 80 % (80.8 needed)
    ],
)
def test_thresholds_at_their_exact_boundaries(before, after, included, crossed):
    assert rules.crossed_thresholds(before, after, included) == crossed


@pytest.mark.parametrize(
    "code, error",
    [
        (299, None),
        (300, "HTTP 300: redirects are not followed"),
        (399, "HTTP 399: redirects are not followed"),
        (400, "HTTP 400"),
        (199, "HTTP 199"),
    ],
)
def test_a_failed_attempt_records_the_status_it_got(code, error):
    assert rules.judge(code) == rules.Outcome(code, error)
