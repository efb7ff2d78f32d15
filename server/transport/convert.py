"""The clock servicers read (timestamps in messages are built by server/resources.py)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The instant a call is handled: services take time as an argument, servicers supply it."""
    return dt.datetime.now(dt.timezone.utc)
