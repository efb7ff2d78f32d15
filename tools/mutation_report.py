"""The mutation gate: each gated module's score against its threshold, from a committed report that
is refreshed only where it went stale.

`[tool.mutation-gate]` in pyproject.toml lists groups of modules, each with its threshold (1.0 for the
pure rules) and the tests that judge it. MUTATION.json (committed) holds, per module, a hash of its
source and of its tests, and what mutmut found: the number of mutants detected (killed, timed out or
crashed) and every undetected one, named by the line it changes (before and after), not by mutmut's
ordinal. A module whose hashes differ from the report's is stale: the gate runs mutmut on it
(tools/mutmut_scoped.py: that module, its group's tests) and writes its new entry; unchanged modules
keep theirs. Then every module must reach its threshold, where a mutant listed in
tests/mutation_equivalents.toml (by module, function and the change it makes, with the reason no
test can tell it from the original) leaves the denominator; a listed change that no longer survives
fails the gate (a stale list hides nothing). MUTATION.md is written from MUTATION.json.

    tools/mutation_report.py          # `make mutation-gate`: refresh stale modules, check all
    tools/mutation_report.py --all    # `make mutation`: re-run every gated module
    tools/mutation_report.py --check  # run nothing: fail where the report is stale
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import glob
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT = ROOT / "MUTATION.json"
MARKDOWN = ROOT / "MUTATION.md"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"
DETECTED = {"killed", "timeout", "segfault"}
# Test helpers every gated test file may import: a change to them can change what the tests kill.
SHARED_TEST_FILES = ("tests/conftest.py", "tests/stores.py", "tests/factories.py")


@dataclasses.dataclass(frozen=True)
class Group:
    mutate: tuple[str, ...]  # source files (globs allowed)
    tests: tuple[str, ...]  # pytest selections
    threshold: float

    def files(self, root: pathlib.Path) -> list[str]:
        found = {
            str(pathlib.Path(p).relative_to(root))
            for pattern in self.mutate
            for p in glob.glob(str(root / pattern))
            if p.endswith(".py") and not p.endswith("__init__.py")
        }
        return sorted(found)


def load_groups(pyproject: str) -> list[Group]:
    tool = tomllib.loads(pyproject)["tool"]
    mutmut = tool["mutmut"]
    return [
        Group(
            tuple(g.get("mutate", mutmut["only_mutate"])),
            tuple(g.get("tests", mutmut["pytest_add_cli_args_test_selection"])),
            float(g["threshold"]),
        )
        for g in tool["mutation-gate"]["group"]
    ]


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def sha256(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "big") + chunk)
    return digest.hexdigest()


def tests_hash(root: pathlib.Path, group: Group) -> str:
    """The selection itself, each test file it names and the shared helpers, and mutmut's version."""
    files = sorted({t.split("::")[0] for t in group.tests} | set(SHARED_TEST_FILES))
    version = importlib.metadata.version("mutmut")
    return sha256(
        version.encode(),
        "\n".join(group.tests).encode(),
        *((f + "\0").encode() + (root / f).read_bytes() for f in files),
    )


# --- what a mutant changes -------------------------------------------------------------------------


def function_name(mangled: str) -> str:
    """`x_validate__mutmut_3` -> `validate`; `xǁPeriodǁcontains__mutmut_1` -> `Period.contains`."""
    name = mangled.rsplit("__mutmut_", 1)[0]
    if name.startswith("xǁ"):
        return ".".join(name[2:].split("ǁ"))
    return name.removeprefix("x_")


def changes(mutated_source: list[str], spans: dict[str, list[int]], mangled: str) -> tuple[str, str]:
    """The lines the mutant changes, stripped, as (original, mutant): a key that follows the code."""
    base = mangled.rsplit("__mutmut_", 1)[0]
    original = [
        line.replace(f"{base}__mutmut_orig", base) for line in _lines(mutated_source, spans[f"{base}__mutmut_orig"])
    ]
    mutant = [line.replace(mangled, base) for line in _lines(mutated_source, spans[mangled])]
    before, after = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=original, b=mutant, autojunk=False).get_opcodes():
        if tag != "equal":
            before += original[i1:i2]
            after += mutant[j1:j2]
    return "\n".join(before), "\n".join(after)


def _lines(source: list[str], span: list[int]) -> list[str]:
    return [line.strip() for line in source[span[0] : span[1]]]


# --- running mutmut --------------------------------------------------------------------------------


