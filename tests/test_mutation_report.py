"""tools/mutation_report.py: how mutmut's findings become a per-module score, what makes an entry of
the committed report stale, and what the gate refuses."""

from __future__ import annotations

import pytest

from tool_scripts import load_tool

report = load_tool("mutation_report")

MUTATED = """\
def x_div__mutmut_orig(a, b):
    q = a // b
    return q
def x_div__mutmut_1(a, b):
    q = a / b
    return q
def xǁPeriodǁcontains__mutmut_orig(self, at):
    return self.start <= at < self.end
def xǁPeriodǁcontains__mutmut_1(self, at):
    return self.start < at < self.end
""".splitlines()
SPANS = {
    "x_div__mutmut_orig": [0, 3],
    "x_div__mutmut_1": [3, 6],
    "xǁPeriodǁcontains__mutmut_orig": [6, 8],
    "xǁPeriodǁcontains__mutmut_1": [8, 10],
}


def test_a_mutant_is_named_by_its_function_and_the_line_it_changes_not_its_ordinal():
    assert report.changes(MUTATED, SPANS, "x_div__mutmut_1") == ("q = a // b", "q = a / b")
    assert report.changes(MUTATED, SPANS, "xǁPeriodǁcontains__mutmut_1") == (
        "return self.start <= at < self.end",
        "return self.start < at < self.end",
    )
    assert report.function_name("x_div__mutmut_12") == "div"
    assert report.function_name("x__units__mutmut_8") == "_units"
    assert report.function_name("xǁPeriodǁcontains__mutmut_1") == "Period.contains"


def entry(detected: int, *undetected: tuple[str, str, str, str], threshold: float = 1.0) -> dict:
    return {
        "source_sha256": "s",
        "tests_sha256": "t",
        "threshold": threshold,
        "mutants": detected + len(undetected),
        "detected": detected,
        "undetected": [dict(zip(("function", "original", "mutant", "status"), u, strict=True)) for u in undetected],
        "run_seconds": 7,
    }


EQUIVALENTS = """
[[equivalent]]
module = "server.domain.money"
function = "div"
original = "q = a // b"
mutant = "q = a / b"
reason = "the same for these operands"

[[equivalent]]
module = "server.domain.money"
function = "gone"
original = "x = 1"
mutant = "x = 2"
reason = "the line was since removed"

[[equivalent]]
module = "server.domain.elsewhere"
function = "f"
original = "a"
mutant = "b"
reason = "a module this report does not hold"
"""


def test_equivalents_leave_the_denominator_and_one_that_no_longer_survives_is_named():
    equivalents = report.load_equivalents(EQUIVALENTS)
    verdicts, stale = report.judge(
        {
            "server/domain/money.py": entry(
                8, ("div", "q = a // b", "q = a / b", "survived"), ("div", "q = a // b", "q = a % b", "survived")
            ),
            "server/services/usage.py": entry(9, ("track", "a", "b", "no tests"), threshold=0.9),
        },
        equivalents,
    )
    money, usage = verdicts
    assert (money.detected, money.equivalent, money.judged, money.passes) == (8, 1, 9, False)
    assert money.ratio == pytest.approx(8 / 9)
    assert [s["mutant"] for s in money.survivors] == ["q = a % b"]
    assert (usage.ratio, usage.passes) == (0.9, True)  # 9 of 10, at its 90%: a mutant no test runs counts
    assert stale == [("server.domain.money", "gone", "x = 1", "x = 2")]


def test_an_equivalent_needs_a_reason():
    with pytest.raises(ValueError, match="without a reason"):
        report.load_equivalents('[[equivalent]]\nmodule = "m"\nfunction = "f"\noriginal = "a"\nmutant = "b"\n')


def test_a_changed_module_or_test_file_makes_only_its_entry_stale(tmp_path):
    (tmp_path / "server").mkdir()
    (tmp_path / "tests").mkdir()
    for name in ("a.py", "b.py", "__init__.py"):
        (tmp_path / "server" / name).write_text(f"# {name}\n")
    for name in ("test_a.py", *(f.removeprefix("tests/") for f in report.SHARED_TEST_FILES)):
        (tmp_path / "tests" / name).write_text("")
    group = report.Group(("server/*",), ("tests/test_a.py::test_one",), 0.9)
    assert group.files(tmp_path) == ["server/a.py", "server/b.py"]
    fresh = {
        path: {
            "source_sha256": report.sha256((tmp_path / path).read_bytes()),
            "tests_sha256": report.tests_hash(tmp_path, group),
            "threshold": 0.9,
        }
        for path in group.files(tmp_path)
    }
    assert report.stale_files(tmp_path, [group], fresh) == {}
    (tmp_path / "server" / "b.py").write_text("# changed\n")
    assert report.stale_files(tmp_path, [group], fresh) == {group: ["server/b.py"]}
    (tmp_path / "tests" / "test_a.py").write_text("# a new test\n")
    assert report.stale_files(tmp_path, [group], fresh) == {group: ["server/a.py", "server/b.py"]}
    stricter = report.Group(group.mutate, group.tests, 1.0)
    (tmp_path / "tests" / "test_a.py").write_text("")
    assert report.stale_files(tmp_path, [stricter], fresh)[stricter] == ["server/a.py", "server/b.py"]


def test_a_group_without_its_own_lists_takes_mutmuts():
    groups = report.load_groups(
        """
[tool.mutmut]
only_mutate = ["server/domain/*"]
pytest_add_cli_args_test_selection = ["tests/test_pure.py"]

[[tool.mutation-gate.group]]
threshold = 1.0

[[tool.mutation-gate.group]]
mutate = ["server/services/usage.py"]
tests = ["tests/test_money_services.py"]
threshold = 0.9
"""
    )
    assert groups == [
        report.Group(("server/domain/*",), ("tests/test_pure.py",), 1.0),
        report.Group(("server/services/usage.py",), ("tests/test_money_services.py",), 0.9),
    ]


def test_the_markdown_is_generated_from_the_report_with_every_survivor_and_equivalent():
    equivalents = report.load_equivalents(EQUIVALENTS)
    data = {"server/domain/money.py": entry(8, ("div", "q = a // b", "q = a % b", "survived"))}
    verdicts, _ = report.judge(data, equivalents)
    text = report.markdown(verdicts, equivalents, data)
    assert "| `server.domain.money` | 9 | 8 | 0 | 1 | 88.9% | 100% | 7 s |" in text
    assert "- `server.domain.money.div` (survived): `q = a // b` → `q = a % b`" in text
    assert "- `server.domain.money.div`: `q = a // b` → `q = a / b`: the same for these operands" in text
