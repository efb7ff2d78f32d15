"""The servicers' edge (server/transport/validation.py) as a layer: a request that breaks a rule
is answered 400 naming every field at fault, before authentication or any servicer."""

from __future__ import annotations

from server.domain.errors import InvalidArgument
from server.transport import validation
from server.transport.interceptors.chain import Layer


class Undecodable:
    """Stands in for a request protobuf could not parse, so that the call can answer 400."""

    def __init__(self, field: str | None) -> None:
        self.field = field


class ValidationInterceptor(Layer):
    def wrap(self, method, handler):
        parse = handler.request_deserializer
        message_type = getattr(parse, "__self__", None)  # the generated stubs pass Message.FromString

        def tolerant(data: bytes):
            try:
                return parse(data)
            except Exception:  # noqa: BLE001 - DecodeError or its C twin; the field is found below
                found = message_type and validation.undecodable_field(message_type.DESCRIPTOR, data)
                return Undecodable(found or None)

        return super().wrap(method, handler)._replace(request_deserializer=tolerant)  # type: ignore[attr-defined]

    def around(self, behavior, request, context, method):
        if isinstance(request, Undecodable):
            where = request.field or "the request"
            raise InvalidArgument(
                f"{where} is not valid UTF-8 or not a valid protobuf message",
                field=request.field,
                reason="MALFORMED_REQUEST",
            )
        found = validation.missing_path_fields(method, request) + validation.violations(request)
        if found:
            raise InvalidArgument(
                "; ".join(v.description for v in found), violations=tuple(found), reason="INVALID_FIELD"
            )
        return behavior(request, context)
