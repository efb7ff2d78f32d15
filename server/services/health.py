"""Readiness: the server answers and so does its database."""

from __future__ import annotations

import logging

from server.persistence import db
from server.persistence.models import Plan

log = logging.getLogger("billing.health")

OK = "ok"
UNAVAILABLE = "unavailable"


def database_status() -> str:
    """'ok' when a read of a table succeeds (a moved-away SQLite file or a lost server fails here:
    a session re-opens a SQLite connection whose file left the path), else 'unavailable'; the
    cause goes to the log, never to the caller."""
    try:
        with db.session():
            Plan.select(Plan.id).limit(1).exists()
    except Exception as error:  # noqa: BLE001 - any failure means not ready; report it, don't crash
        log.warning("database check failed: %s: %s", type(error).__name__, str(error).splitlines()[:1])
        return UNAVAILABLE
    return OK
