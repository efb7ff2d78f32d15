"""The one alphabet of identifiers a client chooses or sends (tenant ids, event ids, plan ids, the
ids of subscriptions, invoices, webhook endpoints and deliveries): `[A-Za-z0-9._:@-]`, 1 to 128
characters.

Why so narrow: identifiers travel where free text cannot. The gateway writes a tenant id into the
`x-tenant-id` header it forwards (Envoy cannot write CR, LF or NUL, and answered every call 503),
ids appear in REST paths, log lines and webhook payloads. The alphabet covers every id the
service issues (`sub_` + hex, `inv_`, `we_`, `dlv_`), Envoy's `x-request-id` UUIDs (the
gateway's event ids, with the `:usage` suffix too), and e-mail-like or namespaced tenant ids
(`team@acme`, `org:acme`). Empty is not judged here: whether an id is required is the caller's rule.
"""

from __future__ import annotations

import re
import string

MAX_IDENTIFIER = 128  # the width of every id column
ALPHABET = "A-Z a-z 0-9 . _ : @ -"
CHARACTER_CLASS = "[A-Za-z0-9._:@-]"  # a regular expression's, for documents (OpenAPI) too
_IDENTIFIER = re.compile(CHARACTER_CLASS + "+")
_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._:@-")


def is_identifier_field(name: str) -> bool:
    """Whether a message field holds an identifier: `id` and every `*_id`."""
    return name == "id" or name.endswith("_id")


def identifier_problem(value: str) -> str | None:
    """Why a non-empty `value` is not an identifier (None if it is one, or is empty)."""
    if len(value) > MAX_IDENTIFIER:
        return f"must be at most {MAX_IDENTIFIER} characters, got {len(value)}"
    if value and not _IDENTIFIER.fullmatch(value):
        return f"must use only the characters {ALPHABET}, got {_shown(value)}"
    return None


def all_identifiers(values: list[str]) -> bool:
    """Whether every value is an identifier or empty, at C speed (a 1,000-event batch's ids at once)."""
    return max(map(len, values), default=0) <= MAX_IDENTIFIER and _CHARACTERS.issuperset("".join(values))


def _shown(value: str) -> str:
    """The value as a Python literal (CR, LF and NUL escaped), shortened: safe in a message."""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))
