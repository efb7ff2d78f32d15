"""Portal tokens and chart geometry: pure functions, no server."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain import charts, portal_tokens
from server.domain.portal_tokens import ExpiredToken, InvalidToken

NOW = dt.datetime(2026, 3, 1, 12, 0, 30, 123456, tzinfo=dt.timezone.utc)
SECRET = b"s" * 32


def test_a_token_names_its_tenant_until_it_expires_an_hour_later():
    token, expires_at = portal_tokens.sign(SECRET, "acme", NOW)
    assert expires_at == dt.datetime(2026, 3, 1, 13, 0, 30, tzinfo=dt.timezone.utc)
    assert portal_tokens.verify(SECRET, token, NOW) == "acme"
    assert portal_tokens.verify(SECRET, token, expires_at - dt.timedelta(seconds=1)) == "acme"
    with pytest.raises(ExpiredToken) as raised:
        portal_tokens.verify(SECRET, token, expires_at)
    assert raised.value.reason == "PORTAL_TOKEN_EXPIRED"


def test_a_token_is_safe_in_a_url_path():
    token, _ = portal_tokens.sign(SECRET, "<script>/é?#", NOW)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: portal_tokens._b64(b'["other",9999999999]') + "." + t.partition(".")[2],  # payload swapped
        lambda t: t.partition(".")[0],  # signature dropped
        lambda t: "",
        lambda t: "not a token",
    ],
)
def test_a_tampered_token_is_refused(tamper):
    token, _ = portal_tokens.sign(SECRET, "acme", NOW)
    with pytest.raises(InvalidToken):
        portal_tokens.verify(SECRET, tamper(token), NOW)


def test_another_secret_refuses_the_token():
    token, _ = portal_tokens.sign(SECRET, "acme", NOW)
    with pytest.raises(InvalidToken):
        portal_tokens.verify(b"t" * 32, token, NOW)


def test_a_signed_payload_of_the_wrong_shape_is_invalid_not_a_crash():
    payload = portal_tokens._b64(b'{"tenant": "acme"}')
    with pytest.raises(InvalidToken):
        portal_tokens.verify(SECRET, f"{payload}.{portal_tokens._signature(SECRET, payload)}", NOW)


DAYS = [(dt.date(2026, 3, 1) + dt.timedelta(days=n), n * 10) for n in range(5)]


def test_bars_scale_to_the_tallest_and_sit_on_the_baseline():
    chart = charts.daily_bars(DAYS, included_per_day=20)
    assert len(chart.bars) == 5
    tallest = chart.bars[-1]
    assert tallest.y == 0 and tallest.height == chart.baseline_y
    assert chart.bars[0].height == 0
    assert chart.bars[2].height == pytest.approx(chart.baseline_y / 2)
    assert all(bar.y + bar.height == pytest.approx(chart.baseline_y) for bar in chart.bars)
    assert chart.included_y == pytest.approx(chart.baseline_y / 2)
    assert chart.bars[1].x > chart.bars[0].x + chart.bars[0].width  # a gap between bars


def test_an_included_line_above_every_bar_sets_the_scale():
    chart = charts.daily_bars(DAYS, included_per_day=80)
    assert chart.included_y == 0
    assert chart.bars[-1].height == pytest.approx(chart.baseline_y / 2)


def test_no_usage_and_nothing_included_draws_flat_bars_and_no_line():
    chart = charts.daily_bars([(dt.date(2026, 3, 1), 0)], included_per_day=0)
    assert chart.included_y is None and chart.bars[0].height == 0


@pytest.mark.parametrize(
    "used, included, percent, over, drawn",
    [
        (0, 100, 0, False, False),
        (50, 100, 50, False, True),
        (100, 100, 100, False, True),
        (250, 100, 250, True, True),
        (0, 0, 0, False, False),
        (5, 0, 100, True, True),
    ],
)
def test_gauge(used, included, percent, over, drawn):
    shown = charts.gauge(used, included)
    assert (shown.percent, shown.over, bool(shown.arc)) == (percent, over, drawn)


def test_a_full_gauge_ends_where_its_track_ends():
    assert charts.gauge(300, 100).arc == charts.gauge(100, 100).arc == charts.gauge(1, 1).track
    half = charts.gauge(50, 100).arc
    assert half.endswith(f"{charts.GAUGE_RADIUS + 10.0} 10.0")  # the top of the half circle


def test_a_token_is_compact_json_and_its_signature_exactly():
    token, _ = portal_tokens.sign(SECRET, "acme", NOW)
    payload, _, _signature = token.partition(".")
    assert portal_tokens._unb64(payload) == b'["acme",1772370030]'  # 13:00:30 UTC, no spaces
    assert token == "WyJhY21lIiwxNzcyMzcwMDMwXQ.e5RW9pXiGJET5U-f-vRyw-Qjhw_82CTpCE9hVjpOkO8"


@pytest.mark.parametrize("tenant_id", ["a" * n for n in range(1, 13)])
def test_tokens_of_every_padding_length_round_trip(tenant_id):
    token, _ = portal_tokens.sign(SECRET, tenant_id, NOW)
    assert "=" not in token
    assert portal_tokens.verify(SECRET, token, NOW) == tenant_id


def test_base64_drops_only_the_padding():
    assert portal_tokens._b64(b"\x00\x00\x17") == "AAAX"
    assert portal_tokens._b64(b"\x00") == "AA"


@pytest.mark.parametrize("payload", [b'["acme","soon"]', b"[7,9999999999]", b'["acme",1.5]'])
def test_a_signed_payload_with_a_field_of_the_wrong_type_is_invalid(payload):
    encoded = portal_tokens._b64(payload)
    with pytest.raises(InvalidToken):
        portal_tokens.verify(SECRET, f"{encoded}.{portal_tokens._signature(SECRET, encoded)}", NOW)


def test_refusals_say_what_is_wrong_with_the_link():
    token, expires_at = portal_tokens.sign(SECRET, "acme", NOW)
    with pytest.raises(ExpiredToken) as expired:
        portal_tokens.verify(SECRET, token, expires_at)
    assert expired.value.message == "this portal link expired at 2026-03-01T13:00:30+00:00"
    with pytest.raises(InvalidToken) as invalid:
        portal_tokens.verify(b"t" * 32, token, NOW)
    assert (invalid.value.message, invalid.value.reason) == ("this portal link is not valid", "PORTAL_TOKEN_INVALID")
    assert invalid.value.code == expired.value.code == "UNAUTHENTICATED"


def test_three_days_fill_the_width_with_exact_bars():
    day = dt.date(2026, 3, 1)
    chart = charts.daily_bars([(day, 30), (day + dt.timedelta(days=1), 7), (day + dt.timedelta(days=2), 0)], 20)
    # slot 640/3 = 213.33 with a 2-unit gap; 180 units of plot above a 20-unit axis; 30 is the top.
    assert chart == charts.BarChart(
        width=640,
        height=200,
        bars=[
            charts.Bar(day=day, requests=30, x=1.0, y=0.0, width=211.33, height=180.0),
            charts.Bar(day=day + dt.timedelta(days=1), requests=7, x=214.33, y=138.0, width=211.33, height=42.0),
            charts.Bar(day=day + dt.timedelta(days=2), requests=0, x=427.67, y=180.0, width=211.33, height=0.0),
        ],
        included_y=60.0,
        included_per_day=20,
        baseline_y=180,
    )


def test_one_request_on_one_day_fills_the_whole_chart():
    chart = charts.daily_bars([(dt.date(2026, 3, 1), 1)], included_per_day=0)
    assert chart.bars == [charts.Bar(day=dt.date(2026, 3, 1), requests=1, x=1.0, y=0.0, width=638.0, height=180.0)]


def test_narrow_slots_keep_a_fifth_of_their_width_as_gap():
    days = [(dt.date(2026, 1, 1) + dt.timedelta(days=n), n) for n in range(128)]
    chart = charts.daily_bars(days, included_per_day=50)
    bars = chart.bars
    # 640/128 = 5 units a day: a 1-unit gap, half of it before the bar; 1 of 127 requests is 1.42 units.
    assert bars[1] == charts.Bar(day=dt.date(2026, 1, 2), requests=1, x=5.5, y=178.58, width=4.0, height=1.42)
    assert (bars[-1].x, bars[-1].height) == (635.5, 180.0)
    assert chart.included_y == 109.13  # 180 - 180 * 50 / 127, to two decimals


def test_gauge_arcs_start_at_the_left_end_of_the_half_circle():
    shown = charts.gauge(25, 100)
    assert shown.track == "M 10.0 90.0 A 80 80 0 0 1 170.0 90.0"
    # 45 degrees up from the left: 90 - 80 * cos(45°) = 33.43 on both axes.
    assert shown.arc == "M 10.0 90.0 A 80 80 0 0 1 33.43 33.43"


def test_one_included_request_scales_the_gauge_like_any_other():
    assert charts.gauge(3, 1).percent == 300
