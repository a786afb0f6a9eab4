"""`BillPage.raw_size`: the size of the HTTP body in bytes, 0 when it is not known; and how
long a server value quoted in `BillPage`'s errors may be."""

from __future__ import annotations

import pytest

from cdr_connector.api.models import BillPage
from cdr_connector.errors import ApiResponseError
from tests.unit.test_api_client import query


def test_a_page_of_unknown_size_says_zero() -> None:
    assert BillPage(totalitems=0, currentpage=1, itemsperpage=10, bills=[]).raw_size == 0
    assert BillPage.from_result({"totalitems": 0, "bills": []}, query()).raw_size == 0


def test_a_page_keeps_the_size_it_was_read_with() -> None:
    page = BillPage.from_result({"totalitems": 1, "bills": [{}]}, query(), 1234)
    assert page.raw_size == 1234


def test_a_long_server_value_is_quoted_cut_to_sixty_characters() -> None:
    with pytest.raises(ApiResponseError) as raised:
        BillPage.from_result({"totalitems": "x" * 100, "bills": []}, query())
    quoted = str(raised.value).rpartition(", got ")[2]
    # Its repr, the quotes included, cut to 57 characters and marked with "...".
    assert quoted == "'" + "x" * 56 + "..."
