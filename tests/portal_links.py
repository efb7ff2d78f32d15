"""Helpers for portal tests: links made through the API, and figures read off the page."""

from __future__ import annotations

import datetime as dt
import re

from server.domain import portal_tokens
from server.persistence import db
from server.services import portal


def create_link(stack, tenant_id: str, key: str = "admin"):
    return stack.rest("POST", "/billing/portal/sessions", key=key, body={"tenant_id": tenant_id})


def link_path(url: str) -> str:
    """The path of a portal URL, to call through the stack's own REST door."""
    return url[url.index(portal.PAGE_PATH) :]


def signed_token(tenant_id: str, now: dt.datetime) -> str:
    """A token signed with the stack's stored key, as if issued at `now`."""
    with db.session():
        secret = portal.signing_secret(None, now=now)
    return portal_tokens.sign(secret, tenant_id, now)[0]


def figure(html: str, element_id: str) -> str:
    """The text of the element with `element_id` (figures on the page carry ids)."""
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"no element #{element_id} in the page"
    return found.group(1)
