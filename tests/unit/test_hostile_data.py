"""Bad data from the vendor, one kind at a time, against the committer and the poller with
plain fakes: no bill, page or answer may stop the stream, lose a record or publish one twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from cdr_connector.api import BillPage, BillQuery
from cdr_connector.avro import decode
from cdr_connector.bill import UnreadableBill
from cdr_connector.brake import Brake
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.config import BrakeSettings
from cdr_connector.errors import AnswerTooLargeError
from cdr_connector.kafka_sink import OutgoingMessage
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.source import AUDIT, SWEEP, FetchedBatch
from tests.fakes import (
    SOURCE,
    FakeApi,
    FakeRecorder,
    FakeSink,
    batch,
    bill,
    make_pipeline,
    make_settings,
    started,
)
from tests.unit.test_poller import make_poller


async def commit(pipeline: Pipeline, *batches: FetchedBatch) -> None:
    await pipeline.committer.commit(list(batches))


DATA, DEAD = "cdr.calls", "cdr.calls.dlq"


def ids_on(sink: FakeSink, topic: str = DATA) -> list[int]:
    return [decode(m.value)["id"] for m in sink.on(topic)]


def header(message: OutgoingMessage, name: str) -> bytes | None:
    return next((v for k, v in message.headers if k == name), None)  # type: ignore[misc]


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["99999999999999999999", 2**64 - 1, "9" * 5000, "²", 2**63])
async def test_an_id_beyond_64_bits_is_dead_lettered_and_the_state_still_commits(bad: Any) -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1), bill(0, id=bad), bill(2)))
    await commit(pipeline, batch(bill(3)))  # the stream goes on
    assert ids_on(sink) == [1, 2, 3]
    [letter] = sink.on(DEAD)
    assert header(letter, "cdr.field") == b"id" and header(letter, "cdr.id") is None
    state = CheckpointState.decode(sink.on("cdr-connector.state")[-1].value)
    assert state.committed.highest() == 3


async def test_a_lookalike_id_does_not_make_a_genuine_record_a_duplicate() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(2), bill(0, id="٣")))  # Arabic-Indic three
    await commit(pipeline, batch(bill(3)))
    assert ids_on(sink) == [2, 3]
    assert len(sink.on(DEAD)) == 1


@pytest.mark.parametrize("bad", [123.0, "-5", -5, "12.5", None, [123]])
async def test_a_bill_without_a_usable_id_is_dead_lettered_once_however_often_listed(
    bad: Any,
) -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    poisoned = bill(0, id=bad)
    await commit(pipeline, batch(bill(1), poisoned, dict(poisoned)))
    await commit(pipeline, batch(dict(poisoned), bill(2), mode="sweep"))
    assert ids_on(sink) == [1, 2]
    assert len(sink.on(DEAD)) == 1


# --- unreadable bills -------------------------------------------------------------------------


async def test_an_unreadable_bill_is_dead_lettered_with_its_raw_bytes_and_its_id() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    raw = b'{"id":5,"userid":"\\udc80","destnumber":"\xff"}'
    await commit(pipeline, batch(bill(4), UnreadableBill(raw, "invalid surrogate", 5)))
    await commit(pipeline, batch(bill(5), mode="sweep"))  # listed again, whole this time
    assert ids_on(sink) == [4]
    [letter] = sink.on(DEAD)
    assert letter.value == raw
    assert header(letter, "cdr.stage") == b"parse"
    assert header(letter, "cdr.id") == b"5"
    assert b"invalid surrogate" in (header(letter, "cdr.error") or b"")


async def test_an_unreadable_bill_without_an_id_is_dead_lettered_once_by_its_bytes() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    unreadable = UnreadableBill(b"[NaN]", "unexpected character", None)
    await commit(pipeline, batch(unreadable, bill(1)))
    await commit(pipeline, batch(UnreadableBill(b"[NaN]", "again", None), mode="sweep"))
    assert len(sink.on(DEAD)) == 1


class BrokenMapping(dict[str, Any]):
    """A bill whose reading raises what no rule foresaw."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("a reader's bug")


