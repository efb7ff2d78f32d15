"""The servicers' edge: checks every request message before any servicer sees it.

One walk over the message's descriptor, so every method gets the same rules without listing its
fields: strings hold no NUL and are at most MAX_STRING characters, enum fields hold a number the
enum defines, Timestamps are in google.protobuf.Timestamp's range, and `*_date` strings are empty
or a calendar date written strictly YYYY-MM-DD within DATE_RANGE, and the fields a method's
REST path carries (`{id}`) are not empty, and identifiers (`id`, `*_id`) use the one alphabet of
server/domain/identifiers.py. Rules that depend on meaning (other required fields,
e-mail syntax, batch sizes) stay with the services.

Invalid UTF-8 never reaches a message: protobuf refuses to parse it. `undecodable_field` finds
which string field it was in, so the caller can name it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor, descriptor_pool, empty_pb2, message, unknown_fields

from server.domain import identifiers
from server.domain.errors import FieldViolation

MAX_STRING = 1024
# Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
# Ranges end a day early so that "the day after the last" is still a date.
DATE_RANGE = (dt.date(1970, 1, 1), dt.date(9999, 12, 30))
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATH_VARIABLE = re.compile(r"{([a-z_.]+)")
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"

FD = descriptor.FieldDescriptor


def _path(prefix: str, name: str, index: int | None = None) -> str:
    """`name` (with its `index`) below `prefix`; either part may be empty."""
    field = f"{prefix}.{name}" if prefix and name else prefix or name
    return field if index is None else f"{field}[{index}]"


def _string(value: str, name: str) -> str | None:
    if identifiers.is_identifier_field(name):
        return identifiers.identifier_problem(value)
    if "\x00" in value:
        return "must not contain NUL characters"
    if len(value) > MAX_STRING:
        return f"must be at most {MAX_STRING} characters, got {len(value)}"
    if name.endswith("_date") and value:
        return _date(value)
    return None


def _date(value: str) -> str | None:
    try:
        day = dt.date.fromisoformat(value) if _DATE.fullmatch(value) else None
    except ValueError:
        day = None
    if day is None:
        return f"must be a date as YYYY-MM-DD, got {value[:40]!r}"
    if not DATE_RANGE[0] <= day <= DATE_RANGE[1]:
        return f"must be between {DATE_RANGE[0]} and {DATE_RANGE[1]}, got {value}"
    return None


def _timestamp(value) -> str | None:
    if not MIN_SECONDS <= value.seconds <= MAX_SECONDS or not 0 <= value.nanos <= 999_999_999:
        return "must be a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    return None


def _enum(enum: descriptor.EnumDescriptor, value: int) -> str | None:
    if enum.values_by_number.get(value) is None:
        return f"{value} is not a value of {enum.name}"
    return None


# A column check: the values of one field across messages -> (index, path below the value, problem).
Check = Callable[[list], list[tuple[int, str, str]]]


def _each(rule: Callable[[Any], str | None], all_fine: Callable[[list], bool] | None = None) -> Check:
    """A scalar rule as a column check: `all_fine` clears the usual column at C speed (joins,
    min/max, sets); only a column it does not clear is checked value by value."""

    def check(values: list) -> list[tuple[int, str, str]]:
        if all_fine is not None and all_fine(values):
            return []
        return [(i, "", problem) for i, value in enumerate(values) if (problem := rule(value))]

    return check


def _plain_strings(values: list[str]) -> bool:
    return "\x00" not in "".join(values) and max(map(len, values), default=0) <= MAX_STRING


def _timestamps_in_range(values: list) -> bool:
    seconds, nanos = [t.seconds for t in values], [t.nanos for t in values]
    return MIN_SECONDS <= min(seconds) <= max(seconds) <= MAX_SECONDS and 0 <= min(nanos) <= max(nanos) <= 999_999_999


def _map_check(entry: descriptor.Descriptor) -> Check | None:
    """A map field's check: keys, and string values, as strings; a map of messages (a Struct's
    fields) is left to the service that reads it."""
    if entry.fields_by_name["value"].type != FD.TYPE_STRING:
        return None

    def check(maps: list) -> list[tuple[int, str, str]]:
        return [
            (i, key if problem_of == "value" else "", problem)
            for i, entries in enumerate(maps)
            for key, value in entries.items()
            for problem_of, problem in (("key", _string(key, "")), ("value", _string(value, "")))
            if problem
        ]

    return check


def _check(field: FD) -> Check | None:
    """The column check of one field, None where no rule applies (numbers, bools, bytes, and
    google.protobuf.Struct, whose limits are the meters' own: server/domain/meters.py)."""
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            return _map_check(field.message_type)
        if field.message_type.full_name == _STRUCT:
            return None
        if field.message_type.full_name == _TIMESTAMP:
            return _each(_timestamp, _timestamps_in_range)
        return functools.partial(_problems, message_type=field.message_type)
    if field.type == FD.TYPE_STRING:
        rule = functools.partial(_string, name=field.name)
        if identifiers.is_identifier_field(field.name):
            return _each(rule, identifiers.all_identifiers)
        return _each(rule, None if field.name.endswith("_date") else _plain_strings)
    if field.enum_type is not None:
        numbers = frozenset(field.enum_type.values_by_number)
        return _each(functools.partial(_enum, field.enum_type), numbers.issuperset)
    return None


@functools.cache
def _checked_fields(message_type: descriptor.Descriptor) -> tuple[tuple[str, bool, Check], ...]:
    """(name, checked value by value, check): a map is checked as one value, like a scalar."""
    return tuple(
        (field.name, field.is_repeated and not _is_map(field), check)
        for field in message_type.fields
        if (check := _check(field)) is not None
    )


def _is_map(field: FD) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@functools.cache
def path_fields(method: str) -> tuple[str, ...]:
    """Fields that `method` ("/billing.v1.PlanService/GetPlan") binds from its REST path."""
    found = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
    rule = found.GetOptions().Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    path = rule.custom.path if kind == "custom" else getattr(rule, kind) if kind else ""
    return tuple(_PATH_VARIABLE.findall(path))


def missing_path_fields(method: str, request: message.Message) -> list[FieldViolation]:
    """A path field left empty (possible over gRPC only) is a 400, not a 404 for id ''."""
    return [FieldViolation(name, f"{name} is required") for name in path_fields(method) if not getattr(request, name)]


def violations(request: message.Message) -> list[FieldViolation]:
    """Every field of `request` (nested messages and repeated fields too) that breaks a rule."""
    faults = _problems([request], request.DESCRIPTOR)  # type: ignore[arg-type]  # upb's Descriptor is the same
    return [FieldViolation(path, f"{path} {problem}") for _, path, problem in faults]


def _problems(messages: list, message_type: descriptor.Descriptor) -> list[tuple[int, str, str]]:
    """(index in `messages`, path within that message, problem) of each field at fault, in the
    messages' order. One field of all the messages at a time: a large batch is one column per
    field, several times cheaper than walking it message by message and writing every path."""
    found: list[tuple[int, str, str]] = []
    for name, repeated, check in _checked_fields(message_type):
        if repeated:
            for i, parent in enumerate(messages):
                values = getattr(parent, name)
                if values:
                    found.extend((i, _path(f"{name}[{j}]", path), problem) for j, path, problem in check(list(values)))
        else:
            column = [getattr(parent, name) for parent in messages]
            found.extend((i, _path(name, path), problem) for i, path, problem in check(column))
    found.sort(key=lambda fault: fault[0])  # stable: within a message, fields stay in order
    return found


def undecodable_field(message_type: descriptor.Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field in `data` that is not valid UTF-8 (None if none is)."""
    holder = empty_pb2.Empty()
    try:
        holder.ParseFromString(data)
    except message.DecodeError:
        return None
    fields = message_type.fields_by_number
    seen: dict[int, int] = {}
    # Iterable by __getitem__, as its docstring shows; the stubs declare no __iter__.
    for unknown in unknown_fields.UnknownFieldSet(holder):  # type: ignore[attr-defined]
        field = fields.get(unknown.field_number)
        if field is None or unknown.wire_type != 2:  # length-delimited only
            continue
        seen[field.number] = seen.get(field.number, -1) + 1
        position = seen[field.number] if field.is_repeated else None
        path = _path(prefix, field.name, position)
        if field.type == FD.TYPE_STRING:
            try:
                unknown.data.decode("utf-8")
            except UnicodeDecodeError:
                return path
        elif field.type == FD.TYPE_MESSAGE and field.message_type is not None:
            inner = undecodable_field(field.message_type, unknown.data, path)
            if inner:
                return inner
    return None
