"""Initial metadata that leaves with the response instead of in a batch of its own.

grpcio's sync server sends `context.send_initial_metadata(...)` at once, in a C-core batch of its
own that holds the interpreter lock and adds a completion event on the one polling thread: under
load the largest single item of a tenant-key GetPlan's GIL time (profiled with py-spy --gil).
The batch that ends a unary call carries initial metadata anyway (empty unless some went before),
and `attach` hands ours to it, so the headers and the response leave together.

This reaches into grpcio's private `_server._get_initial_metadata` (grpcio is pinned to 1.85.*,
and tests/test_initial_metadata.py fails if the hook is not in place); where that function is
missing, `attach` sends the metadata at once, as grpcio's public API does.
"""

from __future__ import annotations

import grpc
from grpc import _server

_ATTACHED = "billing_attached_initial_metadata"
_grpc_initial_metadata = getattr(_server, "_get_initial_metadata", None)


def _with_attached(state, metadata):
    attached = getattr(state, _ATTACHED, None)
    if attached:
        metadata = attached if metadata is None else (*attached, *metadata)
    return _grpc_initial_metadata(state, metadata)  # type: ignore[misc]


def install() -> bool:
    """Hook grpcio's initial-metadata step (idempotent); False where this grpcio has no such step."""
    if _grpc_initial_metadata is None:
        return False
    _server._get_initial_metadata = _with_attached
    return True


def attach(context: grpc.ServicerContext, metadata: tuple[tuple[str, str], ...]) -> None:
    """Send `metadata` as initial metadata with the call's first response batch, after any
    attached before (the rate limit's headers, then an idempotent replay's)."""
    state = getattr(context, "_state", None)
    if _server._get_initial_metadata is _with_attached and state is not None:
        setattr(state, _ATTACHED, (*getattr(state, _ATTACHED, ()), *metadata))
    else:
        context.send_initial_metadata(metadata)