async def test_any_exception_while_converting_a_bill_dead_letters_that_bill() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1), BrokenMapping(id=2), bill(3)))
    assert ids_on(sink) == [1, 3]
    [letter] = sink.on(DEAD)
    assert header(letter, "cdr.stage") == b"convert"
    assert b"RuntimeError" in (header(letter, "cdr.error") or b"")


# --- times ----------------------------------------------------------------------------------


async def test_a_far_future_call_is_dead_lettered_and_cannot_blind_the_freshness_lag() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1)))
    newest = pipeline.committer.state.newest_end_ms
    await commit(pipeline, batch(bill(2, endtime="2099-12-31 23:59:59")))
    assert ids_on(sink) == [1]
    [letter] = sink.on(DEAD)
    assert header(letter, "cdr.field") == b"endtime"
    assert pipeline.committer.state.newest_end_ms == newest
    assert pipeline.committer.freshness_lag() > 0
    hour_2099 = 4_102_444_800_000 - 3_600_000
    assert all(hour < hour_2099 for hour in pipeline.committer.state.hour_counts)


async def test_a_state_with_a_far_future_end_time_starts_freshness_anew() -> None:
    old = CheckpointState(source=SOURCE, newest_end_ms=4_102_444_799_000)
    pipeline = await started(FakeSink(), old.encode())
    assert pipeline.committer.state.newest_end_ms == 0


async def test_a_call_before_2000_is_dead_lettered_naming_its_start() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(
        pipeline, batch(bill(1, starttime="1970-01-01 08:00:00", answertime=None, billsec=0))
    )
    [letter] = sink.on(DEAD)
    assert header(letter, "cdr.field") == b"starttime"


# --- listings -------------------------------------------------------------------------------


class InflatedVendor(FakeApi):
    """Claims a trillion records, whatever its pages hold."""

    async def get_bills(self, query: BillQuery) -> BillPage:
        page = await super().get_bills(query)
        return BillPage(10**12, page.currentpage, page.itemsperpage, page.bills)


async def test_an_inflated_totalitems_ends_a_listing_at_its_first_short_page() -> None:
    vendor = InflatedVendor(25)
    recorder = FakeRecorder()
    poller = make_poller(vendor, page_size=10, concurrency=2, recorder=recorder)
    start, end = poller.sweep_window()
    bills = [b async for batch in poller.listing(start, end, AUDIT) for b in batch.bills]
    assert [b["id"] for b in bills] == list(range(1, 26))
    assert len(vendor.requests) == 3  # pages 1, 2, 3: the third is short
    assert recorder.of("listing_total_mismatch") == ["audit"]


async def test_a_listing_stops_after_max_listing_pages_when_every_page_is_full() -> None:
    vendor = InflatedVendor(10**6)
    poller = make_poller(vendor, page_size=10, concurrency=4, max_listing_pages=7)
    start, end = poller.sweep_window()
    batches = [batch async for batch in poller.listing(start, end, AUDIT)]
    assert sum(len(b.bills) for b in batches) == 70
    assert len(vendor.requests) == 7


async def test_a_live_cycle_ends_at_a_short_page_whatever_totalitems_claims() -> None:
    vendor = InflatedVendor(25)
    poller = make_poller(vendor, page_size=10, concurrency=4)
    batches = [batch async for batch in poller.live_cycle()]
    assert sorted(b["id"] for batch in batches for b in batch.bills) == list(range(1, 26))
    assert len(vendor.requests) <= 9


class SizeLimitedVendor(FakeApi):
    """Refuses (as the client does at its size limit) any page of more than `most` bills."""

    def __init__(self, count: int, most: int) -> None:
        super().__init__(count)
        self.most = most

    async def get_bills(self, query: BillQuery) -> BillPage:
        page = await super().get_bills(query)
        if len(page.bills) > self.most:
            raise AnswerTooLargeError(f"GetBill: {len(page.bills)} bills are too large")
        return page


