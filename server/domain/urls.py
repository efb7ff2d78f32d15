"""URL syntax, pure: what a URL that the service will dial (a webhook endpoint, a setting's
database, Redis, SMTP or upstream) or print (the public base) must look like before it is
stored or used.

urllib.parse splits almost anything without complaint (`https://a b/` has host `a b`), so a URL
that can never work was accepted and then failed forever. Checked here: a known scheme, no
whitespace or control characters anywhere, a host that is a DNS name (labels of letters, digits,
`-` and `_`, IDNA for the rest; 253 characters at most) or an IP literal (IPv6 in brackets), a
port in 1..65535, no `user:password@` unless the caller allows credentials, and a bounded length.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
import urllib.parse
from collections.abc import Collection

MAX_URL = 2048
MAX_HOST = 253
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def url_problem(
    url: str, schemes: Collection[str], *, credentials: bool = False, host_required: bool = True
) -> str | None:
    """Why `url` is not a usable URL of one of `schemes` (None if it is). A host, when present,
    must be valid even where `host_required` is False (sqlite:///file, postgresql:///db)."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters, got {len(url)}"
    if any(char.isspace() or unicodedata.category(char)[0] == "C" for char in url):
        return "must not contain spaces or control characters"
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:
        return "must have a port from 1 to 65535"
    if parsed.scheme not in schemes:
        return f"must start with {' or '.join(f'{s}://' for s in sorted(schemes))}"
    if port == 0:
        return "must have a port from 1 to 65535"
    if (parsed.username is not None or parsed.password is not None) and not credentials:
        return "must not carry a user name or password"
    host = parsed.hostname or ""
    if not host:
        return "must name a host" if host_required or parsed.netloc else None
    return _host_problem(host, bracketed="[" in parsed.netloc)


def _host_problem(host: str, *, bracketed: bool) -> str | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if bracketed:
        return None if address is not None and address.version == 6 else f"has an invalid IPv6 address {host[:64]!r}"
    if address is not None:
        return None if address.version == 4 else "must put an IPv6 address in brackets"
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return f"has an invalid host name {host[:64]!r}"
    labels = ascii_host.removesuffix(".").split(".")
    if _is_number(labels[-1]):
        return f"host {host[:64]!r} is not an IPv4 address in dotted decimal (like 192.0.2.10)"
    if len(ascii_host) > MAX_HOST or not all(_LABEL.fullmatch(label) for label in labels):
        return f"has an invalid host name {host[:64]!r}"
    return None


def _is_number(label: str) -> bool:
    """WHATWG URL: a host whose last label is a number is an IPv4 address to a resolver (127.1,
    2130706433, 0x7f000001 and 0177.0.0.1 are all 127.0.0.1; 999.1.1.1 is a mistyped address),
    so it must be written in dotted decimal, which ipaddress accepted already."""
    return label.isdigit() or (label[:2] == "0x" and all(c in string.hexdigits for c in label[2:]))
