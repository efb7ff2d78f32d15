"""The scripts under tools/ (not a package), loaded as modules so tests can call them."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

TOOLS = pathlib.Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str) -> types.ModuleType:
    """tools/<name>.py as the module `name` (registered in sys.modules: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
