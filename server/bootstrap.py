"""Start-up shared by the server, the scheduler, the stack and the key CLI: read the settings,
connect, migrate (`billing-server migrate` and the stack) or check that the schema is current
(everything else), seed. A problem there is the operator's to fix, so it is one line naming the
setting and exit status 2, never a traceback."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import sys

import peewee

from server.config import ConfigError, Settings
from server.observability import logs, metrics
from server.persistence import catalogue, db, migrations
from server.services import keys

log = logging.getLogger("billing.bootstrap")

EXIT_CONFIG = 2


class SchemaBehind(ConfigError):
    """The database lacks migrations this release needs; only `billing-server migrate` applies them."""


def _unusable_catalogue(settings: Settings, reason: str) -> ConfigError:
    return ConfigError(f"BILLING_CATALOGUE {str(settings.catalogue_path)!r} is not usable: {reason}")


def prepare(settings: Settings, *, migrate: bool = True) -> None:
    """Bind the database, apply pending migrations (or, with `migrate=False`, refuse a schema
    that is behind), seed the plan catalogue, ensure the bootstrap key. Raises ConfigError naming
    DATABASE_URL or BILLING_CATALOGUE when either cannot be used."""
    try:
        rows = catalogue.load(settings.catalogue_path)
    except (OSError, ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        reason = (error.strerror if isinstance(error, OSError) else None) or str(error).splitlines()[0]
        raise _unusable_catalogue(settings, reason) from None
    try:
        db.connect(settings.database_url, max_connections=settings.grpc_threads + 4)
        with db.session():
            if migrate:
                applied = migrations.migrate()
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
            elif missing := migrations.pending():
                raise SchemaBehind(
                    f"DATABASE_URL ({settings.database_label}) has a schema that is behind "
                    f"(pending: {', '.join(missing)}): run `billing-server migrate` first"
                )
            try:
                catalogue.seed(rows)
            except ValueError as error:
                raise _unusable_catalogue(settings, str(error)) from None
            if settings.bootstrap_admin_key:
                keys.ensure_admin_key(settings.bootstrap_admin_key, now=dt.datetime.now(dt.timezone.utc))
    except (
        peewee.PeeweeException,
        peewee.ImproperlyConfigured,
        sqlite3.Error,
        RuntimeError,
    ) as error:  # RuntimeError: an unknown scheme
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"DATABASE_URL ({settings.database_label}) is not usable: {reason}") from None


def serve_metrics(program: str, setting: str, port: int, bind: str, *, collectors=()) -> None:
    """Start the process's /metrics listener; a port that cannot be bound is a start-up error."""
    try:
        metrics.serve(port, bind, collectors=collectors)
    except OSError as error:
        print(f"{program}: {setting} {port} cannot be bound on {bind}: {error.strerror}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def start(program: str, *, serving: bool = False, migrate: bool = False) -> Settings:
    """Settings from the environment, prepared; on a ConfigError print it and exit 2. A `serving`
    program refuses clear text off loopback before it touches the database. Only `migrate=True`
    (the migrate command and `make run`) changes the schema; the others refuse one that is behind."""
    try:
        logs.configure(logs.log_format(dict(os.environ)))
        settings = Settings.from_env()
        if serving:
            settings.refuse_plaintext_exposure()
        prepare(settings, migrate=migrate)
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return settings
