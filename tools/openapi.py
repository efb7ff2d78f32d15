"""The OpenAPI 3 document of the REST API, generated from the protos as Envoy's transcoder speaks them.

Input: a descriptor set with source info (comments become descriptions) and the google.api.http
rules. Output follows envoy/envoy.yaml.tmpl's transcoder settings: snake_case names
(preserve_proto_field_names), 64-bit integers as JSON strings in responses (numbers or strings
accepted in requests), enums by name, every scalar printed (always_print_primitive_fields, so
response scalars are required), errors as google.rpc.Status. Constraints the server enforces
(server/domain, server/transport/validation.py) are read from the constants that enforce them.

`make generate` writes generated/openapi.json through tools/codegen.py; Envoy serves it at
GET /billing/openapi.json.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server import __version__  # noqa: E402
from server.domain import idempotency, identifiers, subscriptions, usage  # noqa: E402
from server.persistence.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE  # noqa: E402
from server.transport import validation  # noqa: E402
from server.transport.app import MAX_REQUEST_BYTES  # noqa: E402
from server.transport.interceptors.methods import KEYLESS_METHODS, LINK_METHODS, PUBLIC_METHODS  # noqa: E402

F = descriptor_pb2.FieldDescriptorProto
PACKAGE = "billing.v1"
REQUIRED = field_behavior_pb2.FieldBehavior.REQUIRED
INT64 = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
INT32 = {F.TYPE_INT32, F.TYPE_UINT32, F.TYPE_SINT32, F.TYPE_FIXED32, F.TYPE_SFIXED32}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    # An event's properties: an object of scalars (limits in server/domain/meters.py).
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
}
DATE = {
    "type": "string",
    "format": "date",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "description": f"YYYY-MM-DD (UTC), from {validation.DATE_RANGE[0]} to {validation.DATE_RANGE[1]}.",
}
IDENTIFIER = {
    "type": "string",
    "maxLength": identifiers.MAX_IDENTIFIER,
    "pattern": f"^{identifiers.CHARACTER_CLASS}*$",
    "description": f"An identifier: {identifiers.ALPHABET}, at most {identifiers.MAX_IDENTIFIER} characters.",
}
# Bounds the services enforce beyond the edge's generic ones, by "Message.field".
LIMITS: dict[str, dict[str, Any]] = {
    "UsageEvent.endpoint": {"minLength": 1, "maxLength": usage.MAX_ENDPOINT},
    "UsageEvent.event_id": {"maxLength": usage.MAX_EVENT_ID},
    "UsageEvent.count": {"minimum": 1, "maximum": usage.MAX_COUNT},
    "TrackUsageRequest.events": {"minItems": 1, "maxItems": usage.MAX_BATCH},
    "CreateSubscriptionRequest.tenant_id": {"minLength": 1},
    "CreateSubscriptionRequest.billing_email": {"format": "email", "maxLength": subscriptions.MAX_EMAIL},
    "UpdateSubscriptionRequest.billing_email": {"maxLength": subscriptions.MAX_EMAIL},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key and the same request gets the first answer again, marked "
    f"`{idempotency.REPLAYED_HEADER}: true`, and does nothing; kept {idempotency.KEPT_FOR.days * 24} hours per "
    "key holder (409 IDEMPOTENCY_KEY_MISMATCH for another request, IDEMPOTENCY_KEY_IN_USE while the first runs). "
    "See docs/guides/idempotency.md.",
    # Printable ASCII; HTTP trims a value's outer spaces, so none there.
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
}
REPLAYED = {
    idempotency.REPLAYED_HEADER: {
        "description": "`true` on an answer given again for a retried Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
PAGE_SIZE = {
    "type": "integer",
    "format": "int32",
    "minimum": 0,
    "description": f"Page size: 0 means {DEFAULT_PAGE_SIZE}; above {MAX_PAGE_SIZE} means {MAX_PAGE_SIZE}.",
}
ERRORS = {
    "413": f"Request body larger than {MAX_REQUEST_BYTES} bytes.",
    "400": "Invalid argument or failed precondition; the message names the field.",
    "401": "Missing, invalid or revoked API key.",
    "403": "The key may not call this method or reach this tenant.",
    "404": "Not found (also another tenant's resource).",
    "409": "Already exists.",
    "429": "Over the tier's rate limit; see retry-after.",
    "431": "The request line and headers are larger than 8 KiB (answered by Envoy, for any route).",
    "500": "Internal error; the message carries a request id.",
    "503": "The database is unavailable; retry later.",
}
# HttpBody methods serve PDFs, except the portal page.
HTML_METHODS = frozenset({"/billing.v1.PortalService/GetPortalPage"})
# Portal pages answer a refused link with a page, not a Status.
REFUSED_LINK = {
    "description": "The link expired or was altered: an HTML page saying so.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
STATUS_SCHEMA = {
    "type": "object",
    "description": "google.rpc.Status, as the transcoder and Envoy's own replies render it.",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
        "message": {"type": "string", "description": "What went wrong, naming the field."},
        "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
}


def is_required(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """google.api.field_behavior REQUIRED: the request must carry it."""
    return REQUIRED in field.options.Extensions[field_behavior_pb2.field_behavior]


def _comments(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[tuple, str]:
    """Leading comments by (file name, location path)."""
    found = {}
    for file in files:
        for location in file.source_code_info.location:
            text = location.leading_comments.strip()
            if text:
                found[(file.name, tuple(location.path))] = " ".join(text.split())
    return found


class Generator:
    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.files = [f for f in descriptor_set.file if f.package == PACKAGE]
        self.comments = _comments(self.files)
        self.messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str, tuple]] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, str, tuple]] = {}
        for file in descriptor_set.file:
            self._index(file.name, f".{file.package}", file.message_type, file.enum_type, ())
        self.schemas: dict[str, dict] = {}

    def _index(self, file_name, scope, messages, enums, path) -> None:
        for i, enum in enumerate(enums):
            self.enums[f"{scope}.{enum.name}"] = (enum, file_name, path + ((5,) if not path else (4,)) + (i,))
        for i, message in enumerate(messages):
            where = path + ((4,) if not path else (3,)) + (i,)
            self.messages[f"{scope}.{message.name}"] = (message, file_name, where)
            self._index(file_name, f"{scope}.{message.name}", message.nested_type, message.enum_type, where)

    def _describe(self, file_name: str, path: tuple, schema: dict) -> dict:
        text = self.comments.get((file_name, path))
        return {**schema, "description": text} if text and "description" not in schema else schema

    def field_schema(self, message_name: str, field: descriptor_pb2.FieldDescriptorProto, output: bool) -> dict:
        schema: dict[str, Any]
        found = self.messages.get(field.type_name) if field.type == F.TYPE_MESSAGE else None
        if found is not None and found[0].options.map_entry:  # map<string, V>: a JSON object of V
            return {
                "type": "object",
                "additionalProperties": self.field_schema(message_name, found[0].field[1], output),
            }
        if field.type == F.TYPE_MESSAGE:
            schema = WELL_KNOWN.get(field.type_name) or {"$ref": self.ref(field.type_name, output)}
        elif field.type == F.TYPE_ENUM:
            enum = self.enums[field.type_name][0]
            schema = {"type": "string", "enum": [v.name for v in enum.value]}
        elif field.type in INT64:
            schema = (
                {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
                if output
                else {"type": "integer", "format": "int64"}
            )
        elif field.type in INT32:
            schema = {"type": "integer", "format": "int32"}
        elif field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            schema = {"type": "number"}
        elif field.type == F.TYPE_BOOL:
            schema = {"type": "boolean"}
        elif field.type == F.TYPE_BYTES:
            schema = {"type": "string", "format": "byte"}
        else:
            schema = self.string_schema(field.name, output)
        if field.name == "page_size" and not output:
            schema = dict(PAGE_SIZE)
        limits = LIMITS.get(f"{message_name}.{field.name}", {})
        if field.label == F.LABEL_REPEATED:
            return {
                "type": "array",
                "items": {**schema, **{k: v for k, v in limits.items() if "Items" not in k}},
                **{k: v for k, v in limits.items() if "Items" in k},
            }
        return {**schema, **limits}

    @staticmethod
    def string_schema(name: str, output: bool) -> dict:
        if name.endswith("_date"):
            return dict(DATE)
        if output:
            return {"type": "string"}
        if identifiers.is_identifier_field(name):
            return dict(IDENTIFIER)
        return {"type": "string", "maxLength": validation.MAX_STRING, "pattern": "^[^\\u0000]*$"}

    def ref(self, type_name: str, output: bool) -> str:
        message, file_name, path = self.messages[type_name]
        name = type_name.removeprefix(f".{PACKAGE}.").replace(".", "")
        key = name if output else f"{name}Input"
        if key not in self.schemas:
            self.schemas[key] = {}  # reserve: recursion stops here
            self.schemas[key] = self.object_schema(message, file_name, path, output)
        return f"#/components/schemas/{key}"

    def object_schema(self, message, file_name, path, output: bool, skip: frozenset[str] = frozenset()) -> dict:
        properties, required = {}, []
        for i, field in enumerate(message.field):
            if field.name in skip:
                continue
            schema = self.field_schema(message.name, field, output)
            properties[field.name] = self._describe(file_name, path + (2, i), schema)
            always_printed = field.type != F.TYPE_MESSAGE and not field.proto3_optional
            if (output and always_printed) or (not output and is_required(field)):
                required.append(field.name)
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return self._describe(file_name, path, schema)

    def operation(self, service, method, file_name, path) -> tuple[str, str, dict]:
        rule = method.options.Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        template = getattr(rule, verb)
        message, message_file, message_path = self.messages[method.input_type]
        path_fields = re.findall(r"{([a-z_]+)}", template)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {**self.string_schema(name, False), "minLength": 1},
            }
            for name in path_fields
        ]
        full_name = f"/{PACKAGE}.{service.name}/{method.name}"
        operation: dict[str, Any] = {"operationId": f"{service.name}_{method.name}", "tags": [service.name]}
        operation = self._describe(file_name, path, operation)
        if rule.body == "*":
            body = self.object_schema(message, message_file, message_path, False, skip=frozenset(path_fields))
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        else:
            for i, field in enumerate(message.field):
                if field.name not in path_fields:
                    schema = self.field_schema(message.name, field, False)
                    parameters.append(
                        self._describe(
                            message_file,
                            message_path + (2, i),
                            {"name": field.name, "in": "query", "required": is_required(field), "schema": schema},
                        )
                    )
        mutating = verb in idempotency.MUTATING_VERBS
        if mutating:
            parameters.append(IDEMPOTENCY_KEY)
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = self.responses(method, full_name, bool(rule.body))
        if mutating:
            operation["responses"]["200"] = {**operation["responses"]["200"], "headers": REPLAYED}
        if full_name in KEYLESS_METHODS:
            operation["security"] = []
        return template, verb, operation

    def responses(self, method, full_name: str, has_body: bool) -> dict:
        if method.output_type == ".google.api.HttpBody":
            media = "text/html" if full_name in HTML_METHODS else "application/pdf"
            ok = {
                "description": "The document.",
                "content": {media: {"schema": {"type": "string", "format": "binary"}}},
            }
        else:
            ok = {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": self.ref(method.output_type, True)}}},
            }
        if full_name in PUBLIC_METHODS:  # health: 503 carries the same body, NOT_SERVING
            return {"200": ok, "503": {**ok, "description": "The database does not answer."}}
        codes = sorted([*ERRORS, *(["413"] if has_body else [])])
        errors: dict[str, dict[str, Any]] = {code: {"$ref": f"#/components/responses/Error{code}"} for code in codes}
        if full_name in LINK_METHODS:  # no key, so no 403 or tier limit; the link's own 401
            errors = {**{c: e for c, e in errors.items() if c not in ("403", "429")}, "401": REFUSED_LINK}
        return {"200": ok, **errors}

    def document(self) -> dict:
        paths: dict[str, dict] = {}
        for file in self.files:
            for s, service in enumerate(file.service):
                for m, method in enumerate(service.method):
                    template, verb, operation = self.operation(service, method, file.name, (6, s, 2, m))
                    paths.setdefault(template, {})[verb] = operation
        paths["/billing/openapi.json"] = {
            "get": {
                "operationId": "OpenApi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
        return {
            "openapi": "3.0.3",
            "info": {
                "title": "Billing API",
                "version": __version__,
                "description": "REST face of billing.v1, transcoded by Envoy from gRPC. Generated from "
                "protos/ by tools/openapi.py; do not edit.",
            },
            # The default; Envoy serves the document with the real base (envoy_launcher.write_openapi).
            "servers": [{"url": "http://127.0.0.1:8080"}],
            "security": [{"bearer": []}],
            "paths": dict(sorted(paths.items())),
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: billing-keys create."}
                },
                "schemas": {"Status": STATUS_SCHEMA, **dict(sorted(self.schemas.items()))},
                "responses": {
                    f"Error{code}": {
                        "description": text,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                    }
                    for code, text in sorted(ERRORS.items())
                },
            },
        }


def render(descriptor_set: bytes) -> str:
    """The document as committed: stable key order, two-space indent, trailing newline."""
    parsed = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    return json.dumps(Generator(parsed).document(), indent=2) + "\n"
