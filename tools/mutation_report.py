"""The mutation score per module, from `mutmut results --all true`, written to MUTATION.md.

A mutant counts as detected when a test failed on it (killed), it hung (timeout) or crashed the
interpreter (segfault). Mutants listed in tests/mutation_equivalents.txt behave exactly like the
original, so no test can tell them apart: they leave the denominator, each with its reason.
`make mutation` fails when the pure rules (server/domain/ and the rate-limit algorithm) score under
the threshold or a listed mutant is gone (a stale list hides nothing).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.txt"
REPORT = ROOT / "MUTATION.md"
DETECTED = {"killed", "timeout", "segfault"}
# The pure rules the gate holds to the threshold, as prefixes of module names (`make mutation-gate` mutates these).
GATED = ("server.domain.", "server.ratelimit.algorithm")
THRESHOLD = 0.95
_RESULT = re.compile(r"^\s*(?P<name>(?P<module>[\w.]+)\.x[_ǁ]\S+): (?P<status>.+?)\s*$")


@dataclasses.dataclass
class Score:
    detected: int = 0
    equivalent: int = 0
    undetected: list[str] = dataclasses.field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.detected + len(self.undetected)

    @property
    def ratio(self) -> float:
        return self.detected / self.judged if self.judged else 1.0


def parse_equivalents(text: str) -> dict[str, str]:
    """`mutant-name  why it is equivalent` per line; blank lines and # comments are skipped."""
    reasons = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, why = line.partition(" ")
            reasons[name] = why.strip()
    return reasons


def scores(results: str, equivalents: dict[str, str]) -> tuple[dict[str, Score], list[str]]:
    """Scores by module, and the listed equivalents that no longer exist."""
    by_module: dict[str, Score] = collections.defaultdict(Score)
    seen = set()
    for line in results.splitlines():
        match = _RESULT.match(line)
        if not match or match["name"] in seen:  # mutmut may print a mutant twice
            continue
        name, status, score = match["name"], match["status"], by_module[match["module"]]
        seen.add(name)
        if status in DETECTED:
            score.detected += 1
        elif name in equivalents:
            score.equivalent += 1
        else:
            score.undetected.append(f"{name}: {status}")
    return dict(sorted(by_module.items())), sorted(set(equivalents) - seen)


def package_total(by_module: dict[str, Score], prefix: str | tuple[str, ...]) -> Score:
    total = Score()
    for module, score in by_module.items():
        if module.startswith(prefix):
            total.detected += score.detected
            total.equivalent += score.equivalent
            total.undetected += score.undetected
    return total


def markdown(by_module: dict[str, Score], seconds: int, when: dt.datetime) -> str:
    gated = package_total(by_module, GATED)
    rows = [
        f"| `{module}` | {s.detected} | {len(s.undetected)} | {s.equivalent} | {s.ratio:.1%} |"
        for module, s in by_module.items()
    ]
    survivors = [f"- `{name}`" for s in by_module.values() for name in s.undetected]
    return "\n".join(
        [
            "# Mutation testing report",
            "",
            f"Last run: {when:%Y-%m-%d %H:%M} UTC, `make mutation`, {seconds} s on {os.cpu_count()} cores "
            f"(mutmut, 2 workers). server/domain/ and server/ratelimit/algorithm.py: **{gated.ratio:.1%}** "
            "detected "
            f"({gated.detected} of {gated.judged}; {gated.equivalent} equivalent mutants excluded, "
            "listed with reasons in tests/mutation_equivalents.txt).",
            "",
            "Score = detected / (mutants - equivalent). Undetected counts survivors and mutants no selected "
            "test runs (the services' read paths and invoice workflow are exercised by the end-to-end suite, "
            "not by the fast tests mutmut runs; README.md's Tests section says which are money paths).",
            "",
            "| module | detected | undetected | equivalent | score |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "## Undetected mutants (`.venv/bin/mutmut show NAME` prints one)",
            "",
            *(survivors or ["none"]),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--report-seconds",
        type=int,
        metavar="SECONDS",
        help="write MUTATION.md for a full run that took SECONDS; without it, only check the gate "
        "(`make test` mutates the pure rules alone)",
    )
    parser.add_argument("--mutmut", default=str(ROOT / ".venv" / "bin" / "mutmut"))
    args = parser.parse_args(argv)
    results = subprocess.run(
        [args.mutmut, "results", "--all", "true"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    by_module, stale = scores(results, parse_equivalents(EQUIVALENTS.read_text()))
    if args.report_seconds is None:
        by_module = {m: s for m, s in by_module.items() if m.startswith(GATED)}
    else:
        REPORT.write_text(markdown(by_module, args.report_seconds, dt.datetime.now(dt.timezone.utc)))
    gated = package_total(by_module, GATED)
    for module, score in by_module.items():
        print(f"{module:40} {score.ratio:6.1%}  ({score.detected}/{score.judged}, {score.equivalent} equivalent)")
    failures = [f"listed equivalent mutant no longer exists: {name}" for name in stale]
    if gated.ratio < THRESHOLD:
        failures.append(f"the pure rules detect {gated.ratio:.1%} of their mutants, under {THRESHOLD:.0%}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