async def test_a_listing_page_over_the_size_limit_is_read_again_in_smaller_pages() -> None:
    vendor = SizeLimitedVendor(95, most=3)
    poller = make_poller(vendor, page_size=10, concurrency=2)
    start, end = poller.sweep_window()
    bills = [b async for batch in poller.listing(start, end, SWEEP) for b in batch.bills]
    vendor.queried.update(range(1, 96))  # syncflag=2 lists what was queried
    bills = [b async for batch in poller.listing(start, end, SWEEP) for b in batch.bills]
    assert [b["id"] for b in bills] == list(range(1, 96))


async def test_a_one_bill_page_over_the_size_limit_is_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor = SizeLimitedVendor(12, most=0)
    recorder = FakeRecorder()
    poller = make_poller(vendor, page_size=4, concurrency=1, recorder=recorder)
    start, end = poller.sweep_window()
    with caplog.at_level(logging.WARNING):
        bills = [b async for batch in poller.listing(start, end, AUDIT) for b in batch.bills]
    assert bills == []
    assert len(recorder.of("answer_skipped")) == 12  # every bill, and the listing still ended
    skipped = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(skipped) == 12
    assert (
        skipped[0]
        .getMessage()
        .startswith(
            f"a one-bill page ({start} to {end}, syncflag 3, page 1) is skipped: GetBill: 1 bills "
            "are too large. The bill stays with the vendor: raise source.max_answer_bytes"
        )
    )


# --- the brake ------------------------------------------------------------------------------


def test_the_brake_engages_when_more_than_the_ratio_of_recent_bills_are_dead_letters() -> None:
    brake = Brake(BrakeSettings(window_bills=100, dead_letter_ratio=0.5))
    assert not brake.observe(records=1000, dead_letters=20)
    assert not brake.observe(records=0, dead_letters=30)  # 50 of the last 100: not more than half
    assert brake.observe(records=0, dead_letters=1)
    assert brake.kind == "dead_letters"
    assert brake.reason is not None and "51 of the last 100" in brake.reason


def test_records_push_old_dead_letters_out_of_the_brakes_window() -> None:
    brake = Brake(BrakeSettings(window_bills=100, dead_letter_ratio=0.5))
    assert not brake.observe(records=0, dead_letters=50)
    assert not brake.observe(records=60, dead_letters=0)
    assert not brake.observe(records=0, dead_letters=45)  # 40 + 45 in the window
    assert not brake.engaged


def test_a_disabled_brake_never_engages() -> None:
    brake = Brake(BrakeSettings(enabled=False, window_bills=10, max_commit_failures=1))
    assert not brake.observe(records=0, dead_letters=10)
    assert not brake.commit_failed(RuntimeError("x"))
    assert not brake.engaged


async def test_an_engaged_brake_stops_live_reads_and_makes_the_connector_unready() -> None:
    sink = FakeSink()
    vendor = FakeApi(30)
    vendor.render = lambda record_id: bill(record_id, duration="garbage")
    recorder = FakeRecorder()
    settings = make_settings(brake={"window_bills": 10, "dead_letter_ratio": 0.5})
    pipeline = make_pipeline(sink, settings=settings, api=vendor, recorder=recorder)
    task = asyncio.create_task(pipeline.run())
    while pipeline.status.brake is None:
        await asyncio.sleep(0.01)
    live_requests = sum(1 for syncflag, _ in vendor.requests if syncflag == 1)
    vendor.ids += list(range(31, 61))  # new records arrive; the brake leaves them unqueried
    await asyncio.sleep(0.3)
    assert sum(1 for syncflag, _ in vendor.requests if syncflag == 1) == live_requests
    assert not vendor.queried & set(range(31, 61))
    reason = pipeline.status.not_ready_reason()
    assert reason is not None and "brake" in reason and "dead-lettered" in reason
    assert recorder.of("brake_engaged") == ["dead_letters"]
    pipeline.request_stop()
    await asyncio.wait_for(task, 5)
    # What was fetched before the brake took hold was still committed, none of it lost.
    assert {int(header(m, "cdr.id") or 0) for m in sink.on(DEAD)} == vendor.queried


