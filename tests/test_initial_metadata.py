"""Initial metadata attached to a call's last batch (server/transport/initial_metadata.py): on a
real grpcio server it reaches the client exactly as `send_initial_metadata` would, on success, on
an error and beside metadata the handler sends itself; and the hook is in place with the grpcio
this project pins (a grpcio that moved the private step would fall back, slower)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from server.transport import initial_metadata

OURS = (("x-ratelimit-limit", "50"), ("x-ratelimit-remaining", "49"))
OWN = ("x-own", "1")


def _attach_then_return(request, context):
    initial_metadata.attach(context, OURS)
    return b"reply"


def _attach_then_abort(request, context):
    initial_metadata.attach(context, OURS)
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def _attach_then_send_own(request, context):
    initial_metadata.attach(context, OURS)
    context.send_initial_metadata((OWN,))
    return b"reply"


def _plain(request, context):
    return b"reply"


HANDLERS = {
    "Return": _attach_then_return,
    "Abort": _attach_then_abort,
    "SendOwn": _attach_then_send_own,
    "Plain": _plain,
}


@pytest.fixture(scope="module")
def channel():
    assert initial_metadata.install(), "grpcio's initial-metadata step moved: the hook fell back"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Metadata", {name: grpc.unary_unary_rpc_method_handler(h) for name, h in HANDLERS.items()}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as open_channel:
        yield open_channel
    server.stop(0)


def _call(channel, name: str):
    return channel.unary_unary(f"/test.Metadata/{name}").with_call(b"", timeout=5)


def _ours(metadata) -> list[tuple[str, str]]:
    return [(k, v) for k, v in metadata if k.startswith("x-")]


def test_attached_metadata_arrives_with_the_reply(channel):
    reply, call = _call(channel, "Return")
    assert reply == b"reply"
    assert _ours(call.initial_metadata()) == list(OURS)


def test_attached_metadata_arrives_with_an_error(channel):
    with pytest.raises(grpc.RpcError) as failed:
        _call(channel, "Abort")
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert _ours(failed.value.initial_metadata()) == list(OURS)


def test_attached_and_sent_metadata_both_arrive(channel):
    _, call = _call(channel, "SendOwn")
    assert _ours(call.initial_metadata()) == [*OURS, OWN]


def test_a_call_that_attaches_nothing_gets_none_of_another_calls(channel):
    _call(channel, "Return")
    _, call = _call(channel, "Plain")
    assert _ours(call.initial_metadata()) == []
