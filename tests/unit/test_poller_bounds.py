"""Where the poller's reads stop: `poll.max_listing_pages` for the live rounds and the
listings, and what a listing shorter than its count reports."""

from __future__ import annotations

import logging

import pytest

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.source import SWEEP
from tests.fakes import FakeApi, FakeRecorder
from tests.unit.test_poller import collect, ids_of, make_poller


class ClaimingVendor(FakeApi):
    """Claims `claimed` records in totalitems, whatever it holds."""

    def __init__(self, count: int, claimed: int) -> None:
        super().__init__(count)
        self.claimed = claimed

    async def get_bills(self, query: BillQuery) -> BillPage:
        page = await super().get_bills(query)
        return BillPage(self.claimed, page.currentpage, page.itemsperpage, page.bills)


async def test_a_vendor_that_does_not_mark_is_paged_up_to_the_last_page_allowed() -> None:
    vendor = FakeApi(10, marks=False)
    poller = make_poller(vendor, page_size=2, concurrency=1, max_listing_pages=3)

    batches = await collect(poller)

    # Page 1 twice (the second read shows nothing was marked), then pages 2 and 3: no more.
    assert vendor.requests == [(1, 1), (1, 1), (1, 2), (1, 3)]
    assert ids_of(batches) == [1, 2, 1, 2, 3, 4, 5, 6]


async def test_one_listing_page_allowed_still_drains_a_marking_vendor_from_page_one() -> None:
    vendor = FakeApi(5)
    poller = make_poller(vendor, page_size=2, concurrency=1, max_listing_pages=1)

    assert ids_of(await collect(poller)) == [1, 2, 3, 4, 5]
    assert vendor.requests == [(1, 1), (1, 1), (1, 1)]


async def test_a_listing_stops_at_the_last_page_allowed_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor, recorder = FakeApi(9), FakeRecorder()
    poller = make_poller(vendor, page_size=2, concurrency=2, max_listing_pages=3, recorder=recorder)
    vendor.queried.update(vendor.ids)
    start, end = poller.sweep_window()

    with caplog.at_level(logging.WARNING):
        batches = [b async for b in poller.listing(start, end, SWEEP)]

    assert ids_of(batches) == [1, 2, 3, 4, 5, 6]
    assert [page for _flag, page in vendor.requests] == [1, 2, 3]
    assert recorder.of("listing_total_mismatch") == ["sweep"]
    assert caplog.messages == [
        "a sweep listing held 6 bills in 3 page(s) where totalitems claimed 9; "
        "poll.max_listing_pages ended it"
    ]


async def test_a_first_page_short_of_the_count_is_one_page_ended_by_a_short_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor, recorder = ClaimingVendor(1, claimed=5), FakeRecorder()
    vendor.queried.update(vendor.ids)
    poller = make_poller(vendor, page_size=2, recorder=recorder)
    start, end = poller.sweep_window()

    with caplog.at_level(logging.WARNING):
        batches = [b async for b in poller.listing(start, end, SWEEP)]

    assert ids_of(batches) == [1]
    assert caplog.messages == [
        "a sweep listing held 1 bills in 1 page(s) where totalitems claimed 5; "
        "a short or empty page ended it"
    ]


async def test_a_listing_that_holds_its_count_reports_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor, recorder = FakeApi(4), FakeRecorder()
    vendor.queried.update(vendor.ids)
    poller = make_poller(vendor, page_size=2, concurrency=1, recorder=recorder)
    start, end = poller.sweep_window()

    with caplog.at_level(logging.WARNING):
        batches = [b async for b in poller.listing(start, end, SWEEP)]

    assert ids_of(batches) == [1, 2, 3, 4]
    assert [page for _flag, page in vendor.requests] == [1, 2]
    assert recorder.of("listing_total_mismatch") == []
    assert caplog.messages == []
