"""The scheduler on its own, against a scripted source and a clock that holds every long pause:
what each feeder asks for, what reaches the queue, how failures are kept and paused for, and
where the audit and the backfill draw their windows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdr_connector.brake import Brake
from cdr_connector.errors import (
    AnswerTooLargeError,
    ApiAuthError,
    ApiTransientError,
)
from cdr_connector.redaction import Redactor
from cdr_connector.scheduler import Backfill, BatchQueue, Scheduler, SchedulerParts
from cdr_connector.source import AUDIT, BACKFILL, SWEEP, Fetch, FetchedBatch, RoundFailedError
from cdr_connector.status import PipelineStatus
from tests.fakes import FakeClock, FakeRecorder, make_settings

HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 26, 0, tzinfo=UTC)
NOW = 1_795_700_000.0
SWEEP_WINDOW = (T0, T0 + 2 * HOUR)
Script = list[FetchedBatch | BaseException]


class HoldingClock(FakeClock):
    """Pauses under a second pass at once (retry backoffs, the request timeout); longer ones
    (the feeders' intervals) never end by themselves, only by a stop or a wake-up."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds < 1:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        await asyncio.Event().wait()


class ScriptedSource:
    """A `RecordSource` that plays a script per call and keeps every call."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.cycles: list[Script] = []
        self.listings: list[Script] = []
        self.counts: dict[datetime, int] = {}
        self.hours: list[datetime] = []
        self.calls: list[tuple[Any, ...]] = []
        self.on_yield: Callable[[FetchedBatch], None] = lambda batch: None
        self.cycle_seconds = 0.0

    async def _play(self, script: Script) -> AsyncIterator[FetchedBatch]:
        for item in script:
            if isinstance(item, BaseException):
                raise item
            self.on_yield(item)
            yield item

    async def live_cycle(self) -> AsyncIterator[FetchedBatch]:
        self.calls.append(("live",))
        self.clock.advance(self.cycle_seconds)
        async for batch in self._play(self.cycles.pop(0) if self.cycles else []):
            yield batch

    async def listing(
        self, start: datetime, end: datetime, fetch: Fetch
    ) -> AsyncIterator[FetchedBatch]:
        self.calls.append(("listing", start, end, fetch))
        async for batch in self._play(self.listings.pop(0) if self.listings else []):
            yield batch

    async def count(self, start: datetime, end: datetime) -> int:
        self.calls.append(("count", start, end))
        return self.counts[start]

    def sweep_window(self) -> tuple[datetime, datetime]:
        return SWEEP_WINDOW

    def audit_hours(self) -> list[datetime]:
        return self.hours

    def local_hour(self, hour_start: datetime) -> tuple[datetime, datetime]:
        return hour_start, hour_start + timedelta(seconds=3599)


class Rig:
    def __init__(self, committed: dict[int, int] | None = None, **given: Any) -> None:
        self.clock = HoldingClock(NOW)
        self.source = ScriptedSource(self.clock)
        self.recorder = FakeRecorder()
        self.status = PipelineStatus()
        self.stop = asyncio.Event()
        poll = {
            "interval_seconds": 5,
            "sweep_interval_seconds": 600,
            "audit_interval_seconds": 3600,
        }
        poll |= given
        settings = make_settings(source_settings={"request_timeout_seconds": 0.5}, poll=poll)
        self.brake = Brake(settings.brake)
        counts = committed or {}
        parts = SchedulerParts(
            self.source, self.clock, self.recorder, lambda ms: counts.get(ms, 0), Redactor("s3cret")
        )
        self.scheduler = Scheduler(
            settings, parts, brake=self.brake, status=self.status, stop=self.stop
        )
        self.queue: BatchQueue = asyncio.Queue()
        self.committed: list[FetchedBatch] = []

    async def commit(self, batch: FetchedBatch) -> None:
        """What the start-up sweep hands its batches to."""
        self.committed.append(batch)

    def queued(self) -> list[FetchedBatch | None]:
        return [self.queue.get_nowait() for _ in range(self.queue.qsize())]

    async def feed_until_idle(self, backfill: Backfill | None = None) -> None:
        """Run the feeders until every one waits on a long pause (or ends), then stop them."""
        feeding = asyncio.create_task(self.scheduler.feed(self.queue, backfill))
        for _ in range(200):
            await asyncio.sleep(0)
        self.stop.set()
        await feeding


def live(*ids: int, backlog: int | None = None) -> FetchedBatch:
    return FetchedBatch("live", [{"id": i} for i in ids], int(NOW * 1000), backlog)


def listed(mode: Any, *ids: int) -> FetchedBatch:
    return FetchedBatch(mode, [{"id": i} for i in ids], int(NOW * 1000))


def failed(cause: BaseException, *ids: int, mode: Any = "live") -> RoundFailedError:
    return RoundFailedError(FetchedBatch(mode, [{"id": i} for i in ids], 0), cause)


# --- the backfill's slices -----------------------------------------------------------------


def test_a_backfill_is_cut_into_whole_slices_and_a_last_short_one() -> None:
    backfill = Backfill(T0, T0 + timedelta(hours=2, minutes=30))
    assert backfill.slices() == [
        (T0, T0 + timedelta(minutes=59, seconds=59)),
        (T0 + HOUR, T0 + timedelta(hours=1, minutes=59, seconds=59)),
        (T0 + 2 * HOUR, T0 + timedelta(hours=2, minutes=30)),
    ]


def test_a_backfill_ending_on_a_slice_start_has_that_one_second_as_its_last_slice() -> None:
    backfill = Backfill(T0, T0 + timedelta(seconds=20), slice_seconds=10)
    assert backfill.slices() == [
        (T0, T0 + timedelta(seconds=9)),
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=19)),
        (T0 + timedelta(seconds=20), T0 + timedelta(seconds=20)),
    ]
    assert Backfill(T0, T0).slices() == [(T0, T0)]


async def test_a_backfill_lists_every_slice_with_syncflag_3_then_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.scheduler")
    rig = Rig(concurrency=1)
    rig.source.listings = [[listed("backfill", 1)], [listed("backfill", 2)]]
    backfill = Backfill(T0, T0 + timedelta(seconds=19), slice_seconds=10)
    await asyncio.wait_for(rig.scheduler.feed(rig.queue, backfill), 10)
    slices = [c[1:] for c in rig.source.calls if c[0] == "listing" and c[3] == BACKFILL]
    assert slices == [
        (T0, T0 + timedelta(seconds=9), BACKFILL),
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=19), BACKFILL),
    ]
    assert rig.stop.is_set() and rig.status.stopping
    assert "fetched; stopping once committed" in caplog.text
    batches = rig.queued()
    assert [b.bills for b in batches if b is not None and b.mode == "backfill"] == [
        [{"id": 1}],
        [{"id": 2}],
    ]
    assert batches[-1] is None


async def test_a_failed_backfill_slice_is_listed_again_keeping_what_came() -> None:
    rig = Rig(concurrency=1)
    rig.source.listings = [
        [listed("backfill", 1), failed(ApiTransientError("503"), 2, mode="backfill")],
        [listed("backfill", 1), listed("backfill", 2)],
    ]
    await asyncio.wait_for(
        rig.scheduler.feed(rig.queue, Backfill(T0, T0 + HOUR - timedelta(seconds=1))), 10
    )
    assert len([c for c in rig.source.calls if c[0] == "listing" and c[3] == BACKFILL]) == 2
    ids = [b.bills[0]["id"] for b in rig.queued() if b is not None and b.mode == "backfill"]
    assert ids == [1, 2, 1, 2]  # the failed round's 2 is kept, then the slice again whole


# --- the audit -------------------------------------------------------------------------------


async def test_the_audit_lists_only_the_hours_the_vendor_counts_more_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    even, short, over = T0, T0 + HOUR, T0 + 2 * HOUR
    ms = {hour: int(hour.timestamp() * 1000) for hour in (even, short, over)}
    rig = Rig(committed={ms[even]: 4, ms[short]: 1, ms[over]: 9})
    rig.source.hours = [even, short, over]
    rig.source.counts = {even: 4, short: 3, over: 2}
    rig.source.listings = [[listed("audit", 7, 8)]]
    await rig.scheduler.audit(rig.queue)
    hour_end = short + timedelta(seconds=3599)
    assert rig.source.calls == [
        ("count", even, even + timedelta(seconds=3599)),
        ("count", short, hour_end),
        ("listing", short, hour_end, AUDIT),
        ("count", over, over + timedelta(seconds=3599)),
    ]
    listed_batch, settled = rig.queued()
    assert listed_batch is not None and [b["id"] for b in listed_batch.bills] == [7, 8]
    assert settled == FetchedBatch("audit", [], int(NOW * 1000), settles_hour=(ms[short], 3))
    assert rig.recorder.of("audited") == [(2, NOW)]
    assert caplog.text.count("more records committed") == 1
    assert "audit: 7 more records committed" in caplog.text


async def test_an_audit_of_no_gap_reports_none_missing() -> None:
    rig = Rig()
    rig.source.hours = [T0]
    rig.source.counts = {T0: 0}
    await rig.scheduler.audit(rig.queue)
    assert rig.queued() == []
    assert rig.recorder.of("audited") == [(0, NOW)]


# --- the start-up sweep ----------------------------------------------------------------------


async def test_the_startup_sweep_commits_each_batch_of_the_sweep_window() -> None:
    rig = Rig()
    rig.source.listings = [[listed("sweep", 1), listed("sweep", 2)]]
    await rig.scheduler.startup_sweep(rig.commit)
    assert rig.source.calls == [("listing", *SWEEP_WINDOW, SWEEP)]
    assert [b.bills for b in rig.committed] == [[{"id": 1}], [{"id": 2}]]


async def test_a_failed_startup_sweep_commits_what_came_and_sweeps_again_after_retry_after() -> (
    None
):
    rig = Rig()
    rig.source.listings = [
        [listed("sweep", 1), failed(ApiTransientError("503", retry_after=0.25), 2, mode="sweep")],
        [failed(ApiTransientError("503", retry_after=0.5), mode="sweep")],  # nothing came
        [listed("sweep", 3)],
    ]
    await rig.scheduler.startup_sweep(rig.commit)
    assert [b.bills[0]["id"] for b in rig.committed] == [1, 2, 3]
    assert rig.clock.sleeps == [0.25, 0.5]


async def test_no_startup_sweep_once_a_stop_is_requested() -> None:
    rig = Rig()
    rig.stop.set()

    await rig.scheduler.startup_sweep(rig.commit)
    assert rig.source.calls == []


async def test_a_permanent_failure_is_raised_and_named_redacted_in_the_status() -> None:
    rig = Rig()
    rig.source.listings = [[failed(ApiAuthError("appid refused with key s3cret"), mode="sweep")]]

    with pytest.raises(ApiAuthError):
        await rig.scheduler.startup_sweep(rig.commit)
    assert rig.status.failure == "appid refused with key ***"


async def test_a_bug_in_a_source_is_raised_without_a_status_failure() -> None:
    rig = Rig()
    rig.source.listings = [[failed(KeyError("page"), mode="sweep")]]

    with pytest.raises(KeyError):
        await rig.scheduler.startup_sweep(rig.commit)
    assert rig.status.failure is None


@pytest.mark.usefixtures("ceiling_backoff")
async def test_failures_in_a_row_back_off_longer_and_a_completed_round_starts_over() -> None:
    """A content fault is paused for like a transport fault, but never for a retry_after."""
    rig = Rig(retry_initial_seconds=0.01, retry_max_seconds=0.5)
    too_large = AnswerTooLargeError("an answer over 1 MiB")
    too_large.retry_after = 30.0  # type: ignore[attr-defined]
    rig.source.listings = [
        [failed(too_large, mode="sweep")],
        [failed(ApiTransientError("503"), mode="sweep")],
        [failed(ApiTransientError("503"), mode="sweep")],
        [],
    ]

    await rig.scheduler.startup_sweep(rig.commit)
    rig.source.listings = [[failed(ApiTransientError("503"), mode="sweep")], []]
    await rig.scheduler.startup_sweep(rig.commit)
    assert rig.clock.sleeps == [0.01, 0.02, 0.04, 0.01]


# --- the live, sweep and audit loops ---------------------------------------------------------


async def test_a_live_cycle_queues_its_batches_reports_the_backlog_and_its_duration() -> None:
    rig = Rig()
    rig.source.cycle_seconds = 2.5
    rig.source.cycles = [[live(1, 2, backlog=12), live(3)]]
    await rig.feed_until_idle()
    assert rig.source.calls == [("live",)]
    assert rig.queued() == [live(1, 2, backlog=12), live(3), None]
    assert rig.recorder.of("backlog") == [12]
    assert rig.recorder.of("fetch_cycle") == [("live", 2.5)]
    assert rig.status.logged_in
    # each feeder then waits for its interval: live 5 s, sweep 600 s, audit the default hour
    assert sorted(rig.clock.sleeps) == [5, 600, 3600]


async def test_no_live_read_while_the_brake_is_engaged() -> None:
    rig = Rig()
    while not rig.brake.engaged:
        rig.brake.commit_failed(ValueError("bug"))
    rig.source.cycles = [[live(1)]]
    await rig.feed_until_idle()
    assert ("live",) not in rig.source.calls
    assert rig.queued() == [None]


async def test_a_live_cycle_ends_at_once_when_the_brake_engages_or_a_stop_comes() -> None:
    for halt in ("brake", "stop"):
        rig = Rig()

        def halt_on(batch: FetchedBatch, rig: Rig = rig, halt: str = halt) -> None:
            if batch.bills[0]["id"] != 1:
                return
            if halt == "stop":
                rig.stop.set()
            while halt == "brake" and not rig.brake.engaged:
                rig.brake.commit_failed(ValueError("bug"))

        rig.source.on_yield = halt_on
        rig.source.cycles = [[live(1), live(2)]]
        await rig.feed_until_idle()
        assert rig.queued() == [live(1), None], halt


async def test_a_failed_live_round_keeps_its_bills_and_is_swept_after_a_request_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.scheduler")
    rig = Rig()
    rig.source.cycles = [[live(1), failed(ApiTransientError("timed out"), 2)]]
    rig.source.listings = [[listed("sweep", 2)]]
    await rig.feed_until_idle()
    assert rig.source.calls == [("live",), ("listing", *SWEEP_WINDOW, SWEEP)]
    batches = rig.queued()
    assert [b.bills for b in batches if b is not None] == [[{"id": 1}], [{"id": 2}], [{"id": 2}]]
    assert 0.5 in rig.clock.sleeps  # the request timeout, before the sweep
    assert "sweeping for records of a failed live request" in caplog.text


async def test_an_empty_failed_round_queues_nothing() -> None:
    rig = Rig()
    rig.source.cycles = [[failed(ApiTransientError("timed out"))]]
    await rig.feed_until_idle()
    assert rig.queued() == [None]


async def test_a_stop_during_the_request_timeout_pause_skips_the_sweep() -> None:
    rig = Rig()
    rig.source.cycles = [[failed(ApiTransientError("timed out"), 1)]]

    async def stop_when_paused() -> None:
        while 0.5 not in rig.clock.sleeps:
            await asyncio.sleep(0)
        rig.stop.set()

    stopper = asyncio.create_task(stop_when_paused())
    await rig.feed_until_idle()
    await stopper
    assert [c for c in rig.source.calls if c[0] == "listing"] == []


async def test_the_audit_loop_audits_every_interval() -> None:
    rig = Rig(audit_interval_seconds=0.5)  # passes at once on this clock: audits until stopped
    rig.source.hours = [T0]
    rig.source.counts = {T0: 0}
    await rig.feed_until_idle()
    finished = [at for _missing, at in rig.recorder.of("audited")]
    assert finished[:3] == [NOW + 0.5, NOW + 1.0, NOW + 1.5]
