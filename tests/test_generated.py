"""`generated/` must be exactly what `make generate` writes from protos/."""

from __future__ import annotations

import filecmp
import importlib.util


def test_generated_code_matches_protos(repo_root, tmp_path):
    spec = importlib.util.spec_from_file_location("codegen", repo_root / "tools" / "codegen.py")
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    codegen.generate(tmp_path)
    committed = repo_root / "generated"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    extra = sorted(str(p.relative_to(committed)) for p in committed.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.relative_to(committed) not in fresh)
    assert not stale and not extra, f"generated/ is stale; run `make generate`: {stale or extra}"
