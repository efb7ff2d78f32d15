"""`buf lint` passes on protos/ with the committed buf.yaml (each disabled rule says why there)."""

from __future__ import annotations

import subprocess

from processes import BIN
from tool_scripts import load_tool


def test_buf_lint_passes(repo_root, tmp_path):
    image = tmp_path / "image.binpb"
    load_tool("codegen").write_described(image)
    done = subprocess.run(
        [str(BIN / "buf"), "lint", str(image), "--path", "billing/v1"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_field_has_a_field_behavior():
    from google.api import field_behavior_pb2
    from google.protobuf import descriptor_pool

    from server.transport.app import SERVICE_NAMES

    pool = descriptor_pool.Default()
    files = {pool.FindServiceByName(name).file for name in SERVICE_NAMES}
    missing = []

    def visit(message):
        if message.GetOptions().map_entry:  # a map field's synthetic entry: its key and value take no options
            return
        for field in message.fields:
            if not field.GetOptions().Extensions[field_behavior_pb2.field_behavior]:
                missing.append(field.full_name)
        for nested in message.nested_types:
            visit(nested)

    for file in files:
        for message in file.message_types_by_name.values():
            visit(message)
    assert not missing, f"fields without google.api.field_behavior: {missing}"
