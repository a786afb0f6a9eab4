"""The scheduler: what is fetched when, on fakes (no network)."""

from __future__ import annotations

import asyncio

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.avro import decode
from cdr_connector.errors import ApiTransientError
from tests.fakes import FakeApi, FakeSink, bill, make_pipeline, make_settings


class LosingVendor(FakeApi):
    """Marks the records of one syncflag=1 answer, then loses the answer (a timeout after the
    server did its work)."""

    def __init__(self, count: int, lose_after: int) -> None:
        super().__init__(count)
        self.live_answers = 0
        self.lose_after = lose_after

    async def get_bills(self, query: BillQuery) -> BillPage:
        page = await super().get_bills(query)
        if query.syncflag == 1 and page.bills:
            self.live_answers += 1
            if self.live_answers == self.lose_after:
                raise ApiTransientError("GetBill: timed out after 0.001s")
        return page


async def test_a_failed_live_request_is_swept_at_once_not_at_the_next_periodic_sweep() -> None:
    sink = FakeSink()
    settings = make_settings(
        source_settings={"request_timeout_seconds": 0.05},
        poll={
            "page_size": 10,
            "concurrency": 1,
            "interval_seconds": 0.01,
            "sweep_interval_seconds": 3600,
        },
    )
    vendor = LosingVendor(30, lose_after=2)
    vendor.render = bill
    pipeline = make_pipeline(sink, settings=settings, api=vendor)
    task = asyncio.create_task(pipeline.run())
    try:
        async with asyncio.timeout(5):
            while len(sink.on("cdr.calls")) < 30:
                await asyncio.sleep(0.01)
    finally:
        pipeline.request_stop()
        await asyncio.wait_for(task, 5)
    records = [decode(m.value) for m in sink.on("cdr.calls")]
    assert sorted(r["id"] for r in records) == list(range(1, 31)), "each record exactly once"
    assert {r["id"] for r in records if r["fetch_mode"] == "sweep"} == set(range(11, 21))
