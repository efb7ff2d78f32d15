"""Gateway rules and the quota cap, pure and in-process: keys from headers, endpoint names,
which access-log entries are usage, the TTL cache's bound (injected clock), and a quota counted
atomically with the window."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from calls import fire
from server.domain.gateway import (
    LoggedRequest,
    MalformedUsage,
    endpoint,
    forwarded,
    usage_events,
    usage_report,
)
from server.domain.ttl_cache import TtlCache
from server.ratelimit.algorithm import Quota
from server.ratelimit.memory import InProcessRateLimiter

T0 = dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("GET", "/v1/items/42?expand=all", "GET /v1/items/{id}"),
        ("post", "/v1/orders/3f2b6c1e-8a4d-4e1f-9b2a-0c1d2e3f4a5b/lines", "POST /v1/orders/{id}/lines"),
        ("GET", "/v1/blobs/0123456789abcdef0123", "GET /v1/blobs/{id}"),
        ("GET", "/v1/users/alice", "GET /v1/users/alice"),
        ("GET", "/v1/hex/abcdef", "GET /v1/hex/abcdef"),  # short hex is a word, not an id
        ("GET", "/v2/items/", "GET /v2/items/"),  # "v2" is not all digits
        ("DELETE", "/", "DELETE /"),
        ("GET", "?q=1", "GET /"),
    ],
)
def test_endpoint_drops_the_query_and_names_ids(method, path, expected):
    assert endpoint(method, path) == expected


def test_endpoint_is_bounded_by_the_usage_column():
    assert len(endpoint("GET", "/" + "x" * 2000)) == 512


@pytest.mark.parametrize(
    "details, metered",
    [
        ("via_upstream", True),  # any status the upstream answered, 5xx too
        ("upstream_reset_after_response_started{remote_reset}", True),  # it answered, then reset
        # Envoy's own replies: never usage, although these were logged with an upstream address.
        ("filter_removed_required_request_headers{invalid_header_value_for:_x-tenant-id}", False),
        ("upstream_reset_before_response_started{connection_failure}", False),
        ("upstream_reset_before_response_started{remote_reset}", False),
        ("no_healthy_upstream", False),
        ("response_timeout", False),
        ("ext_authz_denied", False),
        ("", False),
    ],
)
def test_only_an_answer_from_the_upstream_is_usage(details, metered):
    assert forwarded(details) is metered


def logged(subscription_id="sub_1", request_id="r1", method="GET", path="/v1/items/7", forwarded=True):
    return LoggedRequest(subscription_id, request_id, method, path, T0, forwarded)


def test_usage_events_only_admitted_and_forwarded_requests_per_subscription():
    events = usage_events(
        [
            logged(request_id="a"),
            logged(request_id="b", path="/v1/items/8?x=1"),
            logged(subscription_id="", request_id="denied"),
            logged(request_id="failed", forwarded=False),
            logged(subscription_id="sub_2", request_id="c", method="POST", path="/v1/items"),
        ]
    )
    assert {sub: [(e.event_id, e.endpoint, e.count, e.timestamp) for e in batch] for sub, batch in events.items()} == {
        "sub_1": [("a", "GET /v1/items/{id}", 1, T0), ("b", "GET /v1/items/{id}", 1, T0)],
        "sub_2": [("c", "POST /v1/items", 1, T0)],
    }


def test_ttl_cache_serves_within_the_bound_and_reloads_after_it():
    clock = [100.0]
    cache = TtlCache(2.0, clock=lambda: clock[0])
    loads = []

    def load():
        loads.append(clock[0])
        return len(loads)

    assert cache.get("k", load) == 1
    clock[0] = 101.99
    assert cache.get("k", load) == 1
    clock[0] = 102.0  # a value is never served `ttl` seconds or more after it was loaded
    assert cache.get("k", load) == 2
    assert loads == [100.0, 102.0]


def test_ttl_cache_does_not_keep_failures_and_stays_bounded():
    cache = TtlCache(2.0, max_entries=3, clock=lambda: 0.0)
    with pytest.raises(KeyError):
        cache.get("k", lambda: {}["missing"])
    assert cache.get("k", lambda: "loaded") == "loaded"
    for key in range(10):
        cache.get(key, lambda key=key: key)
    # Full at the 3rd entry: the expired ones go, and with none expired (the clock stands) all of them.
    assert set(cache._entries) == {8, 9}


def quota(included=30, floor=0, name="sub_1:0", expires_in=3600) -> Quota:
    return Quota(name=name, included=included, floor=floor, expires_in=expires_in)


def test_quota_cap_is_exact_under_concurrency_and_seeded_from_recorded_usage():
    limiter = InProcessRateLimiter()
    assert fire(limiter, "gateway:t", 1000, calls=200, quota=quota(floor=10)) == 20
    refused = limiter.hit("gateway:t", 1000, quota=quota(floor=10))
    assert (refused.allowed, refused.quota_exhausted) == (False, True)
    assert refused.remaining == 1000 - 20  # a refusal consumes nothing from the window


def test_quota_floor_wins_over_a_lower_counter_and_the_window_still_applies():
    limiter = InProcessRateLimiter()
    assert limiter.hit("t", 100, 0.0, quota=quota(included=5)).allowed
    # Recorded usage (e.g. tracked through the API) above the counter is what counts.
    assert not limiter.hit("t", 100, 1.0, quota=quota(included=5, floor=5)).allowed
    other = quota(name="other")
    capped_by_window = limiter.hit("u", 1, 0.0, quota=other), limiter.hit("u", 1, 0.0, quota=other)
    assert [d.allowed for d in capped_by_window] == [True, False]
    assert not capped_by_window[1].quota_exhausted


def test_quota_counter_expires_with_its_period():
    limiter = InProcessRateLimiter()
    assert limiter.hit("t", 100, 0.0, quota=quota(included=1, expires_in=10)).allowed
    assert not limiter.hit("t", 100, 5.0, quota=quota(included=1, expires_in=10)).allowed
    assert limiter.hit("t", 100, 10.0, quota=quota(included=1, expires_in=10)).allowed


def test_gateway_settings_from_the_environment():
    from server.config import ConfigError, Settings

    defaults = Settings.from_env({})
    assert (defaults.gateway_port, defaults.upstream_url, defaults.demo_upstream_port) == (8000, None, 8081)
    assert defaults.upstream_address() == ("127.0.0.1", 8081)
    custom = Settings.from_env({"BILLING_GATEWAY_PORT": "9000", "BILLING_UPSTREAM_URL": "http://api.internal:7000"})
    assert (custom.gateway_port, custom.upstream_address()) == (9000, ("api.internal", 7000))
    assert Settings.from_env({"BILLING_UPSTREAM_URL": "http://api.internal"}).upstream_address() == ("api.internal", 80)
    for bad in ("api.internal:7000", "https://api.internal", "http://api.internal:x", "http://h:1/prefix"):
        with pytest.raises(ConfigError, match="BILLING_UPSTREAM_URL"):
            Settings.from_env({"BILLING_UPSTREAM_URL": bad})
    with pytest.raises(ConfigError, match="BILLING_DEMO_UPSTREAM_PORT"):
        Settings.from_env({"BILLING_DEMO_UPSTREAM_PORT": "99999"})


def test_metering_retries_a_failed_batch_with_capped_backoff_then_gives_up(monkeypatch, caplog):
    from server.transport import gateway as transport

    calls, naps = [], []
    outcomes = iter([ConnectionError("database gone"), ConnectionError("still gone"), 7])

    def meter(requests, now):
        calls.append(len(requests))
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(transport.gateway, "meter", meter)
    monkeypatch.setattr(transport.db, "session", contextlib.nullcontext)
    monkeypatch.setattr(transport.time, "sleep", naps.append)
    transport._meter([logged()])
    assert (calls, naps) == ([1, 1, 1], [0.2, 0.4])

    outcomes = iter([ConnectionError("gone for good")] * transport.METER_ATTEMPTS)
    naps.clear()
    transport._meter([logged(), logged(request_id="r2")])
    assert len(naps) == transport.METER_ATTEMPTS - 1 and max(naps) == transport.METER_BACKOFF_CAP_SECONDS
    assert 25 <= sum(naps) <= 40  # the outage the usage survives
    assert "lost a batch of 2 requests" in caplog.text


def test_endpoint_drops_a_fragment():
    assert endpoint("get", "/v1/items#top") == "GET /v1/items"
    assert endpoint("get", "/v1/items?a=1#top") == "GET /v1/items"
    assert endpoint("get", "/v1/items#a#b") == "GET /v1/items"  # the first "#" ends the path
    assert endpoint("get", "/v1/items?a=1?b=2") == "GET /v1/items"  # and the first "?"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def loads(cache: TtlCache, key: str) -> bool:
    """Whether reading `key` had to load it."""
    loaded = []
    cache.get(key, lambda: loaded.append(key) or key)
    return bool(loaded)


def test_ttl_cache_full_prunes_expired_entries_first_and_clears_only_if_still_full():
    clock = Clock()
    cache = TtlCache(10, max_entries=2, clock=clock)
    loads(cache, "a")  # expires at 10
    clock.now = 5
    loads(cache, "b")  # expires at 15
    clock.now = 10  # "a" expires exactly now: pruned, "b" stays
    loads(cache, "c")
    assert not loads(cache, "b")
    loads(cache, "d")  # full of live entries ("b", "c"): cleared, then "d"
    assert loads(cache, "b")


def test_ttl_cache_default_bound_is_ten_thousand_entries():
    clock = Clock()
    cache = TtlCache(60, clock=clock)
    for n in range(10_000):
        loads(cache, f"k{n}")
    assert not loads(cache, "k0")
    loads(cache, "one-more")  # the 10,001st entry clears the full cache
    assert loads(cache, "k1")


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            "llm_tokens; model=m-large; input_tokens=120; output_tokens=480",
            ("llm_tokens", {"model": "m-large", "input_tokens": "120", "output_tokens": "480"}),
        ),
        ("llm_tokens", ("llm_tokens", {})),
        ("gpu.seconds;seconds = 1.5 ", ("gpu.seconds", {"seconds": "1.5"})),
        ("x; note=a=b", ("x", {"note": "a=b"})),
    ],
)
def test_usage_report_is_an_event_type_and_string_properties(header, expected):
    assert usage_report(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "api_request; count=5",  # the gateway's own event type is not the upstream's to report
        "Bad Type; a=1",
        "llm_tokens; model",
        "llm_tokens; =1",
        "llm_tokens; a=1; a=2",
        "llm_tokens; a=1;",
        "llm_tokens; bad key=1",
        "llm_tokens; a=" + "x" * 257,
        "x" * 65,
    ],
)
def test_a_malformed_usage_report_is_refused(header):
    with pytest.raises(MalformedUsage):
        usage_report(header)


def test_usage_events_carry_the_cost_and_the_reported_usage_with_its_own_id():
    logged = LoggedRequest(
        "sub_a", "r1", "POST", "/v1/llm/9", T0, True, cost=3, reported=("llm_tokens", {"input_tokens": "2"})
    )
    (first, second) = usage_events([logged])["sub_a"]
    assert (first.event_id, first.count, first.endpoint, first.event_type) == ("r1", 3, "POST /v1/llm/{id}", "")
    assert (second.event_id, second.event_type, dict(second.properties)) == (
        "r1:usage",
        "llm_tokens",
        {"input_tokens": "2"},
    )
    assert (second.count, second.endpoint, second.timestamp) == (None, "", T0)


@pytest.mark.parametrize(
    "header, message",
    [
        ("", "event type '' is not [a-z0-9_.-]{1,64} (nor api_request)"),
        ("llm_tokens; model", "'model' is not a single <property>=<value>"),
        ("llm_tokens; bad key=1", "properties key 'bad key' must match [A-Za-z0-9_.-]{1,64}"),
        ("llm_tokens; a=" + "x" * 257, "properties.a is longer than 256 characters"),
    ],
)
def test_a_malformed_usage_report_says_why(header, message):
    with pytest.raises(MalformedUsage) as refused:
        usage_report(header)
    assert str(refused.value) == message
