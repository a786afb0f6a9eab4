"""The committer's logic with in-memory twins of the vendor and the sink (no network)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from cdr_connector import metrics
from cdr_connector.api import BillPage, BillQuery
from cdr_connector.avro import SingleObjectEncoder, decode
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.clock import SystemClock
from cdr_connector.config import Settings
from cdr_connector.errors import ApiTransientError, KafkaTransientError, ProducerFencedError
from cdr_connector.kafka_sink import OutgoingMessage
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import FetchedBatch, Poller
from tests.unit.test_poller import FakeVendor

SOURCE = "unit"


def bill(record_id: int, ext: str = "8001", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": record_id, "extnumber": ext, "destnumber": "13800000000",
        "displaynumber": "2190170001", "starttime": "2026-11-26 10:00:00",
        "answertime": "2026-11-26 10:00:05", "endtime": "2026-11-26 10:01:00", "duration": 60,
        "billsec": 55, "direction": "callout", "callmethod": 3, "userid": "0", "memberid": "0",
        "chengshudu": "0", "customuuid": "0", "recordfilename": "", "downloadip": "",
        "hangupdirection": 10041, "hangupcause": 10001, "userkey": "",
    }  # fmt: skip
    base.update(changes)
    return base


class FakeSink:
    """Commits into a list; can be told to fail the next commits."""

    def __init__(self) -> None:
        self.transactions: list[list[OutgoingMessage]] = []
        self.failures: list[Exception] = []

    async def start(self) -> None:
        return None

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.transactions.append(list(messages))

    async def close(self) -> None:
        return None

    def on(self, topic: str) -> list[OutgoingMessage]:
        return [m for t in self.transactions for m in t if m.topic == topic]


def make_pipeline(
    sink: FakeSink, state: bytes | None = None, *, source: str = SOURCE, **kafka: Any
) -> Pipeline:
    settings = Settings(
        source={"name": source, "appid": "a", "accesskey": "k"},
        poll={"retry_initial_seconds": 0.001, "retry_max_seconds": 0.002},
        kafka=kafka,
    )  # type: ignore[arg-type]
    poller = Poller(FakeVendor(0), settings.source, settings.poll, SystemClock())
    return Pipeline(
        settings, poller, sink, SingleObjectEncoder(), SystemClock(),
        state_reader=lambda _settings, _key: state,
    )  # fmt: skip


# 2026-11-26 13:33Z: hours after the calls of `bill` ended, as a real fetch would be.
FETCHED_AT_MS = 1_795_700_000_000


def batch(*bills: Any, mode: str = "live") -> FetchedBatch:
    return FetchedBatch(mode, list(bills), FETCHED_AT_MS)  # type: ignore[arg-type]


async def started(
    sink: FakeSink, state: bytes | None = None, *, source: str = SOURCE, **kafka: Any
) -> Pipeline:
    pipeline = make_pipeline(sink, state, source=source, **kafka)
    await pipeline._start()
    return pipeline


async def test_records_are_sorted_by_id_and_the_state_closes_the_transaction() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch(bill(3), bill(1, "8002"), bill(2)))
    [transaction] = sink.transactions
    data = [m for m in transaction if m.topic == "cdr.calls"]
    assert [decode(m.value)["id"] for m in data] == [1, 2, 3]
    assert [m.key for m in data] == [b"8002", b"8001", b"8001"]
    assert transaction[-1].topic == "cdr-connector.state"
    assert transaction[-1].key == SOURCE.encode()
    state = CheckpointState.decode(transaction[-1].value)
    assert all(i in state.committed for i in (1, 2, 3))
    assert state.committed_total == 3


async def test_ids_already_committed_or_repeated_are_dropped() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch(bill(1), bill(2)))
    before = metrics.REGISTRY.get_sample_value(
        "cdr_connector_records_deduplicated_total", {"source": SOURCE}
    )
    summary = await pipeline._commit_batch(batch(bill(2), bill(3), bill(3), mode="sweep"))
    assert summary.produced == 1
    assert summary.deduplicated == 2
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 2, 3]
    after = metrics.REGISTRY.get_sample_value(
        "cdr_connector_records_deduplicated_total", {"source": SOURCE}
    )
    assert (after or 0) - (before or 0) == 2


async def test_an_id_below_the_highest_committed_but_never_committed_is_published() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch(bill(1), bill(3)))
    summary = await pipeline._commit_batch(batch(bill(2), bill(3), mode="sweep"))
    assert (summary.produced, summary.deduplicated) == (1, 1)
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3, 2]


async def test_a_batch_of_only_duplicates_commits_nothing() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch(bill(1)))
    await pipeline._commit_batch(batch(bill(1)))
    assert len(sink.transactions) == 1


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
    committer = asyncio.create_task(pipeline._commit_loop(queue))
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
    committer = asyncio.create_task(pipeline._commit_loop(queue))
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


async def test_a_bad_bill_goes_to_the_dead_letter_topic_and_the_rest_proceeds() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch(bill(1), bill(2, starttime="2026-02-30 10:00:00"), bill(3)))
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3]
    [letter] = sink.on("cdr.calls.dlq")
    headers = dict(letter.headers)
    assert headers["cdr.stage"] == b"normalise"
    assert headers["cdr.field"] == b"starttime"
    assert headers["cdr.id"] == b"2"
    assert b"2026-02-30" in letter.value
    assert 2 in pipeline.state.committed, "a dead-lettered id is not fetched again by a sweep"


async def test_a_record_too_large_for_kafka_is_dead_lettered_not_retried_forever() -> None:
    """The broker would refuse it and fail every transaction it is in; as a dead letter it is
    cut to a JSON head that fits, and the rest of the batch is committed."""
    sink = FakeSink()
    pipeline = await started(sink, max_value_bytes=2048)
    huge = bill(2, userkey="k" * 5000)
    await pipeline._commit_batch(batch(bill(1), huge, bill(3, userkey="k" * 1500)))
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 3]
    [letter] = sink.on("cdr.calls.dlq")
    headers = dict(letter.headers)
    assert headers["cdr.stage"] == b"encode"
    assert b"kafka.max_value_bytes (2048)" in headers["cdr.error"]
    assert headers["cdr.id"] == b"2"
    whole = orjson.dumps(huge)
    assert headers["cdr.truncated"] == str(len(whole)).encode()
    assert len(letter.value) <= 2048
    cut = orjson.loads(letter.value)
    assert cut["bytes"] == len(whole)
    assert whole.decode().startswith(cut["truncated_bill"])
    assert 2 in pipeline.state.committed


async def test_a_bad_bill_too_large_to_dead_letter_whole_is_cut() -> None:
    sink = FakeSink()
    pipeline = await started(sink, max_value_bytes=4096)
    await pipeline._commit_batch(batch(bill(1, starttime="2026-02-30 10:00:00", userid="u" * 9000)))
    [letter] = sink.on("cdr.calls.dlq")
    assert dict(letter.headers)["cdr.stage"] == b"normalise"
    assert len(letter.value) <= 4096
    assert orjson.loads(letter.value)["truncated_bill"].startswith('{"id":1,')


async def test_a_bill_without_an_id_is_dead_lettered_without_a_key() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(batch([1, 2], bill(5)))
    [letter] = sink.on("cdr.calls.dlq")
    assert letter.key is None
    assert letter.value == b"[1,2]"


async def test_a_bill_without_an_id_listed_again_is_dead_lettered_once() -> None:
    """Sweeps and audits list it again and again; its content is what tells it apart, in the
    same batch, in later batches and after a restart."""
    sink = FakeSink()
    pipeline = await started(sink)
    no_id = bill(0, id="not-a-number", starttime="2026-11-26 09:15:00")
    other = bill(0, id=None, billsec=7)
    first = await pipeline._commit_batch(batch(no_id, bill(1), dict(no_id)))
    summary = await pipeline._commit_batch(batch(bill(1), no_id, other, mode="sweep"))
    letters = sink.on("cdr.calls.dlq")
    assert [orjson.loads(m.value) for m in letters] == [no_id, other]
    assert (summary.dead_lettered, summary.deduplicated) == (1, 2)
    state = pipeline.state
    assert len(state.dead_letter_fingerprints) == 2
    assert state.dead_lettered_total == 2
    # each dial hour is counted once, so the audit finds the hour complete
    assert [len(s.dead_letter_start_ms) for s in (first, summary)] == [1, 1]
    restarted_sink = FakeSink()
    restarted = await started(restarted_sink, sink.transactions[-1][-1].value)
    await restarted._commit_batch(batch(dict(other), no_id, mode="audit"))
    assert restarted_sink.transactions == []


async def test_a_retryable_commit_failure_commits_the_same_messages_again() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    sink.failures = [KafkaTransientError("broker away"), KafkaTransientError("still away")]
    await pipeline._commit_batch(batch(bill(1), bill(2)))
    assert len(sink.transactions) == 1
    assert [decode(m.value)["id"] for m in sink.on("cdr.calls")] == [1, 2]
    assert CheckpointState.decode(sink.transactions[0][-1].value).committed_total == 2


async def test_a_fenced_producer_stops_the_pipeline_and_says_why() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    sink.failures = [ProducerFencedError("fenced by a newer instance")]
    with pytest.raises(ProducerFencedError):
        await pipeline._commit_batch(batch(bill(1)))
    assert pipeline.status.not_ready_reason() == "fenced by a newer instance"


async def test_the_state_read_at_start_is_the_one_deduplicated_against() -> None:
    first = FakeSink()
    pipeline = await started(first)
    await pipeline._commit_batch(batch(bill(1), bill(2)))
    restarted = FakeSink()
    again = await started(restarted, first.transactions[-1][-1].value)
    await again._commit_batch(batch(bill(1), bill(2), bill(3), mode="sweep"))
    assert [decode(m.value)["id"] for m in restarted.on("cdr.calls")] == [3]


async def test_telephony_figures_are_counted_per_label_set() -> None:
    def calls(direction: str, answered: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "cdr_connector_calls_total",
            {"source": SOURCE, "direction": direction, "callmethod": "3", "answered": answered},
        )
        return value or 0.0

    def billed() -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                "cdr_connector_billed_seconds_total", {"source": SOURCE, "direction": "callin"}
            )
            or 0.0
        )

    before = (calls("callin", "true"), calls("callin", "false"), billed())
    sink = FakeSink()
    pipeline = await started(sink)
    await pipeline._commit_batch(
        batch(
            bill(1, direction="callin", billsec=10),
            bill(2, direction="callin", billsec=20),
            bill(3, direction="callin", answertime=None, billsec=0),
        )
    )
    assert calls("callin", "true") - before[0] == 2
    assert calls("callin", "false") - before[1] == 1
    assert billed() - before[2] == 30


async def test_run_sweeps_then_commits_the_live_backlog_and_stops_when_asked() -> None:
    sink = FakeSink()
    pipeline = make_pipeline(sink)
    vendor = FakeVendor(25)
    vendor.render = bill
    vendor.queried.update({1, 2})  # fetched by an earlier run that died before committing
    pipeline._poller._api = vendor  # type: ignore[assignment]
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


class LosingVendor(FakeVendor):
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
    settings = Settings(
        source={"name": SOURCE, "appid": "a", "accesskey": "k", "request_timeout_seconds": 0.05},
        poll={
            "retry_initial_seconds": 0.001,
            "retry_max_seconds": 0.002,
            "page_size": 10,
            "concurrency": 1,
            "interval_seconds": 0.01,
            "sweep_interval_seconds": 3600,
        },
    )  # type: ignore[arg-type]
    vendor = LosingVendor(30, lose_after=2)
    vendor.render = bill
    poller = Poller(vendor, settings.source, settings.poll, SystemClock())
    pipeline = Pipeline(
        settings, poller, sink, SingleObjectEncoder(), SystemClock(),
        state_reader=lambda _settings, _key: None,
    )  # fmt: skip
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


class TrackedBill(dict[str, Any]):
    """A bill that can be watched with a weak reference, to see when it is freed."""


class HeldVendor(FakeVendor):
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
    settings = Settings(
        source={"name": SOURCE, "appid": "a", "accesskey": "k"},
        poll={"page_size": 10, "concurrency": 1, "interval_seconds": 0.01},
    )  # type: ignore[arg-type]
    vendor = HeldVendor(20)
    pipeline = Pipeline(
        settings, Poller(vendor, settings.source, settings.poll, SystemClock()), sink,
        SingleObjectEncoder(), SystemClock(), state_reader=lambda _settings, _key: None,
    )  # fmt: skip
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
