"""The pipeline: a scheduler feeding a committer through a queue, on fakes (no network)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.avro import decode
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.kafka_sink import OutgoingMessage
from cdr_connector.source import FetchedBatch
from tests.fakes import FakeApi, FakeSink, batch, bill, make_pipeline, make_settings, started


class GatedSink(FakeSink):
    """Holds every commit until `gate` is set; `committing` tells that one has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.committing = asyncio.Event()
        self.gate = asyncio.Event()

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None:
        self.committing.set()
        await self.gate.wait()
        await super().commit(messages)


async def test_batches_queued_during_a_commit_share_the_next_transaction_in_order() -> None:
    sink = GatedSink()
    pipeline = await started(sink)
    queue: asyncio.Queue[FetchedBatch | None] = asyncio.Queue()
    committer = asyncio.create_task(pipeline.commit_queue(queue))
    await queue.put(batch(bill(1)))
    await asyncio.wait_for(sink.committing.wait(), 5)
    for queued in (batch(bill(3), bill(2)), batch(bill(4), mode="sweep"), None):
        await queue.put(queued)
    sink.gate.set()
    await asyncio.wait_for(committer, 5)  # the end queued behind them ends the loop

    first, second = sink.transactions
    assert [decode(m.value)["id"] for m in first if m.topic == "cdr.calls"] == [1]
    records = [decode(m.value) for m in second if m.topic == "cdr.calls"]
    assert [r["id"] for r in records] == [2, 3, 4], "each batch sorted, batches in queue order"
    assert [r["fetch_mode"] for r in records] == ["live", "live", "sweep"]
    states = [m for m in second if m.topic == "cdr-connector.state"]
    assert len(states) == 2, "each batch's messages end with the state after it"
    assert second[-1] is states[-1]
    last = CheckpointState.decode(states[-1].value)
    assert all(i in last.committed for i in (1, 2, 3, 4))
    assert last.committed_total == 4


async def test_a_batch_that_arrives_after_a_commit_is_not_held_for_another() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    queue: asyncio.Queue[FetchedBatch | None] = asyncio.Queue()
    committer = asyncio.create_task(pipeline.commit_queue(queue))
    try:
        for record_id in (1, 2):
            await queue.put(batch(bill(record_id)))
            async with asyncio.timeout(5):
                while len(sink.transactions) < record_id:
                    await asyncio.sleep(0.001)
    finally:
        await queue.put(None)
        await asyncio.wait_for(committer, 5)
    assert [
        [decode(m.value)["id"] for m in t if m.topic == "cdr.calls"] for t in sink.transactions
    ] == [[1], [2]]


async def test_run_sweeps_then_commits_the_live_backlog_and_stops_when_asked() -> None:
    sink = FakeSink()
    vendor = FakeApi(25)
    vendor.render = bill
    vendor.queried.update({1, 2})  # fetched by an earlier run that died before committing
    pipeline = make_pipeline(sink, api=vendor)
    task = asyncio.create_task(pipeline.run())
    while len(sink.on("cdr.calls")) < 25:
        await asyncio.sleep(0.01)
    pipeline.request_stop()
    await asyncio.wait_for(task, 5)
    ids = [decode(m.value)["id"] for m in sink.on("cdr.calls")]
    assert ids == list(range(1, 26)), "the sweep's records first, then the live ones, once each"
    modes = [decode(m.value)["fetch_mode"] for m in sink.on("cdr.calls")]
    assert modes[:2] == ["sweep", "sweep"]
    assert set(modes[2:]) == {"live"}


class TrackedBill(dict[str, Any]):
    """A bill that can be watched with a weak reference, to see when it is freed."""


class HeldVendor(FakeApi):
    """Serves the first syncflag=1 round, then holds the next one until `release` is set."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.rounds = 0
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.served: list[weakref.ref[TrackedBill]] = []
        self.render = self._tracked

    def _tracked(self, record_id: int) -> TrackedBill:
        tracked = TrackedBill(bill(record_id))
        self.served.append(weakref.ref(tracked))
        return tracked

    async def get_bills(self, query: BillQuery) -> BillPage:
        if query.syncflag == 1:
            self.rounds += 1
            if self.rounds == 2:
                self.held.set()
                await self.release.wait()
        return await super().get_bills(query)


async def test_a_rounds_bills_are_freed_after_its_commit_while_the_next_round_is_fetched() -> None:
    """Freeing thousands of bills takes milliseconds: done when the next round is due, it
    would hold back that round's requests (bench/README.md, finding 5)."""
    sink = FakeSink()
    settings = make_settings(poll={"page_size": 10, "concurrency": 1, "interval_seconds": 0.01})
    vendor = HeldVendor(20)
    pipeline = make_pipeline(sink, settings=settings, api=vendor)
    task = asyncio.create_task(pipeline.run())
    try:
        async with asyncio.timeout(5):
            await vendor.held.wait()
            while len(sink.on("cdr.calls")) < 10:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.01)  # the committer's turn after its commit
            first_round = vendor.served[:10]
            assert len(first_round) == 10
            assert [ref() for ref in first_round] == [None] * 10, "still referenced"
            vendor.release.set()
            while len(sink.on("cdr.calls")) < 20:
                await asyncio.sleep(0.01)
    finally:
        vendor.release.set()
        pipeline.request_stop()
        await asyncio.wait_for(task, 5)
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == list(range(1, 21))
