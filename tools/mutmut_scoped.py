"""mutmut, with the files to mutate and the tests to run given on the command line instead of read
from [tool.mutmut] in pyproject.toml (the rest of that table still applies).

`tools/mutation_report.py` mutates each gated module against its own tests (the `[tool.mutation-gate]`
table), so a change to one module re-runs that module's tests alone. mutmut reads its settings once
into `mutmut.configuration._config`; this sets the two fields there before handing over to its CLI.

    python tools/mutmut_scoped.py --mutate server/services/events.py --tests tests/test_x.py -- run
"""

from __future__ import annotations

import argparse
import sys

from mutmut import configuration
from mutmut.__main__ import cli


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutate", action="append", required=True, help="a source file to mutate (repeatable)")
    parser.add_argument("--tests", action="append", required=True, help="a pytest selection (repeatable)")
    parser.add_argument("mutmut_args", nargs=argparse.REMAINDER, help="-- then mutmut's own arguments")
    args = parser.parse_args(argv)
    config = configuration.config()
    config.only_mutate = args.mutate
    config.pytest_add_cli_args_test_selection = args.tests
    cli.main([a for a in args.mutmut_args if a != "--"], prog_name="mutmut")


if __name__ == "__main__":
    main(sys.argv[1:])
