"""Multi-row inserts on the ingestion hot path, without Peewee's per-value query building.

Profiling a large batch showed Peewee spending most of the call composing the INSERT (one node
per value), many times what the database itself took. This builds the same statement
once from the model's metadata, converts values with the fields' own `db_value` (so rows are
stored exactly as Peewee stores them), and leaves the SQL to the database.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence

import peewee as pw

from server.persistence.db import database


def insert_ignore_returning(
    model: type[pw.Model], fields: Sequence[pw.Field], rows: Sequence[Sequence], returning: pw.Field
) -> list:
    """INSERT rows, skipping those that hit a unique index; returns `returning` of the rows inserted."""
    if not rows:
        return []
    sql, params = _insert(model, fields, rows)
    sql += f" ON CONFLICT DO NOTHING RETURNING {_name(returning.column_name)}"
    return [row[0] for row in database.execute_sql(sql, params).fetchall()]


def insert_ignore(model: type[pw.Model], fields: Sequence[pw.Field], rows: Sequence[Sequence]) -> None:
    """INSERT rows, skipping those that hit a unique index."""
    if rows:
        sql, params = _insert(model, fields, rows)
        database.execute_sql(sql + " ON CONFLICT DO NOTHING", params)


def upsert(
    model: type[pw.Model],
    keys: Sequence[pw.Field],
    values: Sequence[pw.Field],
    rows: Sequence[Sequence],
    updates: dict[str, str],
) -> None:
    """INSERT rows (keys..., values...); where a row with the same keys exists, SET each column of
    `updates` to its SQL expression, in which `{t}` is the existing row's table and EXCLUDED the
    row offered (both backends' ON CONFLICT syntax; SET reads the old row throughout)."""
    if not rows:
        return
    sql, params = _insert(model, [*keys, *values], rows)
    table = _name(model._meta.table_name)
    sets = ", ".join(f"{_name(column)} = {expression.format(t=table)}" for column, expression in updates.items())
    sql += f" ON CONFLICT ({', '.join(_name(k.column_name) for k in keys)}) DO UPDATE SET {sets}"
    database.execute_sql(sql, params)


def add_counts(model: type[pw.Model], keys: Sequence[pw.Field], count: pw.Field, rows: Sequence[Sequence]) -> None:
    """INSERT rows (keys..., count), adding `count` to the row already there for the same keys."""
    column = _name(count.column_name)
    upsert(model, keys, [count], rows, {count.column_name: f"{{t}}.{column} + EXCLUDED.{column}"})


def _name(name: str) -> str:
    quote = database.obj.quote
    return f"{quote[0]}{name}{quote[1]}"


def _insert(model: type[pw.Model], fields: Sequence[pw.Field], rows: Sequence[Sequence]) -> tuple[str, list]:
    placeholder = "(" + ", ".join([database.obj.param] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {_name(model._meta.table_name)} ({', '.join(_name(f.column_name) for f in fields)}) "
        f"VALUES {', '.join([placeholder] * len(rows))}"
    )
    return sql, _db_values(fields, rows)


def _db_values(fields: Sequence[pw.Field], rows: Sequence[Sequence]) -> list:
    """Each value as its field stores it, one column at a time: a column of plain text fields
    holding strings is bound as it is (their db_value returns a str unchanged), and every other
    column converts each of its distinct values once: a batch repeats most of them (its
    subscription, counts, the time it was received), and the conversions (a datetime's to naive
    UTC above all) were a third of a 1,000-event call. On SQLite a datetime is bound as the text
    sqlite3's default adapter makes of it, once too."""
    as_text = isinstance(database.obj, pw.SqliteDatabase)
    columns: list[Iterable] = []
    for field, column in zip(fields, zip(*rows, strict=True), strict=True):
        if type(field) in _PLAIN_TEXT and all(type(value) is str for value in column):
            columns.append(column)
            continue
        converted = {value: _db_value(field, value, as_text) for value in set(column)}
        columns.append(map(converted.__getitem__, column))
    return list(itertools.chain.from_iterable(zip(*columns, strict=True)))


def _db_value(field: pw.Field, value, as_text: bool):
    db_value = field.db_value(value)
    return db_value.isoformat(" ") if as_text and isinstance(db_value, dt.datetime) else db_value


_PLAIN_TEXT = (pw.CharField, pw.TextField)  # exactly these: a subclass may convert its values
