"""Keyset pagination, newest first, over (created_at, id).

The page token is opaque to clients: base64 of the last row's sort key, so pages stay stable
while rows are added (an offset would skip or repeat rows).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import TypeVar

import peewee as pw

from server.domain.errors import InvalidArgument
from server.persistence.models import Invoice, Meter, Subscription

# The tables listed page by page: each has a string id and a created_at.
_Listed = TypeVar("_Listed", Invoice, Meter, Subscription)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """AIP-158: 0 means the default, more than the maximum means the maximum; negative is a 400."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative, got {requested}", field="page_size")
    return min(requested, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def _encode(created_at: dt.datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), row_id]).encode()).decode()


def _decode(token: str) -> tuple[dt.datetime, str]:
    try:
        created_at, row_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return dt.datetime.fromisoformat(created_at), str(row_id)
    except (ValueError, TypeError):
        raise InvalidArgument("page_token is not a token this server issued", field="page_token") from None


def paginate(query: pw.ModelSelect[_Listed], model: type[_Listed], size: int, token: str) -> tuple[list[_Listed], str]:
    """One page of `query` (newest first) and the token of the next page ('' on the last)."""
    size = page_size(size)
    if token:
        created_at, row_id = _decode(token)
        query = query.where((model.created_at < created_at) | ((model.created_at == created_at) & (model.id < row_id)))
    rows = list(query.order_by(model.created_at.desc(), model.id.desc()).limit(size + 1))
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, _encode(rows[-1].created_at, rows[-1].id)
