"""`generated/` must be exactly what `make generate` writes from protos/."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import pathlib

import pytest

from server import envoy_launcher
from server.config import Settings
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
    generated = json.loads((repo_root / "generated" / "openapi.json").read_text())
    # Served as generated, but naming where this stack's REST listener really is.
    assert document == {**generated, "servers": [{"url": stack.rest_url}]}
    assert stack.rest_url != "http://127.0.0.1:8080"
    assert document["openapi"].startswith("3.")
    assert document["paths"]["/billing/health"]["get"]["security"] == []
    assert (
        len([op for ops in document["paths"].values() for op in ops]) == 43
    )  # 19 endpoints, 3 of the portal, 7 of webhooks, 5 of meters, 3 of plans (25-27), 5 of credits (28-32), itself
    assert document["paths"]["/billing/portal/{token}"]["get"]["security"] == []


@pytest.mark.parametrize(
    "changes, base",
    [
        ({"http_port": 18443}, "http://127.0.0.1:18443"),
        (
            {"http_port": 18443, "tls_cert": pathlib.Path("c.pem"), "tls_key": pathlib.Path("k.pem")},
            "https://127.0.0.1:18443",
        ),
        ({"public_url": "https://billing.example.com/api"}, "https://billing.example.com/api"),
    ],
)
def test_the_served_openapi_document_names_the_public_base(tmp_path, repo_root, changes, base):
    """`servers` always said http://127.0.0.1:8080, whatever the port, TLS or public URL."""
    envoy_launcher.write_openapi(dataclasses.replace(Settings(), **changes), tmp_path)
    served = json.loads(envoy_launcher.openapi_path(tmp_path).read_text())
    assert served["servers"] == [{"url": base}]
    assert {**served, "servers": None} == {
        **json.loads((repo_root / "generated" / "openapi.json").read_text()),
        "servers": None,
    }
