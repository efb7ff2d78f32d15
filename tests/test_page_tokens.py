"""Page tokens work only with the parent and filter they were issued for (AIP-158)."""

from __future__ import annotations

import pytest

from server.domain.errors import InvalidArgument
from server.persistence.pagination import MAX_PAGE_SIZE, page_size
from server.transport import page_tokens


def test_token_round_trips_for_the_same_list():
    sealed = page_tokens.seal("inner", "sub_1", 2)
    assert sealed != "inner"
    assert page_tokens.unseal(sealed, "sub_1", 2) == "inner"
    assert page_tokens.seal("", "sub_1", 2) == "" and page_tokens.unseal("", "sub_1", 2) == ""


@pytest.mark.parametrize("parent, status", [("sub_2", 2), ("sub_1", 0), ("sub_1", 3)])
def test_token_of_another_parent_or_filter_is_refused(parent, status):
    sealed = page_tokens.seal("inner", "sub_1", 2)
    with pytest.raises(InvalidArgument) as error:
        page_tokens.unseal(sealed, parent, status)
    assert error.value.violations[0].field == "page_token"


@pytest.mark.parametrize("token", ["garbage", "e30=", "WzEsMl0=", "\u00e9t\u00e9"])
def test_token_not_issued_here_is_refused(token):
    with pytest.raises(InvalidArgument):
        page_tokens.unseal(token, "sub_1")


def test_page_size_is_clamped_defaulted_and_never_negative():
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    assert page_size(10**9) == MAX_PAGE_SIZE
    assert page_size(0) == 50
    with pytest.raises(InvalidArgument):
        page_size(-1)
