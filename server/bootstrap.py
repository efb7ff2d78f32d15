"""Start-up shared by the server, the scheduler and the stack: connect, migrate, seed."""

from __future__ import annotations

import datetime as dt
import logging

from server.config import Settings
from server.persistence import catalogue, db, migrations
from server.services import keys

log = logging.getLogger("billing.bootstrap")


def prepare(settings: Settings) -> None:
    """Bind the database, apply migrations, seed the plan catalogue, ensure the bootstrap key."""
    db.connect(settings.database_url, max_connections=settings.grpc_threads + 4)
    with db.session():
        applied = migrations.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        catalogue.seed(settings.catalogue_path)
        if settings.bootstrap_admin_key:
            keys.ensure_admin_key(settings.bootstrap_admin_key, now=dt.datetime.now(dt.timezone.utc))
