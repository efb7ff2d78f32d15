"""The servicers' edge: checks every request message before any servicer sees it.

One walk over the message's descriptor, so every method gets the same rules without listing its
fields: strings hold no NUL and are at most MAX_STRING characters, enum fields hold a number the
enum defines, Timestamps are in google.protobuf.Timestamp's range, and `*_date` strings are empty
or a calendar date written strictly YYYY-MM-DD within DATE_RANGE, and the fields a method's
REST path carries (`{id}`) are not empty. Rules that depend on meaning (other required fields,
e-mail syntax, batch sizes) stay with the services.

Invalid UTF-8 never reaches a message: protobuf refuses to parse it. `undecodable_field` finds
which string field it was in, so the caller can name it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from google.api import annotations_pb2
from google.protobuf import descriptor, descriptor_pool, empty_pb2, message, unknown_fields

from server.domain.errors import FieldViolation

MAX_STRING = 1024
# Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
# Ranges end a day early so that "the day after the last" is still a date.
DATE_RANGE = (dt.date(1970, 1, 1), dt.date(9999, 12, 30))
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PATH_VARIABLE = re.compile(r"{([a-z_.]+)")
_TIMESTAMP = "google.protobuf.Timestamp"

FD = descriptor.FieldDescriptor


def _path(prefix: str, name: str, index: int | None = None) -> str:
    field = f"{prefix}.{name}" if prefix else name
    return field if index is None else f"{field}[{index}]"


def _string(value: str, name: str) -> str | None:
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


def _scalar(field: FD, value) -> str | None:
    if field.type == FD.TYPE_STRING:
        return _string(value, field.name)
    enum = field.enum_type  # set on enum fields only
    if enum is not None and enum.values_by_number.get(value) is None:
        return f"{value} is not a value of {enum.name}"
    return None


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


def violations(request: message.Message, prefix: str = "") -> list[FieldViolation]:
    """Every field of `request` (nested messages and repeated fields too) that breaks a rule."""
    found = []
    for field, value in request.ListFields():
        repeated = field.is_repeated
        items = list(enumerate(value)) if repeated else [(None, value)]
        for index, item in items:
            path = _path(prefix, field.name, index)
            if field.message_type is not None and field.message_type.full_name == _TIMESTAMP:
                problem = _timestamp(item)
            elif field.type == FD.TYPE_MESSAGE:
                found.extend(violations(item, path))
                continue
            else:
                problem = _scalar(field, item)
            if problem:
                found.append(FieldViolation(path, f"{path} {problem}"))
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
