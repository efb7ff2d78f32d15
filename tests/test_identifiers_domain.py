"""The identifier alphabet (server/domain/identifiers.py), pure: fields, values, whole columns."""

from __future__ import annotations

import pytest

from server.domain.identifiers import ALPHABET, MAX_IDENTIFIER, all_identifiers, identifier_problem, is_identifier_field


@pytest.mark.parametrize("name", ["id", "tenant_id", "delivery_id"])
def test_id_and_every_name_ending_in_underscore_id_hold_identifiers(name):
    assert is_identifier_field(name)


@pytest.mark.parametrize("name", ["ID", "identity", "paid", "idempotency_key", "tenant_ids"])
def test_other_fields_do_not(name):
    assert not is_identifier_field(name)


def test_the_longest_identifier_and_the_empty_value_pass():
    assert identifier_problem("a" * MAX_IDENTIFIER) is None
    assert identifier_problem("") is None
    assert identifier_problem("a" * (MAX_IDENTIFIER + 1)) == f"must be at most {MAX_IDENTIFIER} characters, got 129"


@pytest.mark.parametrize(
    "value, shown",
    [
        ("a b", "'a b'"),
        ("x" * 39 + " ", "'" + "x" * 39 + " '"),  # 40 characters: shown whole
        (" " + "x" * 40, "' " + "x" * 39 + "…'"),  # 41: the first 40, then an ellipsis
        ("\r\n" + "y" * 60, "'\\r\\n" + "y" * 38 + "…'"),
    ],
)
def test_a_value_outside_the_alphabet_is_shown_escaped_and_cut_at_40_characters(value, shown):
    assert identifier_problem(value) == f"must use only the characters {ALPHABET}, got {shown}"


def test_a_column_of_identifiers_passes_at_once_up_to_the_longest():
    assert all_identifiers([])
    assert all_identifiers(["", "a" * MAX_IDENTIFIER, "team@acme", "org:acme_EU-1.x"])
    assert not all_identifiers(["a", "a" * (MAX_IDENTIFIER + 1)])
    assert not all_identifiers(["a", "b c"])
    assert not all_identifiers(["ok", "t\u00e9nant"])
