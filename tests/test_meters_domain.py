"""Meters (pure): exact decimals, meter definitions, event properties, matching and values."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import decimals
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.meters import (
    MAX_PROPERTIES,
    MAX_PROPERTIES_JSON,
    REQUESTS,
    Aggregation,
    Cell,
    Contribution,
    Counted,
    Meter,
    Place,
    Row,
    Window,
    Windows,
    canonical,
    cell_rows,
    contributions,
    counted_rows,
    distinct_rows,
    fold,
    matches,
    merge,
    validate_meter,
    validate_properties,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 1, tzinfo=UTC)


# --- exact decimals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, nanos",
    [
        ("0", 0),
        ("12.5", 12_500_000_000),
        ("-3", -3_000_000_000),
        ("+7", 7_000_000_000),
        ("0.000000001", 1),
        ("1.5000000000", 1_500_000_000),
        ("999999999999999.999999999", 10**24 - 1),
        ("007", 7_000_000_000),
    ],
)
def test_decimal_text_is_read_exactly(text, nanos):
    assert decimals.parse(text) == nanos


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "is not a decimal number"),
        ("1e3", "is not a decimal number"),
        (" 1", "is not a decimal number"),
        ("1.", "is not a decimal number"),
        (".5", "is not a decimal number"),
        ("1,000", "is not a decimal number"),
        ("NaN", "is not a decimal number"),
        ("0.0000000001", "has more than 9 digits after the point"),
        ("1000000000000000", "is too large: |value| must be below 10^15"),
        ("-1000000000000000", "is too large: |value| must be below 10^15"),
    ],
)
def test_decimal_text_outside_the_rules_is_refused(text, problem):
    with pytest.raises(decimals.NotADecimal) as error:
        decimals.parse(text)
    assert str(error.value) == f"{text!r} {problem}"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1" * 20 + "x" * 30, "is not a decimal number"),
        ("0." + "1" * 49, "has more than 9 digits after the point"),
        ("9" * 50, "is too large: |value| must be below 10^15"),
    ],
)
def test_a_long_refused_text_is_quoted_by_its_first_40_characters(text, problem):
    with pytest.raises(decimals.NotADecimal) as error:
        decimals.parse(text)
    assert str(error.value) == f"{text[:40]!r} {problem}"


def test_trailing_zeros_past_the_ninth_digit_are_not_digits_past_it():
    assert decimals.parse("0.1234567890000") == 123_456_789
    assert decimals.parse("-2.000000000000000000") == -2 * 10**9


@pytest.mark.parametrize(
    "number, nanos",
    [
        (0.1, 100_000_000),
        (12, 12 * 10**9),
        (-2.5, -2_500_000_000),
        (1e-07, 100),
        (-1e-07, -100),
        (1e-09, 1),
        (-1e-09, -1),
        (1.5e-08, 15),
        (-1.25e-07, -125),
        (1e-05, 10_000),
        (-1.5e14, -150_000_000_000_000 * 10**9),
        (1.5e14, 150_000_000_000_000 * 10**9),
        (123456789.123, 123456789_123_000_000),
    ],
)
def test_a_json_number_is_its_shortest_round_trip_decimal(number, nanos):
    assert decimals.from_number(number) == nanos


@pytest.mark.parametrize(
    "number, message",
    [
        (1e-10, "'1e-10' has more than 9 digits after the point"),
        (-1.5e-09, "'-1.5e-09' has more than 9 digits after the point"),
        (1.1e-09, "'1.1e-09' has more than 9 digits after the point"),
        (1e15, "'1000000000000000.0' is too large: |value| must be below 10^15"),
        (-1e16, "'-1e+16' is too large: |value| must be below 10^15"),
        (10**15, "'1000000000000000' is too large: |value| must be below 10^15"),
        (-(10**15), "'-1000000000000000' is too large: |value| must be below 10^15"),
        (float("nan"), "nan is not a finite number"),
        (float("inf"), "inf is not a finite number"),
        (True, "a boolean is not a number"),
        (0.1 + 0.2, "'0.30000000000000004' has more than 9 digits after the point"),
    ],
)
def test_numbers_outside_the_rules_are_refused(number, message):
    with pytest.raises(decimals.NotADecimal) as error:
        decimals.from_number(number)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "nanos, text",
    [
        (0, "0"),
        (12_500_000_000, "12.5"),
        (-1, "-0.000000001"),
        (10**24 - 1, "999999999999999.999999999"),
        (-3 * 10**9, "-3"),
    ],
)
def test_nanos_format_as_the_shortest_exact_decimal(nanos, text):
    assert decimals.format_nanos(nanos) == text


@given(st.integers(min_value=-(decimals.LIMIT - 1), max_value=decimals.LIMIT - 1))
def test_format_and_parse_round_trip(nanos):
    assert decimals.parse(decimals.format_nanos(nanos)) == nanos


# --- meter definitions -------------------------------------------------------------------


def meter(**overrides) -> Meter:
    fields = dict(
        meter_id="input_tokens",
        name="Input tokens",
        event_type="llm_tokens",
        aggregation="SUM",
        value_property="input_tokens",
        group_by=["model"],
        filter_={},
    )
    fields.update(overrides)
    return validate_meter(**fields)


def test_a_valid_meter_is_kept_with_its_filter_sorted():
    defined = meter(filter_={"region": "eu", "env": "prod"}, group_by=["model", "region"])
    assert defined == Meter(
        "input_tokens",
        "Input tokens",
        "llm_tokens",
        Aggregation.SUM,
        "input_tokens",
        ("model", "region"),
        (("env", "prod"), ("region", "eu")),
    )


KEY_RULE = "must match [A-Za-z0-9_.-]{1,64}"


@pytest.mark.parametrize(
    "overrides, field, problem",
    [
        (dict(meter_id="Input"), "id", "must match [a-z0-9_-]{1,64}"),
        (dict(meter_id=""), "id", "must match [a-z0-9_-]{1,64}"),
        (dict(meter_id="x" * 65), "id", "must match [a-z0-9_-]{1,64}"),
        (dict(name="  "), "name", "must hold 1 to 256 characters"),
        (dict(name="n" * 257), "name", "must hold 1 to 256 characters"),
        (dict(event_type="LLM"), "event_type", "must match [a-z0-9_.-]{1,64}"),
        (dict(event_type=""), "event_type", "must match [a-z0-9_.-]{1,64}"),
        (dict(aggregation="AVERAGE"), "aggregation", "must be one of COUNT, SUM, MAX, UNIQUE_COUNT, LATEST"),
        (dict(aggregation="SUM", value_property=""), "value_property", "is required for SUM and " + KEY_RULE),
        (dict(aggregation="MAX", value_property="a b"), "value_property", "is required for MAX and " + KEY_RULE),
        (
            dict(aggregation="COUNT", value_property="input_tokens"),
            "value_property",
            "must be empty for COUNT, which counts events",
        ),
        (dict(group_by=["a", "b", "c", "d"]), "group_by", "holds at most 3 properties"),
        (dict(group_by=["a", "a"]), "group_by", "names a property twice"),
        (dict(group_by=["ok", "no way"]), "group_by[1]", KEY_RULE),
        (dict(filter_={"bad key": "x"}), "filter", "key 'bad key' " + KEY_RULE),
        (dict(filter_={"k" * 80: "x"}), "filter", f"key {'k' * 70!r} " + KEY_RULE),
        (dict(filter_={"model": "m" * 257}), "filter.model", "must be at most 256 characters"),
        (dict(filter_={f"k{i}": "v" for i in range(9)}), "filter", "holds at most 8 properties"),
    ],
)
def test_an_invalid_meter_is_refused_naming_the_field(overrides, field, problem):
    with pytest.raises(InvalidArgument) as error:
        meter(**overrides)
    assert error.value.violations == (FieldViolation(field, f"{field} {problem}"),)
    assert (error.value.message, error.value.reason) == (f"{field} {problem}", "INVALID_ARGUMENT")


def test_a_meter_at_every_limit_is_kept():
    defined = meter(
        name=" " + "n" * 256 + " ",
        group_by=["a", "b", "c"],
        filter_={f"k{i}": "v" * 256 for i in range(8)},
    )
    assert defined.name == "n" * 256
    assert defined.group_by == ("a", "b", "c")
    assert defined.filter == tuple((f"k{i}", "v" * 256) for i in range(8))


def test_a_count_meter_needs_no_value_property():
    assert meter(aggregation="COUNT", value_property="").aggregation is Aggregation.COUNT


def test_the_requests_meter_sums_count_of_api_requests_by_endpoint():
    assert (REQUESTS.id, REQUESTS.event_type, REQUESTS.aggregation, REQUESTS.value_property, REQUESTS.group_by) == (
        "requests",
        "api_request",
        Aggregation.SUM,
        "count",
        ("endpoint",),
    )


# --- properties --------------------------------------------------------------------------


def test_properties_within_the_limits_are_kept():
    props = {f"k{i}": "v" * 100 for i in range(MAX_PROPERTIES - 8)} | {"n": 1.5, "b": True, "i": 3, "s": "x" * 256}
    assert validate_properties(props, "events[0].properties") == props


NESTING = "must be a string, a number or a boolean (nesting is refused)"


@pytest.mark.parametrize(
    "props, field, problem",
    [
        ({f"k{i}": 1 for i in range(MAX_PROPERTIES + 1)}, "events[2].properties", "holds 33 properties, at most 32"),
        ({"a b": 1}, "events[2].properties", "key 'a b' must match [A-Za-z0-9_.-]{1,64}"),
        ({"": 1}, "events[2].properties", "key '' must match [A-Za-z0-9_.-]{1,64}"),
        ({"k" * 80: 1}, "events[2].properties", f"key {'k' * 70!r} must match [A-Za-z0-9_.-]{{1,64}}"),
        ({"model": "m" * 257}, "events[2].properties.model", "is longer than 256 characters"),
        ({"nested": {"a": 1}}, "events[2].properties.nested", NESTING),
        ({"list": [1, 2]}, "events[2].properties.list", NESTING),
        ({"none": None}, "events[2].properties.none", NESTING),
        ({"nan": float("nan")}, "events[2].properties.nan", "must be a finite number"),
        ({"inf": float("inf")}, "events[2].properties.inf", "must be a finite number"),
        ({"inf": float("-inf")}, "events[2].properties.inf", "must be a finite number"),
        ({f"k{i}": "é" * 200 for i in range(16)}, "events[2].properties", "are 6535 bytes as JSON, at most 4096"),
    ],
)
def test_properties_outside_the_limits_refuse_naming_the_field(props, field, problem):
    with pytest.raises(InvalidArgument) as error:
        validate_properties(props, "events[2].properties")
    assert error.value.violations == (FieldViolation(field, f"{field} {problem}"),)
    assert (error.value.message, error.value.reason) == (f"{field} {problem}", "INVALID_ARGUMENT")


def test_the_json_size_limit_is_inclusive():
    props = {f"p{i:02d}": "y" * 250 for i in range(15)}  # 15 x (6 + 252) + 14 commas + braces = 3,886 bytes
    props["z"] = "w" * (MAX_PROPERTIES_JSON - 3886 - len(',"z":""'))
    assert len(json.dumps(props, separators=(",", ":"))) == MAX_PROPERTIES_JSON
    validate_properties(props, "p")
    props["z"] += "w"
    with pytest.raises(InvalidArgument):
        validate_properties(props, "p")


def _escaped(size: int) -> dict[str, str]:
    """Properties whose compact JSON is `size` bytes, every character of their strings escaped to 6
    bytes (\\u0001): the case where the quick bound (_json_bound) is tightest, one byte over the size
    (it counts a comma after every pair, the JSON none after the last)."""
    props = {f"k{i:02d}": "\x01" * 60 for i in range(11)}  # 11 x (6 + 362) + 10 commas + braces = 4,060 bytes
    rest = size - 4060 - len(',"":""')
    key = "e" * (rest % 6 or 6)  # the key takes what 6-byte characters cannot
    props[key] = "\x01" * ((rest - len(key)) // 6)
    assert len(json.dumps(props, separators=(",", ":"), ensure_ascii=False).encode()) == size
    return props


def test_the_quick_bound_never_counts_fewer_bytes_than_the_json_has():
    validate_properties(_escaped(MAX_PROPERTIES_JSON), "p")
    with pytest.raises(InvalidArgument) as error:
        validate_properties(_escaped(MAX_PROPERTIES_JSON + 1), "p")
    assert error.value.message == "p are 4097 bytes as JSON, at most 4096"


def test_properties_whose_bound_is_at_most_the_limit_are_never_encoded(monkeypatch):
    # The bound is the JSON size + 1 here: at 4,095 bytes it is 4,096, the limit itself.
    props = _escaped(MAX_PROPERTIES_JSON - 1)
    monkeypatch.setattr(json, "dumps", lambda *args, **kwargs: pytest.fail("encoded"))
    assert validate_properties(props, "p") == props


@pytest.mark.parametrize(
    "value, text",
    [("m-large", "m-large"), (2, "2"), (2.0, "2"), (0.1, "0.1"), (True, "true"), (False, "false"), (1e300, "1e+300")],
)
def test_canonical_text_of_a_property(value, text):
    assert canonical(value) == text


# --- matching and values -----------------------------------------------------------------


def test_an_event_matches_by_type_and_every_filter_property():
    m = meter(filter_={"model": "m-large", "cached": "false"})
    assert matches(m, "llm_tokens", {"model": "m-large", "cached": False, "x": 1})
    assert not matches(m, "llm_tokens", {"model": "m-large"})
    assert not matches(m, "llm_tokens", {"model": "m-small", "cached": False})
    assert not matches(m, "llm_tokens_v2", {"model": "m-large", "cached": False})


def test_each_aggregation_takes_its_value():
    props = {"model": "m-large", "input_tokens": "120", "user": "u1", "gb": 1.25}
    defined = [
        meter(meter_id="sum", aggregation="SUM"),
        meter(meter_id="count", aggregation="COUNT", value_property=""),
        meter(meter_id="max", aggregation="MAX", value_property="gb"),
        meter(meter_id="users", aggregation="UNIQUE_COUNT", value_property="user", group_by=[]),
        meter(meter_id="latest", aggregation="LATEST", value_property="gb", group_by=["model", "region"]),
        meter(meter_id="other", event_type="other"),
        meter(meter_id="large", aggregation="COUNT", value_property="", filter_={"model": "m-large"}),
        meter(meter_id="small", aggregation="COUNT", value_property="", filter_={"model": "m-small"}),
    ]
    assert contributions(defined, "llm_tokens", props, "events[0]") == [
        Contribution("sum", ("m-large",), 120 * 10**9),
        Contribution("count", ("m-large",), 10**9),
        Contribution("max", ("m-large",), 1_250_000_000),
        Contribution("users", (), 0, "u1"),
        Contribution("latest", ("m-large", ""), 1_250_000_000),
        Contribution("large", ("m-large",), 10**9),
    ]


@pytest.mark.parametrize(
    "aggregation, props, problem",
    [
        ("SUM", {"model": "m"}, "is missing"),
        ("SUM", {"input_tokens": "12 tokens"}, "is not a valid number: '12 tokens' is not a decimal number"),
        ("SUM", {"input_tokens": True}, "is not a valid number: a boolean is not a number"),
        ("MAX", {"input_tokens": "1e3"}, "is not a valid number: '1e3' is not a decimal number"),
        (
            "LATEST",
            {"input_tokens": 0.1 + 0.2},
            "is not a valid number: '0.30000000000000004' has more than 9 digits after the point",
        ),
        (
            "SUM",
            {"input_tokens": "1000000000000000"},
            "is not a valid number: '1000000000000000' is too large: |value| must be below 10^15",
        ),
        ("UNIQUE_COUNT", {"model": "m"}, "has no value to count"),
        ("UNIQUE_COUNT", {"input_tokens": ""}, "has no value to count"),
    ],
)
def test_a_matching_event_without_a_valid_value_is_invalid_value(aggregation, props, problem):
    with pytest.raises(InvalidArgument) as error:
        contributions([meter(aggregation=aggregation)], "llm_tokens", props, "events[4]")
    message = f"events[4].properties.input_tokens {problem} (meter 'input_tokens' {aggregation} needs it)"
    assert (error.value.message, error.value.reason) == (message, "INVALID_VALUE")
    assert error.value.violations == (FieldViolation("events[4].properties.input_tokens", message),)
    assert error.value.metadata == {"meter_id": "input_tokens", "property": "input_tokens"}


def test_an_event_no_meter_matches_contributes_nothing_and_is_never_invalid():
    assert contributions([meter()], "llm_tokens_v2", {}, "events[0]") == []


# --- merging -----------------------------------------------------------------------------


def cell(value, minutes=0, event_id="e"):
    return Cell(value, T0 + dt.timedelta(minutes=minutes), event_id)


@pytest.mark.parametrize("aggregation", [Aggregation.SUM, Aggregation.COUNT])
def test_sums_and_counts_add(aggregation):
    assert merge(aggregation, cell(3), cell(-1, 5)).value == 2


@pytest.mark.parametrize("aggregation", [Aggregation.SUM, Aggregation.COUNT])
def test_a_sum_keeps_the_latest_instant_and_greatest_event_id_its_row_stores(aggregation):
    # Unused by the figure, but written to the rollup's latest_at and latest_event_id columns.
    assert merge(aggregation, cell(3, 5, "a9"), cell(-1, 0, "b0")) == Cell(2, T0 + dt.timedelta(minutes=5), "b0")
    assert merge(aggregation, cell(3, 0, "b0"), cell(-1, 5, "a9")) == Cell(2, T0 + dt.timedelta(minutes=5), "b0")


def test_max_takes_the_largest_either_way():
    assert merge(Aggregation.MAX, cell(3), cell(7, -5)).value == 7
    assert merge(Aggregation.MAX, cell(7, -5), cell(3)).value == 7


def test_latest_takes_the_latest_timestamp_then_the_greatest_event_id():
    assert merge(Aggregation.LATEST, cell(1, 5), cell(2, 4)).value == 1
    assert merge(Aggregation.LATEST, cell(2, 4), cell(1, 5)).value == 1
    assert merge(Aggregation.LATEST, cell(1, 5, "a"), cell(2, 5, "b")).value == 2
    assert merge(Aggregation.LATEST, cell(2, 5, "b"), cell(1, 5, "a")).value == 2


def test_latest_of_one_instant_and_event_id_keeps_the_cell_held_as_the_database_does():
    # The database replaces a rollup's LATEST only for a strictly later (latest_at, latest_event_id).
    assert merge(Aggregation.LATEST, cell(1, 5, "a"), cell(2, 5, "a")).value == 1
    assert merge(Aggregation.LATEST, cell(2, 5, "a"), cell(1, 5, "a")).value == 2


def test_distinct_counts_do_not_merge_as_cells():
    with pytest.raises(ValueError) as error:
        merge(Aggregation.UNIQUE_COUNT, cell(0), cell(0))
    assert str(error.value) == "distinct counts merge as sets, not cells"


# --- folding and windows -----------------------------------------------------------------

HOUR = dt.timedelta(hours=1)
P0 = T0  # a period start
S1 = T0 + dt.timedelta(hours=5, minutes=30)  # a plan change: the second segment


def counted(at, event_id, *parts, segment=P0):
    return Counted(Place(P0, segment, at.replace(minute=0, second=0, microsecond=0)), at, event_id, list(parts))


AGGS = {
    "sum": Aggregation.SUM,
    "max": Aggregation.MAX,
    "latest": Aggregation.LATEST,
    "users": Aggregation.UNIQUE_COUNT,
    "count": Aggregation.COUNT,
}


def test_fold_merges_each_key_and_keeps_segments_apart():
    at = T0 + dt.timedelta(hours=5, minutes=10)
    later = T0 + dt.timedelta(hours=5, minutes=40)
    folded = fold(
        AGGS,
        [
            counted(
                at,
                "a",
                Contribution("sum", ("m",), 1_500_000_000),
                Contribution("max", (), 7),
                Contribution("users", (), 0, "u1"),
            ),
            counted(
                at,
                "b",
                Contribution("sum", ("m",), -500_000_000),
                Contribution("max", (), 9),
                Contribution("users", (), 0, "u1"),
            ),
            counted(
                later,
                "c",
                Contribution("sum", ("m",), 2 * 10**9),
                Contribution("latest", (), 5),
                Contribution("users", (), 0, "u2"),
                segment=S1,
            ),
            counted(later, "b", Contribution("latest", (), 6), segment=S1),
        ],
    )
    hour = T0 + 5 * HOUR
    assert {key: cell.value for key, cell in folded.cells.items()} == {
        ("sum", P0, P0, hour, ("m",)): 10**9,
        ("max", P0, P0, hour, ()): 9,
        ("sum", P0, S1, hour, ("m",)): 2 * 10**9,
        ("latest", P0, S1, hour, ()): 5,  # same instant: the greater event_id, "c"
    }
    assert folded.distinct == {("users", P0, P0, (), "u1"), ("users", P0, S1, (), "u2")}
    assert folded.distinct_hours == {("users", P0, hour, (), "u1"), ("users", P0, hour, (), "u2")}
    # |1.5| -> 1 + 1, |-0.5| -> 0 + 1, |2| -> 2 + 1
    assert folded.magnitude == {("sum", P0): 6}


def test_a_distinct_value_first_in_an_event_leaves_the_events_other_meters_counted():
    folded = fold(AGGS, [counted(T0, "a", Contribution("users", (), 0, "u1"), Contribution("sum", (), 10**9))])
    assert folded.distinct == {("users", P0, P0, (), "u1")}
    assert folded.cells == {("sum", P0, P0, T0, ()): Cell(10**9, T0, "a")}
    assert folded.magnitude == {("sum", P0): 2}


def test_count_cells_take_magnitude_one_an_event():
    folded = fold(AGGS, [counted(T0, str(i), Contribution("count", (), 10**9)) for i in range(3)])
    assert folded.magnitude == {("count", P0): 6} and folded.cells[("count", P0, P0, T0, ())].value == 3 * 10**9


def rows_of(meter_, cells_, size, group_by=()):
    return [
        (r.window_start, r.window_end, r.groups, r.value)
        for r in cell_rows(meter_, cells_, Windows(size, T0, T0 + 48 * HOUR, UTC), group_by)
    ]


def test_cell_rows_by_hour_day_and_period_with_and_without_groups():
    m = Meter("t", "T", "e", Aggregation.SUM, "v", ("model", "region"))
    day2 = T0 + 24 * HOUR
    cells_ = [
        (T0, ("a", "eu"), Cell(10**9, T0, "1")),
        (T0, ("b", "eu"), Cell(2 * 10**9, T0, "2")),
        (T0 + HOUR, ("a", "us"), Cell(500_000_000, T0, "3")),
        (day2, ("a", "eu"), Cell(4 * 10**9, day2, "4")),
    ]
    assert rows_of(m, cells_, Window.HOUR) == [
        (T0, T0 + HOUR, {}, "3"),
        (T0 + HOUR, T0 + 2 * HOUR, {}, "0.5"),
        (day2, day2 + HOUR, {}, "4"),
    ]
    assert rows_of(m, cells_, Window.DAY, ["model"]) == [
        (T0, day2, {"model": "a"}, "1.5"),
        (T0, day2, {"model": "b"}, "2"),
        (day2, day2 + 24 * HOUR, {"model": "a"}, "4"),
    ]
    assert rows_of(m, cells_, Window.PERIOD, ["region", "model"]) == [
        (T0, T0 + 48 * HOUR, {"region": "eu", "model": "a"}, "5"),
        (T0, T0 + 48 * HOUR, {"region": "eu", "model": "b"}, "2"),
        (T0, T0 + 48 * HOUR, {"region": "us", "model": "a"}, "0.5"),
    ]


def test_day_windows_are_the_zones_days_across_dst_and_half_hour_offsets():
    new_york, kolkata = ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")
    fall_back = dt.datetime(2026, 11, 1, 4, tzinfo=UTC)  # 00:00 EDT: a 25-hour day
    windows = Windows(Window.DAY, T0, T0 + 48 * HOUR, new_york)
    assert windows.of(fall_back + 24 * HOUR) == (fall_back, fall_back + 25 * HOUR)  # 23:00 EST, still Nov 1
    assert windows.of(fall_back + 25 * HOUR) == (fall_back + 25 * HOUR, fall_back + 49 * HOUR)
    assert windows.of(fall_back - HOUR) == (fall_back - 24 * HOUR, fall_back)
    day = dt.datetime(2026, 12, 1, 18, 30, tzinfo=UTC)  # 00:00 IST, Dec 2
    assert Windows(Window.DAY, T0, T0, kolkata).of(day) == (day, day + 24 * HOUR)
    assert Windows(Window.DAY, T0, T0, kolkata).of(day - HOUR) == (day - 24 * HOUR, day)
    assert Windows(Window.HOUR, T0, T0, kolkata).of(day) == (day, day + HOUR)


def test_max_and_latest_merge_across_hours():
    later = T0 + HOUR
    cells_ = [(T0, (), Cell(9, T0 + dt.timedelta(minutes=59), "z")), (later, (), Cell(3, later, "a"))]
    assert rows_of(Meter("m", "M", "e", Aggregation.MAX, "v"), cells_, Window.PERIOD)[0][3] == "0.000000009"
    assert rows_of(Meter("l", "L", "e", Aggregation.LATEST, "v"), cells_, Window.PERIOD)[0][3] == "0.000000003"


def test_distinct_rows_count_a_value_once_per_window():
    m = Meter("u", "U", "login", Aggregation.UNIQUE_COUNT, "user", ("region",))
    values = [(T0, ("eu",), "u1"), (T0 + HOUR, ("eu",), "u1"), (T0 + HOUR, ("us",), "u1"), (T0 + HOUR, ("us",), "u2")]
    assert [
        (r.window_start, r.groups, r.value)
        for r in distinct_rows(m, values, Windows(Window.HOUR, T0, T0 + 48 * HOUR, UTC), [])
    ] == [
        (T0, {}, "1"),
        (T0 + HOUR, {}, "2"),
    ]
    assert [
        (r.groups, r.value) for r in distinct_rows(m, values, Windows(Window.DAY, T0, T0 + 48 * HOUR, UTC), ["region"])
    ] == [
        ({"region": "eu"}, "1"),
        ({"region": "us"}, "2"),
    ]


def test_distinct_rows_of_a_period_span_the_range_asked_for():
    m = Meter("u", "U", "login", Aggregation.UNIQUE_COUNT, "user", ("region",))
    values = [(T0 + HOUR, ("eu",), "u1"), (T0 + 30 * HOUR, ("us",), "u1"), (T0 + 30 * HOUR, ("us",), "u2")]
    assert distinct_rows(m, values, Windows(Window.PERIOD, T0, T0 + 48 * HOUR, UTC), []) == [
        Row(T0, T0 + 48 * HOUR, {}, "2")
    ]


def test_counted_rows_are_one_period_row_over_all_groups_or_one_a_group():
    m = Meter("u", "U", "login", Aggregation.UNIQUE_COUNT, "user", ("region", "model"))
    end = T0 + 48 * HOUR
    assert counted_rows(m, {(): 7}, T0, end, []) == [Row(T0, end, {}, "7")]
    assert counted_rows(m, {("us", "a"): 2, ("eu", "b"): 5}, T0, end, ["model", "region"]) == [
        Row(T0, end, {"model": "a", "region": "us"}, "2"),
        Row(T0, end, {"model": "b", "region": "eu"}, "5"),
    ]
    with pytest.raises(ValueError) as error:
        counted_rows(m, {("us",): 2}, T0, end, ["region"])
    assert str(error.value) == "distinct counts per group project only onto all of the meter's group_by"
    with pytest.raises(InvalidArgument) as refused:
        counted_rows(m, {}, T0, end, ["user"])
    assert refused.value.message == "group_by[0] 'user' is not among meter 'u''s group_by"


def test_grouping_by_a_property_the_meter_does_not_group_by_is_400():
    m = Meter("u", "U", "login", Aggregation.SUM, "v", ("region",))
    with pytest.raises(InvalidArgument) as error:
        cell_rows(m, [], Windows(Window.HOUR, T0, T0, UTC), ["region", "m" * 80])
    message = f"group_by[1] {'m' * 70!r} is not among meter 'u''s group_by"
    assert error.value.violations == (FieldViolation("group_by[1]", message),)
    assert (error.value.message, error.value.reason) == (message, "INVALID_ARGUMENT")


def test_large_numbers_count_in_the_json_size():
    props = {f"n{i}": 10**200 for i in range(32)}
    with pytest.raises(InvalidArgument, match="bytes as JSON, at most 4096"):
        validate_properties(props, "p")
