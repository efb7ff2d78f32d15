"""Start-up shared by the server, the scheduler, the stack and the key CLI: read the settings,
connect, migrate, seed. A problem there is the operator's to fix, so it is one line naming the
setting and exit status 2, never a traceback."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import sys

import peewee

from server.config import ConfigError, Settings
from server.persistence import catalogue, db, migrations
from server.services import keys

log = logging.getLogger("billing.bootstrap")

EXIT_CONFIG = 2


def prepare(settings: Settings) -> None:
    """Bind the database, apply migrations, seed the plan catalogue, ensure the bootstrap key.
    Raises ConfigError naming DATABASE_URL or BILLING_CATALOGUE when either cannot be used."""
    try:
        rows = catalogue.load(settings.catalogue_path)
    except (OSError, ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        reason = error.strerror if isinstance(error, OSError) else str(error).splitlines()[0]
        raise ConfigError(f"BILLING_CATALOGUE {str(settings.catalogue_path)!r} is not usable: {reason}") from None
    try:
        db.connect(settings.database_url, max_connections=settings.grpc_threads + 4)
        with db.session():
            applied = migrations.migrate()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            catalogue.seed(rows)
            if settings.bootstrap_admin_key:
                keys.ensure_admin_key(settings.bootstrap_admin_key, now=dt.datetime.now(dt.timezone.utc))
    except (peewee.PeeweeException, peewee.ImproperlyConfigured, sqlite3.Error,
            RuntimeError) as error:  # RuntimeError: an unknown scheme
        where = settings.database_url.split("@")[-1]
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"DATABASE_URL ({where}) is not usable: {reason}") from None


def start(program: str, *, serving: bool = False) -> Settings:
    """Settings from the environment, prepared; on a ConfigError print it and exit 2. A `serving`
    program refuses clear text off loopback before it touches the database."""
    try:
        settings = Settings.from_env()
        if serving:
            settings.refuse_plaintext_exposure()
        prepare(settings)
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return settings
