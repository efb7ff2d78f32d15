"""A property test over every gRPC method: requests built from the method's descriptor, with
NUL and over-long strings, unknown enum numbers, Timestamps out of range and extreme integers,
never get UNKNOWN, INTERNAL or UNAVAILABLE (a healthy database is up), on both backends."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor, descriptor_pool, message_factory, struct_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import insert_subscription
from server.transport.app import SERVICE_NAMES

EXAMPLES = 120
FD = descriptor.FieldDescriptor
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}
METHODS = [method for name in SERVICE_NAMES for method in descriptor_pool.Default().FindServiceByName(name).methods]
KNOWN = ["free", "standard", "ACTIVE", "2026-01-01", "9999-12-31", "2026-1-1", "a@b.co", "/v1/x"]


def strings(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=12),
        st.sampled_from(known),
        st.just("\x00"),
        st.text(min_size=1020, max_size=1100),
        st.text(alphabet="\x00\x01\ufffe\U0001f600", max_size=4),
    )


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    seconds = st.one_of(
        st.integers(-62135596801, 253402300800),
        st.sampled_from([-62135596801, -62135596800, 0, 253402300799, 253402300800]),
        st.integers(-(2**63), 2**63 - 1),
    )
    nanos = st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 1_000_000_000, 2_000_000_000]))
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


def scalar(field: FD, known: list[str]) -> st.SearchStrategy:
    if field.type == FD.TYPE_STRING:
        return strings(known)
    if field.type == FD.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-(2**31), 2**31 - 1))
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True)
    if field.type in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.one_of(st.integers(-5, 1000), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(st.integers(-5, 1000), st.integers(-(2**31), 2**31 - 1))


def structs(known: list[str]) -> st.SearchStrategy[struct_pb2.Struct]:
    """Event properties: scalars of every kind, and the nesting the service must refuse."""
    scalars = st.one_of(strings(known), st.floats(allow_nan=True), st.booleans(), st.none())
    values = st.one_of(
        scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=4), scalars, max_size=2)
    )

    def build(fields: dict) -> struct_pb2.Struct:
        made = struct_pb2.Struct()
        made.update(fields)
        return made

    return st.dictionaries(strings(known), values, max_size=4).map(build)


def value(field: FD, known: list[str], depth: int) -> st.SearchStrategy:
    if field.type != FD.TYPE_MESSAGE:
        return scalar(field, known)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return timestamps()
    if field.message_type.full_name == "google.protobuf.Struct":
        return structs(known)
    if field.message_type.GetOptions().map_entry:
        key, item = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return st.dictionaries(scalar(key, known), value(item, known, depth), max_size=3)
    return messages(field.message_type, known, depth + 1)


def messages(message_type: descriptor.Descriptor, known: list[str], depth: int = 0) -> st.SearchStrategy:
    cls = message_factory.GetMessageClass(message_type)
    parts = {}
    for field in message_type.fields:
        one = value(field, known, depth)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        parts[field.name] = st.lists(one, max_size=3) if field.is_repeated and not is_map else st.one_of(st.none(), one)

    def build(values: dict):
        made = cls()
        for name, item in values.items():
            if item is None or item == []:
                continue
            target = getattr(made, name)
            if isinstance(item, list):
                target.extend(item)
            elif isinstance(item, dict):
                target.update(item)
            elif hasattr(item, "SerializeToString"):
                target.CopyFrom(item)
            else:
                setattr(made, name, item)
        return made

    return st.fixed_dictionaries(parts).map(build)


@pytest.fixture(scope="module")
def known_ids(stack):
    sub = insert_subscription("fuzz-tenant")
    return [*KNOWN, sub.id, "fuzz-tenant"]


# Publishing or archiving a catalogue plan would change what every later test on the shared
# database bills: these methods are fuzzed with every known id but the catalogue's plan ids.
CATALOGUE_WRITES = {"CreatePlan", "UpdatePlan", "DeletePlan"}
CATALOGUE_PLANS = {"free", "standard", "premium", "enterprise"}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_no_request_gets_a_server_error(stack, known_ids, method, calls_per_backend):
    if method.name in CATALOGUE_WRITES:
        known_ids = [known for known in known_ids if known not in CATALOGUE_PLANS]
    cls = message_factory.GetMessageClass(method.input_type)
    call = stack.channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}", request_serializer=cls.SerializeToString
    )

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=messages(method.input_type, known_ids))
    def check(request):
        calls_per_backend[stack.backend] += 1
        try:
            call(request, metadata=stack.auth(stack.admin_key), timeout=30)
        except grpc.RpcError as error:
            assert error.code() not in FORBIDDEN, (error.code(), error.details(), request)

    check()
