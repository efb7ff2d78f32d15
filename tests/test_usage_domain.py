"""Usage rules (pure): batch validation, folding into counters, ranges, daily series, analytics."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.identifiers import ALPHABET
from server.domain.usage import (
    FUTURE_SKEW,
    MAX_BATCH,
    MAX_COUNT,
    MAX_ENDPOINT,
    MAX_EVENT_ID,
    Event,
    RawEvent,
    analytics,
    daily_series,
    date_range,
    first_of_each_id,
    hourly_totals,
    validate_batch,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def raw(event_id="e", endpoint="/v1/x", count=None, timestamp=None) -> RawEvent:
    return RawEvent(event_id, endpoint, count, timestamp)


def test_defaults_count_one_and_timestamp_now():
    [event] = validate_batch([raw()], NOW)
    assert (event.count, event.timestamp, event.endpoint) == (1, NOW, "/v1/x")


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        (raw(endpoint="  "), "events[1].endpoint", "is required"),
        (raw(count=0), "events[1].count", "must be between 1 and 1,000,000,000, got 0"),
        (raw(count=-3), "events[1].count", "must be between 1 and 1,000,000,000, got -3"),
        (
            raw(timestamp=NOW + FUTURE_SKEW + dt.timedelta(seconds=1)),
            "events[1].timestamp",
            f"{(NOW + FUTURE_SKEW + dt.timedelta(seconds=1)).isoformat()} is in the future",
        ),
        (
            raw(event_id="x" * (MAX_EVENT_ID + 1)),
            "events[1].event_id",
            f"must be at most {MAX_EVENT_ID} characters, got {MAX_EVENT_ID + 1}",
        ),
        (raw(event_id="req\r\n1"), "events[1].event_id", f"must use only the characters {ALPHABET}, got 'req\\r\\n1'"),
        (raw(endpoint="/" * (MAX_ENDPOINT + 1)), "events[1].endpoint", f"is longer than {MAX_ENDPOINT} characters"),
        (raw(count=MAX_COUNT + 1), "events[1].count", "must be between 1 and 1,000,000,000, got 1000000001"),
    ],
)
def test_one_invalid_event_rejects_the_batch_naming_index_and_field(bad, field, problem):
    with pytest.raises(InvalidArgument) as error:
        validate_batch([raw(), bad], NOW)
    assert error.value.violations[0].field == field
    assert error.value.message == f"{field} {problem}"


def test_an_event_of_another_type_counts_once_with_its_properties():
    typed = RawEvent("e", "", None, NOW, "llm_tokens", {"model": "m-large", "tokens": 120, "cached": False})
    api = RawEvent("f", "/v1/x", 2, NOW, "", {"region": "eu"})
    assert validate_batch([typed, api], NOW) == [
        Event(0, "e", "", 1, NOW, "llm_tokens", {"model": "m-large", "tokens": 120, "cached": False}),
        Event(1, "f", "/v1/x", 2, NOW, "api_request", {"region": "eu"}),
    ]
    [longest] = validate_batch([RawEvent("e", "", None, NOW, "t" * 64)], NOW)
    assert (longest.event_type, longest.properties) == ("t" * 64, {})


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        (RawEvent("e", "", None, NOW, "LLM"), "events[1].event_type", "must match [a-z0-9_.-]{1,64}"),
        (RawEvent("e", "", None, NOW, "t" * 65), "events[1].event_type", "must match [a-z0-9_.-]{1,64}"),
        (
            RawEvent("e", "/v1/x", None, NOW, "llm_tokens"),
            "events[1].endpoint",
            "applies to api_request events only, not llm_tokens",
        ),
        (
            RawEvent("e", "/v1/x", 1, NOW, "llm_tokens"),
            "events[1].endpoint",
            "applies to api_request events only, not llm_tokens",
        ),
        (
            RawEvent("e", "", 1, NOW, "llm_tokens"),
            "events[1].count",
            "applies to api_request events only, not llm_tokens",
        ),
        (
            RawEvent("e", "", None, NOW, "llm_tokens", {"model": "m" * 257}),
            "events[1].properties.model",
            "is longer than 256 characters",
        ),
    ],
)
def test_an_invalid_typed_event_rejects_the_batch_naming_index_and_field(bad, field, problem):
    with pytest.raises(InvalidArgument) as error:
        validate_batch([raw(), bad], NOW)
    assert error.value.violations == (FieldViolation(field, f"{field} {problem}"),)


def test_each_limit_itself_is_accepted():
    """Exactly at every bound (one more is refused above): the longest id and endpoint, the largest count."""
    [event] = validate_batch([raw("x" * MAX_EVENT_ID, "/" * MAX_ENDPOINT, MAX_COUNT, NOW)], NOW)
    assert event == Event(0, "x" * MAX_EVENT_ID, "/" * MAX_ENDPOINT, MAX_COUNT, NOW)


def test_events_keep_their_batch_index_and_id():
    events = validate_batch([raw("a"), raw("b", " /v1/y ", 3, NOW - dt.timedelta(hours=1))], NOW)
    assert events == [Event(0, "a", "/v1/x", 1, NOW), Event(1, "b", "/v1/y", 3, NOW - dt.timedelta(hours=1))]


def test_small_clock_skew_is_accepted():
    assert validate_batch([raw(timestamp=NOW + FUTURE_SKEW)], NOW)[0].timestamp == NOW + FUTURE_SKEW


@pytest.mark.parametrize("size", [0, MAX_BATCH + 1])
def test_batch_size_bounds(size):
    with pytest.raises(InvalidArgument) as error:
        validate_batch([raw(event_id=str(i)) for i in range(size)], NOW)
    assert error.value.violations[0].field == "events"
    assert f"got {size}" in error.value.message


def test_a_full_batch_is_accepted():
    assert len(validate_batch([raw(event_id=str(i)) for i in range(MAX_BATCH)], NOW)) == MAX_BATCH


def test_repeats_within_a_batch_keep_the_first():
    events = [Event(0, "a", "/x", 1, NOW), Event(1, "b", "/x", 2, NOW), Event(2, "a", "/y", 5, NOW)]
    assert [e.index for e in first_of_each_id(events)] == [0, 1]


def test_hourly_totals_fold_by_clock_hour_and_endpoint():
    events = [
        Event(0, "a", "/x", 2, NOW),
        Event(1, "b", "/x", 3, NOW.replace(minute=59)),
        Event(2, "c", "/y", 1, NOW),
        Event(3, "d", "/x", 4, NOW + dt.timedelta(hours=1)),
    ]
    hour = NOW.replace(minute=0)
    assert hourly_totals(events, UTC) == {(hour, "/x"): 5, (hour, "/y"): 1, (hour + dt.timedelta(hours=1), "/x"): 4}


def test_date_range_defaults_and_errors():
    first, last = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
    assert date_range("", "", first, last) == (first, last)
    assert date_range("2026-11-03", "", first, last) == (dt.date(2026, 11, 3), last)
    for start, end, field in [
        ("2026-11-31", "", "start_date"),
        ("20261101", "", "start_date"),
        ("2026-11-10", "2026-11-09", "start_date"),
        ("2025-01-01", "2026-01-02", "end_date"),
        ("", "2026-13-01", "end_date"),
    ]:
        with pytest.raises(InvalidArgument) as error:
            date_range(start, end, first, last)
        assert error.value.violations[0].field == field
        assert error.value.message.startswith(field + " ")
    assert date_range("2026-11-10", "2026-11-10", first, last) == (dt.date(2026, 11, 10),) * 2  # one day
    assert date_range("2025-01-01", "2026-01-01", first, last)[1] == dt.date(2026, 1, 1)  # exactly 366 days


def test_daily_series_is_zero_filled_oldest_first():
    hourly = {dt.datetime(2026, 11, 2, 5, tzinfo=UTC): 3, dt.datetime(2026, 11, 2, 23, tzinfo=UTC): 4}
    assert daily_series(dt.date(2026, 11, 1), dt.date(2026, 11, 3), hourly, UTC) == [
        (dt.date(2026, 11, 1), 0),
        (dt.date(2026, 11, 2), 7),
        (dt.date(2026, 11, 3), 0),
    ]


def test_analytics_peaks_average_and_top_endpoints():
    h = lambda day, hour: dt.datetime(2026, 11, day, hour, tzinfo=UTC)  # noqa: E731
    hourly = {h(1, 1): 5, h(1, 2): 5, h(2, 3): 10, h(3, 0): 2, h(4, 9): 10}
    endpoints = {f"/e{i}": i for i in range(12)} | {"/b": 11, "/a": 11}
    result = analytics(dt.date(2026, 11, 1), dt.date(2026, 11, 4), hourly, endpoints, UTC)
    assert result.total_requests == 32
    assert result.average_daily_requests == 8
    assert result.peak_day == (dt.date(2026, 11, 1), 10)  # the earliest of equal days
    assert result.peak_hour == (h(2, 3), 10)  # the earliest of equal hours
    assert result.top_endpoints[:3] == [("/a", 11), ("/b", 11), ("/e11", 11)]
    assert len(result.top_endpoints) == 10


def test_analytics_of_nothing_has_no_peaks():
    result = analytics(dt.date(2026, 11, 1), dt.date(2026, 11, 1), {}, {}, UTC)
    assert (result.total_requests, result.peak_day, result.peak_hour, result.top_endpoints) == (0, None, None, [])
