"""Readiness: the server answers and so does its database."""

from __future__ import annotations

from server.persistence.db import database


def database_status() -> str:
    """'ok', or the database's error in one line."""
    try:
        database.execute_sql("SELECT 1").fetchone()
    except Exception as error:  # noqa: BLE001 - any failure means not ready; report it, don't crash
        return f"error: {type(error).__name__}: {error}".splitlines()[0]
    return "ok"
