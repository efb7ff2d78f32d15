"""Small conversions shared by servicers."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2


def now() -> dt.datetime:
    """The instant a call is handled: services take time as an argument, servicers supply it."""
    return dt.datetime.now(dt.timezone.utc)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None so that an unset datetime leaves the message field unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
