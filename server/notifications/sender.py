"""Delivery of built e-mails: SMTP when SMTP_URL is set (smtp://host:port), else `.eml` files in
OUTBOX_DIR named after the outbox dedup key (a resend overwrites the same file)."""

from __future__ import annotations

import email.message
import pathlib
import re
import smtplib
from urllib.parse import urlparse

from server.config import Settings


class SmtpSender:
    def __init__(self, host: str, port: int = 25, *, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def send(self, message: email.message.EmailMessage, key: str) -> None:
        """Raises on any refusal (e.g. 451) so the caller retries later."""
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)


class FolderSender:
    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = pathlib.Path(directory)

    def path_for(self, key: str) -> pathlib.Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".eml")

    def send(self, message: email.message.EmailMessage, key: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(key)
        partial = target.with_suffix(".eml.partial")
        partial.write_bytes(message.as_bytes())
        partial.replace(target)  # atomic: a reader never sees half a message


def from_settings(settings: Settings):
    if not settings.smtp_url:
        return FolderSender(settings.outbox_dir)
    url = urlparse(settings.smtp_url)
    if url.scheme != "smtp" or not url.hostname:
        raise ValueError(f"SMTP_URL must look like smtp://host:port, got {settings.smtp_url!r}")
    return SmtpSender(url.hostname, url.port or 25)
