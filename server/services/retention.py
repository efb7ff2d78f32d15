"""Retention of raw usage events: the counters that usage, daily and analytics read are kept on
the write path, so events past the retention window only serve deduplication, and go."""

from __future__ import annotations

import datetime as dt

from server.persistence.db import database
from server.persistence.models import RecordedUsageEvent


def purge_events(cutoff: dt.datetime, batch: int) -> int:
    """Delete up to `batch` events received before `cutoff`, in one transaction; returns how many."""
    with database.atomic():
        ids = (
            RecordedUsageEvent.select(RecordedUsageEvent.id).where(RecordedUsageEvent.received_at < cutoff).limit(batch)
        )
        return RecordedUsageEvent.delete().where(RecordedUsageEvent.id.in_(ids)).execute()
