"""Schema migrations, applied in order at start-up and recorded in `schema_migration`.

A migration is a function of a playhouse.migrations SchemaMigrator. Append new ones; never
edit one that has shipped. Each runs in its own transaction where the database allows it.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw
from playhouse.migrate import SchemaMigrator

from server.persistence import models
from server.persistence.db import database


class SchemaMigration(models.BaseModel):
    name = pw.CharField(primary_key=True, max_length=128)
    applied_at = models.UTCDateTimeField()


def _0001_initial(migrator: SchemaMigrator) -> None:
    database.create_tables(models.ALL_MODELS)


MIGRATIONS = [("0001_initial", _0001_initial)]


def migrate() -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run at every start."""
    database.create_tables([SchemaMigration])
    done = {row.name for row in SchemaMigration.select()}
    migrator = SchemaMigrator.from_database(database.obj)
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with database.atomic():
            step(migrator)
            SchemaMigration.insert(name=name, applied_at=dt.datetime.now(dt.timezone.utc)).on_conflict_ignore().execute()
        applied.append(name)
    return applied
