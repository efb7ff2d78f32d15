"""Portal tokens: a tenant id and an expiry, signed with HMAC-SHA256 under the server's portal secret.

Stateless, so every replica that shares the secret accepts every link, and nothing is stored per
link. A token is `<payload>.<signature>`, both base64url without padding (safe in a URL path):
the payload is JSON `[tenant_id, expiry in Unix seconds]`. Any change to either part, or another
secret, fails the constant-time signature check.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json

from server.domain.errors import Unauthenticated

VALIDITY = dt.timedelta(hours=1)


class RefusedToken(Unauthenticated):
    """A link that opens nothing: its holder gets the 401 page."""


class InvalidToken(RefusedToken):
    """The link is tampered with, malformed or signed with another secret."""

    def __init__(self) -> None:
        super().__init__("this portal link is not valid", reason="PORTAL_TOKEN_INVALID")


class ExpiredToken(RefusedToken):
    def __init__(self, expired_at: dt.datetime) -> None:
        super().__init__(f"this portal link expired at {expired_at.isoformat()}", reason="PORTAL_TOKEN_EXPIRED")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def sign(secret: bytes, tenant_id: str, now: dt.datetime) -> tuple[str, dt.datetime]:
    """A token for `tenant_id` valid for VALIDITY from `now` (whole seconds), and its expiry."""
    expires_at = (now + VALIDITY).replace(microsecond=0)
    payload = _b64(json.dumps([tenant_id, int(expires_at.timestamp())], separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}", expires_at


def verify(secret: bytes, token: str, now: dt.datetime) -> str:
    """The tenant id a valid, unexpired token was signed for; InvalidToken or ExpiredToken otherwise."""
    payload, _, signature = token.partition(".")
    if not hmac.compare_digest(signature.encode(), _signature(secret, payload).encode()):
        raise InvalidToken()
    try:
        tenant_id, expiry = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidToken() from None  # signed but not ours: a secret shared with something else
    if not isinstance(tenant_id, str) or not isinstance(expiry, int):
        raise InvalidToken()
    expires_at = dt.datetime.fromtimestamp(expiry, dt.timezone.utc)
    if now >= expires_at:
        raise ExpiredToken(expires_at)
    return tenant_id
