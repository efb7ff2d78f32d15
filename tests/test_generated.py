"""`generated/` must be exactly what `make generate` writes from protos/."""

from __future__ import annotations

import filecmp
import json

from tool_scripts import load_tool


def test_generated_code_matches_protos(repo_root, tmp_path):
    load_tool("codegen").generate(tmp_path)
    committed = repo_root / "generated"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    extra = sorted(
        str(p.relative_to(committed))
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(committed) not in fresh
    )
    assert not stale and not extra, f"generated/ is stale; run `make generate`: {stale or extra}"


def test_openapi_document_is_served_without_a_key(stack, repo_root):
    reply = stack.rest("GET", "/billing/openapi.json", key=None)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    document = reply.json()
    assert document == json.loads((repo_root / "generated" / "openapi.json").read_text())
    assert document["openapi"].startswith("3.")
    assert document["paths"]["/billing/health"]["get"]["security"] == []
    assert (
        len([op for ops in document["paths"].values() for op in ops]) == 30
    )  # 19 endpoints, 3 of the portal, 7 of webhooks, itself
    assert document["paths"]["/billing/portal/{token}"]["get"]["security"] == []
