"""tools/mutation_report.py: how `mutmut results` becomes a score, and what the gate refuses."""

from __future__ import annotations

import pytest

from tool_scripts import load_tool

report = load_tool("mutation_report")

RESULTS = """
    server.domain.money.x_div__mutmut_1: killed
    server.domain.money.x_div__mutmut_2: survived
    server.domain.money.x_div__mutmut_2: survived
    server.domain.money.x_div__mutmut_3: timeout
    server.domain.periods.xǁPeriodǁcontains__mutmut_1: survived
    server.domain.periods.xǁPeriodǁcontains__mutmut_2: killed
    server.ratelimit.algorithm.x_check__mutmut_1: survived
    server.services.usage.x_track__mutmut_1: no tests
"""


def test_scores_count_detected_equivalent_and_undetected_once_each():
    equivalents = report.parse_equivalents(
        "# comment\n\nserver.domain.periods.xǁPeriodǁcontains__mutmut_1  same\n"
        "server.domain.gone.x_f__mutmut_9  renamed since\n"
    )
    by_module, stale = report.scores(RESULTS, equivalents)
    money, periods, usage = (
        by_module[m] for m in ("server.domain.money", "server.domain.periods", "server.services.usage")
    )
    assert (money.detected, money.undetected, money.ratio) == (
        2,
        ["server.domain.money.x_div__mutmut_2: survived"],
        pytest.approx(2 / 3),
    )
    assert (periods.detected, periods.equivalent, periods.ratio) == (1, 1, 1.0)
    assert (usage.detected, usage.judged) == (0, 1)
    assert stale == ["server.domain.gone.x_f__mutmut_9"]
    gated = report.package_total(by_module, report.GATED)  # server/domain/ and the rate-limit algorithm
    assert (gated.detected, gated.judged, gated.equivalent) == (3, 5, 1)


def test_the_report_names_every_undetected_mutant():
    by_module, _ = report.scores(RESULTS, {})
    text = report.markdown(by_module, 61, report.dt.datetime(2026, 11, 25, 18, 0))
    assert "2026-11-25 18:00 UTC" in text and "61 s" in text
    assert "- `server.domain.money.x_div__mutmut_2: survived`" in text
    assert "| `server.domain.money` | 2 | 1 | 0 | 66.7% |" in text
