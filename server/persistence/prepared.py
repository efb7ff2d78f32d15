"""Peewee queries composed once, then run with new values, for the per-call write path.

Profiling single-event tracking found Peewee composing SQL node by node on every execution
taking many times the GIL time the database itself did, and much of the rest going to turning
rows into model instances. A `Prepared` query is built
once per database (the SQL differs between backends) and per length of each IN list, with a
unique mark in place of each value; each run puts the values, converted by the field they are
compared with (`db_value`, as Peewee would), where the marks were. Literals the query holds
itself (e.g. 'VOID') stay as composed. For selects of the model's own columns (no aliases or
functions): each selected column names a field of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import peewee as pw

from server.persistence.db import database


class Prepared:
    def __init__(self, model: type[pw.Model], fields: Sequence[pw.Field], build: Callable[..., pw.Query]):
        """`build(*values)` makes the query; `fields[i]` converts the i-th value (each element of a
        list, for an IN list)."""
        self._model, self._fields, self._build = model, fields, build
        self._composed: dict = {}

    def rows(self, *values) -> list:
        """The query's model instances for `values`, built as Peewee builds a selected row (its
        cursor wrapper resolving columns on every execution cost as much again as the query)."""
        sql, params = self._compose(values)
        cursor = database.execute_sql(sql, params)
        fields = [self._model._meta.columns[column[0]] for column in cursor.description]
        found = []
        for row in cursor.fetchall():
            instance = self._model(__no_default__=1)
            instance.__data__ = {
                field.name: field.python_value(value) for field, value in zip(fields, row, strict=True)
            }
            found.append(instance)
        return found

    def _compose(self, values: tuple) -> tuple[str, list]:
        shape = tuple(len(v) if isinstance(v, (list, tuple)) else None for v in values)
        key = (database.obj, shape)
        if key not in self._composed:
            self._composed[key] = self._marked(shape)
        sql, template = self._composed[key]
        return sql, [
            value if field is None else field.db_value(values[i] if j is None else values[i][j])
            for field, i, j, value in template
        ]

    def _marked(self, shape: tuple) -> tuple[str, list]:
        """The SQL, and per parameter (field, value index, list index, None) or (None, -, -, literal)."""
        places, marks = {}, []
        for i, (n, field) in enumerate(zip(shape, self._fields, strict=True)):
            mark = [_Mark(f"\0{i}.{j}") for j in range(n)] if n is not None else _Mark(f"\0{i}")
            for j, m in enumerate(mark if n is not None else [mark]):
                places[m] = (field, i, j if n is not None else None, None)
            marks.append(mark)
        sql, params = self._build(*marks).sql()
        template = [places[p] if isinstance(p, _Mark) else (None, None, None, p) for p in params]
        if sum(isinstance(p, _Mark) for p in params) != len(places):
            raise ValueError(f"a value of {self._model.__name__}'s prepared query did not reach its SQL as a mark")
        return sql, template


class _Mark(str):
    """A value's place among the composed SQL's parameters (a str, which every field passes through)."""
