"""REQUIRE_BACKENDS=1 turns a skip into a failure; without it a skip is a skip."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent


def _run(tmp_path: pathlib.Path, switch: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_needs_a_backend():\n"
        "    pytest.skip('PostgreSQL not reachable at postgresql://nowhere')\n\n"
        "@pytest.mark.xfail(reason='known', strict=True)\n"
        "def test_expected_failure():\n"
        "    assert False\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REQUIRE_BACKENDS"}
    if switch is not None:
        env["REQUIRE_BACKENDS"] = switch
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "require_backends",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "-c",
            os.devnull,
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("switch", [None, "0"])
def test_a_skip_stays_a_skip_without_the_switch(tmp_path, switch):
    run = _run(tmp_path, switch)
    assert run.returncode == 0, run.stdout
    assert "1 skipped, 1 xfailed" in run.stdout


def test_a_skip_fails_the_run_under_the_switch(tmp_path):
    run = _run(tmp_path, "1")
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 xfailed" in run.stdout
    assert "REQUIRE_BACKENDS=1: this test may not skip (PostgreSQL not reachable at postgresql://nowhere)" in run.stdout
