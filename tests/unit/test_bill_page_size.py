"""`BillPage.raw_size`: the size of the HTTP body in bytes, 0 when it is not known."""

from __future__ import annotations

from cdr_connector.api.models import BillPage
from tests.unit.test_api_client import query


def test_a_page_of_unknown_size_says_zero() -> None:
    assert BillPage(totalitems=0, currentpage=1, itemsperpage=10, bills=[]).raw_size == 0
    assert BillPage.from_result({"totalitems": 0, "bills": []}, query()).raw_size == 0


def test_a_page_keeps_the_size_it_was_read_with() -> None:
    page = BillPage.from_result({"totalitems": 1, "bills": [{}]}, query(), 1234)
    assert page.raw_size == 1234
