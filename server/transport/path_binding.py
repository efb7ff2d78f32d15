"""The path id is the id acted on.

Envoy's transcoder fills a request message from the body (and query) and from the path
variables, and a body field of the same name as a path variable overwrote it: `PUT
/billing/subscriptions/A` with `{"id": "B"}` acted on B. The transcoder keeps the original path
in `x-envoy-original-path`; this matches it against the method's `google.api.http` template and
refuses a request whose message disagrees with a path variable. Direct gRPC calls have no path
and nothing to check.
"""

from __future__ import annotations

import functools
import re
import urllib.parse

from google.api import annotations_pb2
from google.protobuf import descriptor_pool

from server.domain.errors import InvalidArgument

ORIGINAL_PATH = "x-envoy-original-path"
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=[^}]*)?\}")


def _pattern(template: str) -> tuple[re.Pattern, list[str]]:
    fields: list[str] = []
    parts, last = [], 0
    for match in _VARIABLE.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(f"(?P<v{len(fields)}>[^/]+)")
        fields.append(match.group(1))
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts) + "$"), fields


def http_rule(method: str) -> tuple[str, str] | None:
    """(verb, path template) of a gRPC method path such as /billing.v1.InvoiceService/GetInvoice,
    from its google.api.http annotation: verb "get", "put", "post", "delete" or "patch"; None
    for a method with no such rule (or a custom verb)."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return None
    rule = descriptor.GetOptions().Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    if kind is None or kind == "custom":
        return None
    return kind, getattr(rule, kind)


@functools.cache
def _binding(method: str) -> tuple[re.Pattern, list[str]] | None:
    """(path regex, variable fields) of a gRPC method path."""
    rule = http_rule(method)
    if rule is None:
        return None
    pattern = _pattern(rule[1])
    return pattern if pattern[1] else None


def binds(method: str) -> bool:
    """Whether `method`'s REST path has variables, i.e. whether `check` can refuse anything."""
    return _binding(method) is not None


def _field(message, dotted: str) -> str:
    for name in dotted.split("."):
        message = getattr(message, name)
    return message


def check(method: str, original_path: str, request) -> None:
    """Raise InvalidArgument naming the field if `request` disagrees with a variable of the path."""
    binding = _binding(method)
    if binding is None:
        return
    pattern, fields = binding
    match = pattern.match(original_path.partition("?")[0])
    if match is None:
        return
    for index, field in enumerate(fields):
        in_path = urllib.parse.unquote(match.group(f"v{index}"))
        in_message = _field(request, field)
        if in_message != in_path:
            raise InvalidArgument(
                f"{field} {in_message!r} in the body or query differs from {in_path!r} in the path: "
                "the path names the resource acted on",
                field=field,
                reason="PATH_MISMATCH",
            )