# --- commits that fail unexpectedly ---------------------------------------------------------


class StateReader:
    """The state topic as a list of committed states."""

    def __init__(self, sink: FakeSink) -> None:
        self.sink = sink
        self.reads = 0

    def __call__(self, _settings: Any, _key: bytes) -> bytes | None:
        self.reads += 1
        states = self.sink.on("cdr-connector.state")
        return states[-1].value if states else None


def with_state_reader(sink: FakeSink, **brake: Any) -> tuple[Pipeline, StateReader]:
    reader = StateReader(sink)
    settings = make_settings(brake=brake)
    return make_pipeline(sink, settings=settings, state_reader=reader), reader


async def test_an_unexpected_commit_failure_reads_the_state_back_and_commits_once() -> None:
    sink = FakeSink()
    pipeline, reader = with_state_reader(sink)
    await pipeline.start()
    sink.failures = [RuntimeError("a bug"), RuntimeError("a bug")]
    await commit(pipeline, batch(bill(1), bill(2)))
    assert ids_on(sink) == [1, 2]
    assert reader.reads == 3  # at start, then after each failure
    assert pipeline.committer.state.committed_total == 2
    assert pipeline.status.brake is None


async def test_commit_failures_in_a_row_engage_the_brake_and_the_process_stays_up() -> None:
    sink = FakeSink()
    pipeline, _ = with_state_reader(sink, max_commit_failures=3)
    await pipeline.start()
    sink.failures = [TypeError("bad header")] * 4
    await commit(pipeline, batch(bill(1)))
    assert ids_on(sink) == [1]
    reason = pipeline.status.not_ready_reason()
    assert reason is not None and "3 transactions in a row failed" in reason


async def test_a_dead_letter_value_is_json_even_for_values_orjson_cannot_write() -> None:
    sink = FakeSink()
    pipeline = await started(sink)
    await commit(pipeline, batch(bill(1, duration=float("nan"))))
    [letter] = sink.on(DEAD)
    assert orjson.loads(letter.value)


# --- the audit ------------------------------------------------------------------------------


async def test_an_audited_hour_with_an_unreadable_dial_time_is_settled_not_repaired_forever() -> (
    None
):
    """The vendor counts a bill whose start cannot be read in its own hour; no record says
    which. Once the audit has listed and committed the whole hour, its count is the vendor's."""
    sink, recorder = FakeSink(), FakeRecorder()
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    local = hour.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H")
    times = {"starttime": f"{local}:00:00", "answertime": None, "endtime": f"{local}:01:00"}
    vendor = FakeApi(4)
    garbled = times | {"starttime": f"{local}:61:00"}  # minute 61: no hour can be read
    vendor.render = lambda record_id: bill(
        record_id, billsec=0, **(garbled if record_id == 3 else times)
    )

    class OneHourPoller(Poller):
        def audit_hours(self) -> list[datetime]:
            return [hour]

    pipeline = await started(sink, api=vendor, recorder=recorder, poller=OneHourPoller)
    hour_ms = int(hour.timestamp() * 1000)

    def missing() -> int:
        *_, (count, _at) = recorder.of("audited")
        return int(count)

    async def audit() -> list[FetchedBatch]:
        queue: asyncio.Queue[FetchedBatch | None] = asyncio.Queue()
        await pipeline.scheduler.audit(queue)
        batches = [queue.get_nowait() for _ in range(queue.qsize())]
        for listed in batches:
            assert listed is not None
            await commit(pipeline, listed)
        return [b for b in batches if b is not None]

    await audit()
    assert missing() == 4
    assert ids_on(sink) == [1, 2, 4] and len(sink.on(DEAD)) == 1
    assert pipeline.committer.state.hour_counts[hour_ms] == 4
    assert await audit() == [], "a settled hour is not listed again"
    assert missing() == 0
