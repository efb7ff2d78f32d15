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


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
    lambda t: portal_tokens._b64(b'["other",9999999999]') + "." + t.partition(".")[2],  # payload swapped
    lambda t: t.partition(".")[0],  # signature dropped
    lambda t: "",
    lambda t: "not a token",
])
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


@pytest.mark.parametrize("used, included, percent, over, drawn", [
    (0, 100, 0, False, False),
    (50, 100, 50, False, True),
    (100, 100, 100, False, True),
    (250, 100, 250, True, True),
    (0, 0, 0, False, False),
    (5, 0, 100, True, True),
])
def test_gauge(used, included, percent, over, drawn):
    shown = charts.gauge(used, included)
    assert (shown.percent, shown.over, bool(shown.arc)) == (percent, over, drawn)


def test_a_full_gauge_ends_where_its_track_ends():
    assert charts.gauge(300, 100).arc == charts.gauge(100, 100).arc == charts.gauge(1, 1).track
    half = charts.gauge(50, 100).arc
    assert half.endswith(f"{charts.GAUGE_RADIUS + 10.0} 10.0")  # the top of the half circle
