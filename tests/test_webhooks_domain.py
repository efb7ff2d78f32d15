"""The pure webhook rules: signing (checked against PyPI's standardwebhooks), URL safety, the
retry schedule, thresholds and the rotation window."""

from __future__ import annotations

import datetime as dt
import ipaddress

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


LISTED = frozenset({rules.target("127.0.0.1", 9000), rules.target("10.1.2.3", 80), rules.target("::1", 9001)})


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://hooks.example.com/billing", True),
        ("https://hooks.example.com:8443/b?x=1", True),
        ("https://93.184.215.14/billing", True),  # a public address
        ("http://hooks.example.com/billing", False),  # http only to a listed address:port
        ("http://93.184.215.14/billing", False),
        ("http://127.0.0.1:9000/hook", True),  # listed
        ("https://127.0.0.1:9000/hook", True),
        ("http://127.0.0.1:9002/hook", False),  # the address is listed with another port only
        ("http://localhost:9000/hook", True),  # localhost is 127.0.0.1 (listed) or ::1
        ("http://localhost/hook", False),
        ("http://10.1.2.3/hook", True),
        ("http://[::1]:9001/hook", True),
        ("https://192.168.0.1/hook", False),  # a literal private address needs the setting
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://user:pw@hooks.example.com/", False),
        ("ftp://hooks.example.com/", False),
        ("https://", False),
        ("https://hooks.example.com:99999/", False),
    ],
)
def test_url_rules(url, ok):
    if ok:
        assert rules.validate_url(url, allowed=LISTED) == url
    else:
        with pytest.raises(InvalidArgument) as error:
            rules.validate_url(url, allowed=LISTED)
        assert [v.field for v in error.value.violations] == ["url"]


# Every spelling of "this machine" or "this network" a tenant might try, none listed: each 400 on `url`.
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:9000/",  # 127.0.0.1:9000 is listed, [::1]:9000 is not
        "http://127.1:9000/",  # short IPv4 forms reach 127.0.0.1 through any resolver
        "http://127.0.1:9000/",
        "http://2130706433:9000/",  # decimal
        "http://0x7f000001:9000/",  # hex
        "http://0x7f.0.0.1:9000/",
        "http://0177.0.0.1:9000/",  # octal
        "http://127.0.0.1.:9000/",  # trailing dot
        "https://0.0.0.0:8443/",  # "this host"
        "https://[::]:8443/",
        "http://localhost:9901/quitquitquit",  # an unlisted port of this host
        "https://localhost/",
        "https://admin.localhost/",
        "https://[::ffff:127.0.0.1]:9901/",  # IPv4-mapped IPv6
        "https://[::ffff:7f00:1]:9901/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::127.0.0.1]/",  # IPv4-compatible IPv6
        "https://[fe80::1]/",
        "https://[fc00::1]/",
        "https://100.64.0.1/",  # shared address space
        "https://172.16.0.1/",
    ],
)
def test_hostile_urls_to_this_host_or_network_are_refused(url):
    with pytest.raises(InvalidArgument) as error:
        rules.validate_url(url, allowed=LISTED)
    assert [v.field for v in error.value.violations] == ["url"]


def test_an_ipv4_mapped_address_is_the_ipv4_address_it_maps():
    assert rules.validate_url("http://[::ffff:127.0.0.1]:9000/", allowed=LISTED)
    assert rules.target("::ffff:127.0.0.1", 9000) == ("127.0.0.1", 9000)
    assert rules.may_call("::ffff:127.0.0.1", 9000, "http", LISTED)
    assert not rules.may_call("::ffff:127.0.0.1", 9901, "https", LISTED)
    assert rules.may_call("::ffff:93.184.215.14", 443, "https", frozenset())


def test_a_zone_is_dropped_from_an_address_before_it_is_compared():
    assert rules.target("fe80::1%eth0", 8080) == ("fe80::1", 8080)
    assert rules.may_call("fe80::1%eth0", 8080, "http", frozenset({("fe80::1", 8080)}))


def test_only_the_low_32_bits_make_an_ipv6_address_ipv4_compatible():
    assert not rules.is_public(ipaddress.ip_address("::8.8.8.8"))
    assert rules.is_public(ipaddress.ip_address("::1:0:0"))  # 2^32: just past ::/96
    assert rules.is_public(ipaddress.ip_address("2606:4700::1111"))


@pytest.mark.parametrize(
    "url, listed",
    [
        ("https://10.0.0.1/", ("10.0.0.1", 443)),
        ("http://10.0.0.1/", ("10.0.0.1", 80)),
        ("https://10.0.0.1:80/", ("10.0.0.1", 80)),
    ],
)
def test_a_url_without_a_port_reaches_its_schemes_default_port(url, listed):
    assert rules.validate_url(url, allowed=frozenset({listed})) == url
    other = (listed[0], 443 if listed[1] == 80 else 80)
    with pytest.raises(InvalidArgument) as error:
        rules.validate_url(url, allowed=frozenset({other}))
    assert error.value.message == rules.NOT_PRIVATE


def test_nothing_private_is_callable_without_the_list():
    for address in ("127.0.0.1", "::1", "0.0.0.0", "10.0.0.1", "169.254.169.254", "fe80::1%eth0", "::7f00:1"):
        assert not rules.may_call(address, 443, "https", frozenset()), address
    assert rules.may_call("93.184.215.14", 443, "https", frozenset())
    assert not rules.may_call("93.184.215.14", 80, "http", frozenset())


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
NOT_PRIVATE = "url must not point at a loopback or private address:port that BILLING_WEBHOOKS_ALLOW does not list"
NOT_HTTP = "url must be https:// (http:// only to an address:port listed in BILLING_WEBHOOKS_ALLOW)"
NOT_DOTTED = "url host '127.1' is not an IPv4 address in dotted decimal (like 192.0.2.10)"


@pytest.mark.parametrize(
    "url, message",
    [
        (None, "url is required"),
        ("", "url is required"),
        ("  ", "url is required"),
        ("https://user@hooks.example.com/", CREDENTIALS),  # a user name alone is a credential too
        ("https://:pw@hooks.example.com/", CREDENTIALS),  # so is a password alone
        ("ftp://hooks.example.com/", "url must start with http:// or https://"),
        ("https://localhost/hook", NOT_PRIVATE),
        ("http://127.0.0.1:9002/hook", NOT_PRIVATE),
        ("http://127.1:9000/hook", NOT_DOTTED),
        ("http://hooks.example.com/billing", NOT_HTTP),
        ("http://93.184.215.14/billing", NOT_HTTP),
        ("https://hooks.example.com:x/", BAD_PORT),
        ("https://hooks.example.com:0/", BAD_PORT),
        ("https://a b/", "url must not contain spaces or control characters"),
        ("https://hooks.example.com/\r\nx-injected: 1", "url must not contain spaces or control characters"),
        ("https://hooks.exa_mple-.com/", "url has an invalid host name 'hooks.exa_mple-.com'"),
        # A host is quoted up to 64 characters, never whole.
        ("https://-" + "a" * 100 + "/", "url has an invalid host name " + repr(("-" + "a" * 100)[:64])),
        ("https:///path-only", "url must name a host"),
        ("https://" + "a" * 2100, "url must be at most 2048 characters, got 2108"),
    ],
)
def test_each_refused_url_says_why_on_the_url_field(url, message):
    with pytest.raises(InvalidArgument) as error:
        rules.validate_url(url, allowed=LISTED)
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
        rules.validate_url(url, allowed=LISTED)
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
    assert rules.validate_url(url, allowed=frozenset()) == url


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
