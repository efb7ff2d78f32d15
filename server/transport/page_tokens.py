"""Page tokens bound to the list they came from (AIP-158).

A token is issued for one parent and one filter; used with another, the page it points to
would belong to a different list, so it is refused (400 naming page_token) rather than
silently mixing lists. The servicers seal the store's keyset token with a digest of the
request's parent and filter, and unseal it before asking for the next page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from server.domain.errors import InvalidArgument


def _scope(parent: str, filters: tuple) -> str:
    return hashlib.sha256(json.dumps([parent, *filters]).encode()).hexdigest()[:16]


def seal(token: str, parent: str, *filters) -> str:
    """The client's token for `token` of the list of `parent` filtered by `filters` ('' stays '')."""
    if not token:
        return ""
    return base64.urlsafe_b64encode(json.dumps([_scope(parent, filters), token]).encode()).decode()


def unseal(token: str, parent: str, *filters) -> str:
    """The store's token inside a client's token; 400 if it was issued for another list."""
    if not token:
        return ""
    try:
        scope, inner = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token is not a token this server issued", field="page_token") from None
    if scope != _scope(parent, filters) or not isinstance(inner, str):
        raise InvalidArgument(
            "page_token was issued for another parent or filter; "
            "send the same parent and filter as the request that returned it",
            field="page_token",
            reason="PAGE_TOKEN_MISMATCH",
        )
    return inner
