"""Log records as one JSON object per line (the default outside a terminal, for log shippers) or
as text for a person (BILLING_LOG_FORMAT=text, the default on a terminal).

Structured fields travel in a record's `fields` (`log.info("call", extra={"fields": {...}})`):
the JSON line carries them as keys beside time, level, logger and message; text appends them as
key=value.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from server.config import ConfigError

FORMATS = ("json", "text")


def _fields(record: logging.LogRecord) -> dict:
    return getattr(record, "fields", None) or {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        return super().formatMessage(record) + (f" {extra}" if extra else "")


def log_format(env: dict[str, str], stream=sys.stderr) -> str:
    chosen = env.get("BILLING_LOG_FORMAT") or ("text" if stream.isatty() else "json")
    if chosen not in FORMATS:
        raise ConfigError(f"BILLING_LOG_FORMAT must be json or text, got {chosen!r}")
    return chosen


def configure(chosen: str, stream=sys.stderr) -> None:
    """Route every logger of the process to `stream` in the chosen format, at INFO."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
