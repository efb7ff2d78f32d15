"""Meters (pure): exact decimals, meter definitions, event properties, matching and values."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import decimals
from server.domain.errors import InvalidArgument
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
    Window,
    canonical,
    cell_rows,
    contributions,
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
    with pytest.raises(decimals.NotADecimal, match=problem.replace("|", r"\|").replace("^", r"\^")):
        decimals.parse(text)


@pytest.mark.parametrize(
    "number, nanos",
    [
        (0.1, 100_000_000),
        (12, 12 * 10**9),
        (-2.5, -2_500_000_000),
        (1e-07, 100),
        (1e-09, 1),
        (1.5e14, 150_000_000_000_000 * 10**9),
        (123456789.123, 123456789_123_000_000),
    ],
)
def test_a_json_number_is_its_shortest_round_trip_decimal(number, nanos):
    assert decimals.from_number(number) == nanos


@pytest.mark.parametrize(
    "number, problem",
    [
        (1e-10, "more than 9 digits"),
        (1e15, "too large"),
        (10**15, "too large"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (True, "a boolean is not a number"),
        (0.1 + 0.2, "more than 9 digits"),  # 0.30000000000000004
    ],
)
def test_numbers_outside_the_rules_are_refused(number, problem):
    with pytest.raises(decimals.NotADecimal, match=problem):
        decimals.from_number(number)


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


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(meter_id="Input"), "id"),
        (dict(meter_id=""), "id"),
        (dict(meter_id="x" * 65), "id"),
        (dict(name="  "), "name"),
        (dict(name="n" * 257), "name"),
        (dict(event_type="LLM"), "event_type"),
        (dict(event_type=""), "event_type"),
        (dict(aggregation="AVERAGE"), "aggregation"),
        (dict(aggregation="SUM", value_property=""), "value_property"),
        (dict(aggregation="MAX", value_property="a b"), "value_property"),
        (dict(aggregation="COUNT", value_property="input_tokens"), "value_property"),
        (dict(group_by=["a", "b", "c", "d"]), "group_by"),
        (dict(group_by=["a", "a"]), "group_by"),
        (dict(group_by=["ok", "no way"]), "group_by[1]"),
        (dict(filter_={"bad key": "x"}), "filter"),
        (dict(filter_={"model": "m" * 257}), "filter.model"),
        (dict(filter_={f"k{i}": "v" for i in range(9)}), "filter"),
    ],
)
def test_an_invalid_meter_is_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidArgument) as error:
        meter(**overrides)
    assert error.value.violations[0].field == field
    assert error.value.message.startswith(field + " ")


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
    props = {f"k{i}": "v" * 100 for i in range(MAX_PROPERTIES - 8)} | {"n": 1.5, "b": True, "i": 3}
    assert validate_properties(props, "events[0].properties") == props


@pytest.mark.parametrize(
    "props, field, problem",
    [
        ({f"k{i}": 1 for i in range(MAX_PROPERTIES + 1)}, "events[2].properties", "holds 33 properties, at most 32"),
        ({"a b": 1}, "events[2].properties", "key 'a b' must match"),
        ({"": 1}, "events[2].properties", "key '' must match"),
        ({"k" * 65: 1}, "events[2].properties", "must match"),
        ({"model": "m" * 257}, "events[2].properties.model", "is longer than 256 characters"),
        ({"nested": {"a": 1}}, "events[2].properties.nested", "nesting is refused"),
        ({"list": [1, 2]}, "events[2].properties.list", "nesting is refused"),
        ({"none": None}, "events[2].properties.none", "nesting is refused"),
        ({"nan": float("nan")}, "events[2].properties.nan", "must be a finite number"),
        ({"inf": float("-inf")}, "events[2].properties.inf", "must be a finite number"),
        ({f"k{i}": "é" * 200 for i in range(16)}, "events[2].properties", "bytes as JSON, at most 4096"),
    ],
)
def test_properties_outside_the_limits_refuse_naming_the_field(props, field, problem):
    with pytest.raises(InvalidArgument) as error:
        validate_properties(props, "events[2].properties")
    assert error.value.violations[0].field == field
    assert problem in error.value.message


def test_the_json_size_limit_is_inclusive():
    props = {f"p{i:02d}": "y" * 250 for i in range(15)}  # 15 x (6 + 252) + 14 commas + braces = 3,886 bytes
    props["z"] = "w" * (MAX_PROPERTIES_JSON - 3886 - len(',"z":""'))
    assert len(json.dumps(props, separators=(",", ":"))) == MAX_PROPERTIES_JSON
    validate_properties(props, "p")
    props["z"] += "w"
    with pytest.raises(InvalidArgument):
        validate_properties(props, "p")


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
    ]
    assert contributions(defined, "llm_tokens", props, "events[0]") == [
        Contribution("sum", ("m-large",), 120 * 10**9),
        Contribution("count", ("m-large",), 10**9),
        Contribution("max", ("m-large",), 1_250_000_000),
        Contribution("users", (), 0, "u1"),
        Contribution("latest", ("m-large", ""), 1_250_000_000),
    ]


@pytest.mark.parametrize(
    "aggregation, props, problem",
    [
        ("SUM", {"model": "m"}, "is missing"),
        ("SUM", {"input_tokens": "12 tokens"}, "is not a valid number"),
        ("SUM", {"input_tokens": True}, "is not a valid number"),
        ("MAX", {"input_tokens": "1e3"}, "is not a valid number"),
        ("LATEST", {"input_tokens": 0.1 + 0.2}, "more than 9 digits"),
        ("SUM", {"input_tokens": "1000000000000000"}, "too large"),
        ("UNIQUE_COUNT", {"model": "m"}, "has no value to count"),
        ("UNIQUE_COUNT", {"input_tokens": ""}, "has no value to count"),
    ],
)
def test_a_matching_event_without_a_valid_value_is_invalid_value(aggregation, props, problem):
    with pytest.raises(InvalidArgument) as error:
        contributions([meter(aggregation=aggregation)], "llm_tokens", props, "events[4]")
    assert error.value.reason == "INVALID_VALUE"
    assert error.value.violations[0].field == "events[4].properties.input_tokens"
    assert problem in error.value.message
    assert "meter 'input_tokens'" in error.value.message
    assert error.value.metadata == {"meter_id": "input_tokens", "property": "input_tokens"}


def test_an_event_no_meter_matches_contributes_nothing_and_is_never_invalid():
    assert contributions([meter()], "llm_tokens_v2", {}, "events[0]") == []


# --- merging -----------------------------------------------------------------------------


def cell(value, minutes=0, event_id="e"):
    return Cell(value, T0 + dt.timedelta(minutes=minutes), event_id)


@pytest.mark.parametrize("aggregation", [Aggregation.SUM, Aggregation.COUNT])
def test_sums_and_counts_add(aggregation):
    assert merge(aggregation, cell(3), cell(-1, 5)).value == 2


def test_max_takes_the_largest_either_way():
    assert merge(Aggregation.MAX, cell(3), cell(7, -5)).value == 7
    assert merge(Aggregation.MAX, cell(7, -5), cell(3)).value == 7


def test_latest_takes_the_latest_timestamp_then_the_greatest_event_id():
    assert merge(Aggregation.LATEST, cell(1, 5), cell(2, 4)).value == 1
    assert merge(Aggregation.LATEST, cell(2, 4), cell(1, 5)).value == 1
    assert merge(Aggregation.LATEST, cell(1, 5, "a"), cell(2, 5, "b")).value == 2
    assert merge(Aggregation.LATEST, cell(2, 5, "b"), cell(1, 5, "a")).value == 2


def test_distinct_counts_do_not_merge_as_cells():
    with pytest.raises(ValueError):
        merge(Aggregation.UNIQUE_COUNT, cell(0), cell(0))


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


def test_count_cells_take_magnitude_one_an_event():
    folded = fold(AGGS, [counted(T0, str(i), Contribution("count", (), 10**9)) for i in range(3)])
    assert folded.magnitude == {("count", P0): 6} and folded.cells[("count", P0, P0, T0, ())].value == 3 * 10**9


def rows_of(meter_, cells_, size, group_by=()):
    return [
        (r.window_start, r.window_end, r.groups, r.value)
        for r in cell_rows(meter_, cells_, size, T0, T0 + 48 * HOUR, group_by)
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


def test_max_and_latest_merge_across_hours():
    later = T0 + HOUR
    cells_ = [(T0, (), Cell(9, T0 + dt.timedelta(minutes=59), "z")), (later, (), Cell(3, later, "a"))]
    assert rows_of(Meter("m", "M", "e", Aggregation.MAX, "v"), cells_, Window.PERIOD)[0][3] == "0.000000009"
    assert rows_of(Meter("l", "L", "e", Aggregation.LATEST, "v"), cells_, Window.PERIOD)[0][3] == "0.000000003"


def test_distinct_rows_count_a_value_once_per_window():
    m = Meter("u", "U", "login", Aggregation.UNIQUE_COUNT, "user", ("region",))
    values = [(T0, ("eu",), "u1"), (T0 + HOUR, ("eu",), "u1"), (T0 + HOUR, ("us",), "u1"), (T0 + HOUR, ("us",), "u2")]
    assert [
        (r.window_start, r.groups, r.value) for r in distinct_rows(m, values, Window.HOUR, T0, T0 + 48 * HOUR, [])
    ] == [
        (T0, {}, "1"),
        (T0 + HOUR, {}, "2"),
    ]
    assert [(r.groups, r.value) for r in distinct_rows(m, values, Window.DAY, T0, T0 + 48 * HOUR, ["region"])] == [
        ({"region": "eu"}, "1"),
        ({"region": "us"}, "2"),
    ]


def test_grouping_by_a_property_the_meter_does_not_group_by_is_400():
    m = Meter("u", "U", "login", Aggregation.SUM, "v", ("region",))
    with pytest.raises(InvalidArgument) as error:
        cell_rows(m, [], Window.HOUR, T0, T0, ["region", "model"])
    assert error.value.violations[0].field == "group_by[1]"


def test_large_numbers_count_in_the_json_size():
    props = {f"n{i}": 10**200 for i in range(32)}
    with pytest.raises(InvalidArgument, match="bytes as JSON, at most 4096"):
        validate_properties(props, "p")
