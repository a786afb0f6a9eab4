"""The live round strategy against in-memory servers that mark, do not mark, or race."""

from typing import Any

import pytest

from cdr_connector.bill import bill_id
from cdr_connector.config import PollSettings, SourceSettings
from cdr_connector.errors import ApiTransientError
from cdr_connector.poller import Poller
from cdr_connector.source import SWEEP, FetchedBatch, RoundFailedError
from tests.fakes import FakeApi, FakeClock, FakeRecorder


def make_poller(
    vendor: FakeApi,
    *,
    page_size: int = 10,
    concurrency: int = 4,
    recorder: FakeRecorder | None = None,
    **poll: Any,
) -> Poller:
    source = SourceSettings(appid="a", accesskey="k")  # type: ignore[arg-type]
    settings = PollSettings(page_size=page_size, concurrency=concurrency, **poll)
    return Poller(vendor, source, settings, FakeClock(), recorder or FakeRecorder())


async def collect(poller: Poller) -> list[FetchedBatch]:
    return [batch async for batch in poller.live_cycle()]


def ids_of(batches: list[FetchedBatch]) -> list[int]:
    return [bill["id"] for batch in batches for bill in batch.bills]


async def test_marking_server_rounds_take_contiguous_runs_of_the_lowest_ids() -> None:
    vendor = FakeApi(95)
    batches = await collect(make_poller(vendor))
    assert sorted(ids_of(batches)) == list(range(1, 96))
    assert len(ids_of(batches)) == 95  # nothing twice
    seen_max = 0
    for batch in batches:
        ids = sorted(bill["id"] for bill in batch.bills)
        if ids:
            assert ids == list(range(ids[0], ids[-1] + 1)), "a round must be one contiguous run"
            assert ids[0] == seen_max + 1, "rounds must follow each other in id order"
            seen_max = ids[-1]
    assert all(page == 1 for _, page in vendor.requests), "shifting pages: always ask for page 1"


async def test_first_round_is_one_request_then_up_to_concurrency() -> None:
    vendor = FakeApi(95)
    await collect(make_poller(vendor, concurrency=4))
    # 1 request learns the backlog (95), then rounds of 4, 4, 1 for the remaining 85.
    assert len(vendor.requests) == 1 + 4 + 4 + 1


async def test_backlog_is_reported_from_totalitems() -> None:
    vendor = FakeApi(35)
    batches = await collect(make_poller(vendor))
    assert batches[0].backlog == 35


async def test_server_that_does_not_mark_is_read_by_paging_forward() -> None:
    vendor = FakeApi(45, marks=False)
    batches = await collect(make_poller(vendor))
    assert set(ids_of(batches)) == set(range(1, 46))
    pages = [page for _, page in vendor.requests]
    assert max(pages) == 5
    assert len(vendor.requests) < 12, "paging must end, not loop on page 1"


async def test_racing_server_duplicates_reach_the_batch_and_nothing_is_missing() -> None:
    vendor = FakeApi(60, racing=True)
    batches = await collect(make_poller(vendor))
    fetched = ids_of(batches)
    assert set(fetched) == set(range(1, 61))
    assert len(fetched) > 60, "the racing fake returns some records twice (removed at commit)"


async def test_bills_returned_before_a_failure_in_the_same_round_are_kept() -> None:
    vendor = FakeApi(50)
    poller = make_poller(vendor, concurrency=4)
    cycle = poller.live_cycle()
    first = await anext(cycle)
    assert len(first.bills) == 10
    vendor.fail_next = [ApiTransientError("boom")]
    with pytest.raises(RoundFailedError) as failed:
        await anext(cycle)
    kept = [bill["id"] for bill in failed.value.batch.bills]
    assert len(kept) == 30  # three of the four requests succeeded and their bills are handed on
    assert isinstance(failed.value.cause, ApiTransientError)


async def test_listing_reads_every_page_of_syncflag_2_without_marking() -> None:
    vendor = FakeApi(40)
    await collect(make_poller(vendor))
    vendor.ids.extend(range(41, 46))
    poller = make_poller(vendor, concurrency=2)
    start, end = poller.sweep_window()
    batches = [b async for b in poller.listing(start, end, SWEEP)]
    assert ids_of(batches) == list(range(1, 41))
    assert {b.mode for b in batches} == {"sweep"}
    assert all(flag == 2 for flag, _ in vendor.requests[-4:])


@pytest.mark.parametrize(
    ("bill", "expected"),
    [({"id": 5}, 5), ({"id": "17"}, 17), ({"id": True}, None), ({"id": "x"}, None), ([1], None)],
)
def test_bill_id_accepts_ints_and_digit_strings_only(bill: Any, expected: int | None) -> None:
    assert bill_id(bill) == expected
