"""server/persistence/bulk.py's column conversion on a table of its own (a SQLite database of the
test's): a column is bound as it is only when its field is exactly a CharField or TextField and
every value in it is a str; any other column goes through its field's db_value, so the bulk
INSERT stores each value exactly as Peewee's own insert does. And rows must all have one value
per field: a row with one too many is refused, not cut short."""

from __future__ import annotations

import uuid

import peewee as pw
import pytest

from server.persistence import db
from server.persistence.bulk import insert_ignore
from stores import own_database

TOKEN = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Note(pw.Model):
    key = pw.CharField(primary_key=True)
    label = pw.CharField(null=True)
    body = pw.TextField(null=True)
    token = pw.UUIDField(null=True)

    class Meta:
        database = db.database
        table_name = "bulk_note"


FIELDS: list[pw.Field] = [Note.key, Note.label, Note.body, Note.token]


@pytest.fixture(autouse=True)
def note_database(tmp_path):
    with own_database("sqlite", tmp_path), db.session():
        db.database.create_tables([Note])
        yield


def stored(prefix: str) -> list[tuple]:
    """Each row's columns as SQLite holds them, with each value's storage class."""
    return db.database.execute_sql(
        "SELECT key, label, typeof(label), body, typeof(body), token, typeof(token) FROM bulk_note"
        " WHERE key LIKE ? ORDER BY key",
        [f"{prefix}%"],
    ).fetchall()


def both_ways(rows: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """What the bulk INSERT stores of `rows` (keys prefixed b-) and what Peewee's insert does (p-)."""
    insert_ignore(Note, FIELDS, [(f"b-{key}", *rest) for key, *rest in rows])
    Note.insert_many([(f"p-{key}", *rest) for key, *rest in rows], fields=FIELDS).execute()
    strip = [(key[2:], *rest) for key, *rest in stored("b-")], [(key[2:], *rest) for key, *rest in stored("p-")]
    return strip


def test_text_fields_given_bytes_store_the_decoded_text_as_peewee_does():
    bulk, peewee = both_ways([("1", b"caf\xc3\xa9", b"body", None), ("2", b"x", b"", None)])
    assert (
        bulk
        == peewee
        == [("1", "café", "text", "body", "text", None, "null"), ("2", "x", "text", "", "text", None, "null")]
    )


def test_a_text_column_mixing_str_and_other_values_is_converted():
    bulk, peewee = both_ways([("1", "plain", 7, None), ("2", b"raw", "text", None)])
    assert (
        bulk
        == peewee
        == [("1", "plain", "text", "7", "text", None, "null"), ("2", "raw", "text", "text", "text", None, "null")]
    )


def test_a_uuid_field_given_str_values_stores_them_as_its_db_value_does():
    bulk, peewee = both_ways([("1", "a", "b", str(TOKEN)), ("2", "c", "d", TOKEN.hex)])
    assert bulk == peewee
    assert [(key, token, kind) for key, *_, token, kind in bulk] == [("1", TOKEN.hex, "text"), ("2", TOKEN.hex, "text")]


def test_plain_strings_are_stored_as_they_are():
    bulk, peewee = both_ways([("1", "é\x01", " x ", None), ("2", "", "", None)])
    assert (
        bulk
        == peewee
        == [("1", "é\x01", "text", " x ", "text", None, "null"), ("2", "", "text", "", "text", None, "null")]
    )


def test_a_row_with_a_value_too_many_is_refused_and_nothing_is_stored():
    with pytest.raises(ValueError, match="zip"):
        insert_ignore(Note, [Note.key, Note.label], [("1", "a"), ("2", "b", "extra")])
    with pytest.raises(ValueError, match="zip"):
        insert_ignore(Note, [Note.key, Note.label], [("1", "a", "extra"), ("2", "b")])
    assert stored("") == []