def run_mutmut(root: pathlib.Path, files: list[str], group: Group, log: pathlib.Path) -> dict[str, dict]:
    """mutmut over `files` judged by the group's tests, from scratch; the report entry of each file.
    The hashes are taken before the run: an edit made while it runs leaves the entry stale."""
    tests = tests_hash(root, group)
    sources = {path: sha256((root / path).read_bytes()) for path in files}
    shutil.rmtree(root / "mutants", ignore_errors=True)
    command = [sys.executable, str(root / "tools" / "mutmut_scoped.py")]
    command += [arg for f in files for arg in ("--mutate", f)]
    command += [arg for t in group.tests for arg in ("--tests", t)]
    command += ["--", "run", "--max-children", os.environ.get("MUTATION_CHILDREN", "1")]
    started = time.monotonic()
    with log.open("a") as out:
        done = subprocess.run(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = round(time.monotonic() - started)
    if done.returncode != 0:
        raise RuntimeError(f"mutmut failed on {', '.join(files)} (exit {done.returncode}); see {log}")
    from mutmut.stats import status_by_exit_code  # the venv's mutmut: the one that ran

    entries = {}
    for path in files:
        mutated = root / "mutants" / path
        meta_file, spans_file = (mutated.with_name(mutated.name + suffix) for suffix in (".meta", ".spans"))
        if not meta_file.exists():  # nothing to mutate (constants and declarations only)
            meta, spans = {}, {}
        else:
            meta = json.loads(meta_file.read_text())["exit_code_by_key"]
            spans = json.loads(spans_file.read_text())["spans"]
        source = mutated.read_text().splitlines()
        detected, undetected = 0, []
        for name, code in sorted(meta.items()):
            status = status_by_exit_code[code]
            if status in DETECTED:
                detected += 1
                continue
            mangled = name.rsplit(".", 1)[1]
            original, mutant = changes(source, spans, mangled)
            undetected.append(
                {"function": function_name(mangled), "original": original, "mutant": mutant, "status": status}
            )
        entries[path] = {
            "source_sha256": sources[path],
            "tests_sha256": tests,
            "threshold": group.threshold,
            "mutants": len(meta),
            "detected": detected,
            "undetected": undetected,
            "run_seconds": seconds,
        }
    return entries


# --- judging ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    path: str
    mutants: int
    detected: int
    equivalent: int
    survivors: list[dict]
    threshold: float

    @property
    def judged(self) -> int:
        return self.detected + len(self.survivors)

    @property
    def ratio(self) -> float:
        return self.detected / self.judged if self.judged else 1.0

    @property
    def passes(self) -> bool:
        return self.ratio >= self.threshold


def equivalence_key(module: str, function: str, original: str, mutant: str) -> tuple[str, str, str, str]:
    return module, function, original.strip(), mutant.strip()


def load_equivalents(text: str) -> dict[tuple[str, str, str, str], str]:
    """Each [[equivalent]]: module, function, original and mutant (the changed lines), and reason."""
    listed = {}
    for entry in tomllib.loads(text).get("equivalent", []):
        if not entry.get("reason", "").strip():
            raise ValueError(f"equivalent mutant without a reason: {entry}")
        listed[equivalence_key(entry["module"], entry["function"], entry["original"], entry["mutant"])] = entry[
            "reason"
        ]
    return listed


def judge(report: dict[str, dict], equivalents: dict) -> tuple[list[Verdict], list[tuple]]:
    """Each module's verdict, and the listed equivalents that match no undetected mutant of the report."""
    used = set()
    verdicts = []
    for path, entry in sorted(report.items()):
        module = module_name(path)
        equivalent, survivors = 0, []
        for mutant in entry["undetected"]:
            key = equivalence_key(module, mutant["function"], mutant["original"], mutant["mutant"])
            if key in equivalents and mutant["status"] == "survived":
                equivalent += 1
                used.add(key)
            else:
                survivors.append(mutant)
        verdicts.append(Verdict(path, entry["mutants"], entry["detected"], equivalent, survivors, entry["threshold"]))
    reported = {module_name(path) for path in report}
    stale = sorted(key for key in equivalents if key not in used and key[0] in reported)
    return verdicts, stale


def stale_files(root: pathlib.Path, groups: list[Group], report: dict[str, dict]) -> dict[Group, list[str]]:
    """Per group, its files whose source or tests changed since the report's entry (or that have none)."""
    stale: dict[Group, list[str]] = {}
    for group in groups:
        tests = tests_hash(root, group)
        for path in group.files(root):
            entry = report.get(path)
            if (
                entry is None
                or entry["source_sha256"] != sha256((root / path).read_bytes())
                or entry["tests_sha256"] != tests
                or entry["threshold"] != group.threshold
            ):
                stale.setdefault(group, []).append(path)
    return stale


def _one_line(lines: str) -> str:
    return " ⏎ ".join(lines.splitlines())


def markdown(verdicts: list[Verdict], equivalents: dict, report: dict[str, dict]) -> str:
    rows = [
        f"| `{module_name(v.path)}` | {v.mutants} | {v.detected} | {v.equivalent} | {len(v.survivors)} | "
        f"{v.ratio:.1%} | {v.threshold:.0%} | {report[v.path]['run_seconds']} s |"
        for v in verdicts
    ]
    survivors = [
        f"- `{module_name(v.path)}.{s['function']}` ({s['status']}): `{_one_line(s['original'])}` → "
        f"`{_one_line(s['mutant'])}`"
        for v in verdicts
        for s in v.survivors
    ]
    listed = [
        f"- `{module}.{function}`: `{_one_line(original)}` → `{_one_line(mutant)}`: {reason}"
        for (module, function, original, mutant), reason in sorted(equivalents.items())
    ]
    return "\n".join(
        [
            "# Mutation testing report",
            "",
            "Generated by `tools/mutation_report.py` from MUTATION.json (`make mutation` re-runs every module; "
            "`make mutation-gate`, run by `make test`, re-runs only the modules whose source or tests changed). "
            "Do not edit by hand.",
            "",
            "Score = detected / (mutants - equivalent); detected = killed, timed out or crashed. "
            "Seconds = the wall time of the mutmut run that produced the module's entry (one worker; "
            "modules of a group run together).",
            "",
            "| module | mutants | detected | equivalent | undetected | score | threshold | run |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "## Undetected mutants",
            "",
            *(survivors or ["none"]),
            "",
            "## Equivalent mutants (tests/mutation_equivalents.toml)",
            "",
            *(listed or ["none"]),
            "",
        ]
    )


def main(argv: list[str] | None = None, root: pathlib.Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="re-run every gated module, not only the stale ones")
    parser.add_argument("--only", action="append", default=[], help="re-run only these files (repeatable)")
    parser.add_argument("--check", action="store_true", help="run nothing: judge the report, failing where it is stale")
    args = parser.parse_args(argv)
    groups = load_groups((root / "pyproject.toml").read_text())
    report_file = root / REPORT.name
    report = json.loads(report_file.read_text())["modules"] if report_file.exists() else {}
    gated = {path for group in groups for path in group.files(root)}
    report = {path: entry for path, entry in report.items() if path in gated}
    if args.all:
        to_run = {group: group.files(root) for group in groups}
    else:
        to_run = stale_files(root, groups, report)
    if args.only:
        to_run = {g: [f for f in files if f in args.only] for g, files in to_run.items()}
    if args.check:
        to_run = {}
    log = root / "mutants.log"
    log.write_text("")
    for group, files in to_run.items():
        if not files:
            continue
        print(f"mutmut: {len(files)} module(s) stale: {', '.join(files)}", flush=True)
        try:
            report.update(run_mutmut(root, files, group, log))
        except RuntimeError as error:
            print(f"stale mutation report that could not be refreshed: {error}", file=sys.stderr)
            return 1
        report_file.write_text(
            json.dumps({"modules": dict(sorted(report.items()))}, indent=1, ensure_ascii=False) + "\n"
        )
    equivalents = load_equivalents((root / "tests" / EQUIVALENTS.name).read_text())
    verdicts, stale = judge(report, equivalents)
    (root / MARKDOWN.name).write_text(markdown(verdicts, equivalents, report))
    failures = [f"{module_name(v.path)}: {v.ratio:.1%} under {v.threshold:.0%}" for v in verdicts if not v.passes]
    failures += [
        f"listed equivalent no longer survives: {'.'.join(key[:2])}: {key[2]!r} -> {key[3]!r}" for key in stale
    ]
    missing = stale_files(root, groups, report)
    failures += [f"stale or missing entry: {f}" for files in missing.values() for f in files if not args.only]
    for v in verdicts:
        print(f"{module_name(v.path):45} {v.ratio:7.1%}  ({v.detected}/{v.judged}, {v.equivalent} equivalent)")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
