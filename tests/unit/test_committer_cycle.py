"""The committer on its own: the state before and after a load, the freshness lag, the
backoff of failed transactions, the brake on unexpected failures, what each commit reports
and how often a large batch lets the event loop run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.bill import MAX_END_AHEAD_MS
from cdr_connector.brake import Brake
from cdr_connector.checkpoint import CheckpointState, bill_fingerprint
from cdr_connector.committer import CommitSummary, Committer, CommitterParts
from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.source import FetchedBatch
from cdr_connector.status import PipelineStatus
from tests.fakes import SOURCE, FakeClock, FakeRecorder, FakeSink, batch, bill, make_settings

NOW = 1_795_700_000.0  # 2026-11-26 13:33:20Z, after the calls of `bill` ended
INITIAL = 0.01


class Rig:
    def __init__(
        self, state: bytes | None = None, *, sink: FakeSink | None = None, **brake: Any
    ) -> None:
        self.sink = sink or FakeSink()
        self.clock = FakeClock(NOW)
        self.recorder = FakeRecorder()
        self.status = PipelineStatus()
        self.stop = asyncio.Event()
        self.state = state
        self.reads = 0
        self.read_failures: list[Exception] = []
        settings = make_settings(
            poll={"retry_initial_seconds": INITIAL, "retry_max_seconds": 1}, brake=brake
        )
        self.brake = Brake(settings.brake)
        parts = CommitterParts(
            self.sink, SingleObjectEncoder(), self.clock, self.recorder, self.read_state
        )
        self.committer = Committer(
            settings, parts, brake=self.brake, status=self.status, stop=self.stop
        )

    def read_state(self, settings: Settings, key: bytes) -> bytes | None:
        self.reads += 1
        if self.read_failures:
            raise self.read_failures.pop()
        return self.state


class Broken(FakeSink):
    """Fails the next `times` commits with an unexpected error (a bug, not Kafka)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def commit(self, messages: Any) -> None:
        if self.times:
            self.times -= 1
            raise RuntimeError("a bug in the sink")
        await super().commit(messages)


def with_newest_end(newest_end_ms: int) -> bytes:
    state = CheckpointState(source=SOURCE)
    state.newest_end_ms = newest_end_ms
    return state.encode()


# --- the state and the freshness lag --------------------------------------------------------


def test_before_any_load_the_state_is_empty_and_there_is_no_lag() -> None:
    rig = Rig()
    assert rig.committer.state.source == SOURCE
    assert len(rig.committer.state.committed) == 0
    assert rig.committer.freshness_lag() == 0.0


async def test_the_lag_is_the_time_since_the_newest_committed_call_ended() -> None:
    rig = Rig(with_newest_end(int((NOW - 90) * 1000)))
    await rig.committer.load_state()
    assert rig.committer.freshness_lag() == 90.0
    assert rig.recorder.of("state_changed") == [0]


async def test_a_newest_end_a_little_ahead_of_the_clock_is_no_negative_lag() -> None:
    rig = Rig(with_newest_end(int((NOW + 5) * 1000)))
    await rig.committer.load_state()
    assert rig.committer.state.newest_end_ms == int((NOW + 5) * 1000)
    assert rig.committer.freshness_lag() == 0.0


async def test_a_newest_end_beyond_the_bound_on_times_is_forgotten_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = int(NOW * 1000) + MAX_END_AHEAD_MS
    kept = Rig(with_newest_end(bound))
    await kept.committer.load_state()
    assert kept.committer.state.newest_end_ms == bound
    assert "future" not in caplog.text
    dropped = Rig(with_newest_end(bound + 1))
    await dropped.committer.load_state()
    assert dropped.committer.state.newest_end_ms == 0
    assert "the state's newest end time is in the future" in caplog.text


def test_a_summary_of_nothing_done_counts_nothing() -> None:
    summary = CommitSummary()
    assert (summary.produced, summary.dead_lettered, summary.deduplicated) == (0, 0, 0)
    assert summary.dead_letter_start_ms == summary.dead_letter_stages == []
    assert summary.dead_letter_fingerprints == []
    assert summary.tallies.start_hours == {}


# --- what a commit writes into the state ----------------------------------------------------


async def test_ids_and_fingerprints_are_stamped_with_the_clock_in_milliseconds() -> None:
    rig = Rig()
    no_id = bill(0, id=None)
    await rig.committer.commit([batch(bill(1), no_id)])
    state = rig.committer.state
    assert [r.committed_at_ms for r in state.committed.ranges] == [int(NOW * 1000)]
    assert state.dead_letter_fingerprints == {bill_fingerprint(no_id): int(NOW * 1000)}


async def test_a_settled_hour_takes_the_vendors_count_unless_more_are_committed() -> None:
    rig = Rig()
    await rig.committer.commit([batch(bill(1), bill(2))])
    (hour,) = rig.committer.state.hour_counts
    assert rig.committer.state.hour_counts == {hour: 2}
    settle = FetchedBatch("audit", [], int(NOW * 1000), settles_hour=(hour, 5))
    await rig.committer.commit([settle])
    assert rig.committer.state.hour_counts == {hour: 5}
    lower = FetchedBatch("audit", [], int(NOW * 1000), settles_hour=(hour, 1))
    await rig.committer.commit([lower])
    assert rig.committer.state.hour_counts == {hour: 5}


# --- failures ----------------------------------------------------------------------------


@pytest.mark.usefixtures("ceiling_backoff")
async def test_kafka_failures_in_a_row_back_off_longer_and_are_not_unexpected() -> None:
    rig = Rig()
    rig.sink.failures = [KafkaTransientError("away"), KafkaTransientError("away")]
    await rig.committer.commit([batch(bill(1))])
    assert rig.clock.sleeps == [INITIAL, 2 * INITIAL]
    assert len(rig.sink.transactions) == 1
    assert rig.recorder.of("commit_failed") == []


@pytest.mark.usefixtures("ceiling_backoff")
async def test_an_unexpected_failure_reads_the_state_back_and_tries_again() -> None:
    rig = Rig(sink=Broken(times=2))
    await rig.committer.load_state()
    (summary,) = await rig.committer.commit([batch(bill(1), bill(2))])
    assert summary.produced == 2
    assert len(rig.sink.transactions) == 1
    assert rig.recorder.of("commit_failed") == [None, None]
    assert rig.reads == 3, "read at the start and after each failure"
    assert rig.clock.sleeps == [INITIAL, 2 * INITIAL]
    assert not rig.brake.engaged


async def test_a_state_that_cannot_be_read_back_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(sink=Broken(times=1))
    rig.read_failures = [RuntimeError("the state topic is away")]
    await rig.committer.commit([batch(bill(1))])
    assert "reading the state back failed too (the state topic is away)" in caplog.text


async def test_a_batch_retried_after_a_failed_read_back_is_still_published() -> None:
    rig = Rig(sink=Broken(times=1))
    rig.read_failures = [RuntimeError("the state topic is away")]
    (summary,) = await rig.committer.commit([batch(bill(1))])
    assert summary.produced == 1


async def test_a_stop_during_failures_gives_the_batches_up_and_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(sink=Broken(times=1))
    rig.stop.set()
    assert await rig.committer.commit([batch(bill(1)), batch(bill(2))]) == []
    assert "stopping with 2 uncommitted batch(es)" in caplog.messages


async def test_unexpected_failures_in_a_row_engage_the_brake_and_say_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(sink=Broken(times=2), max_commit_failures=2)
    with caplog.at_level(logging.ERROR):
        await rig.committer.commit([batch(bill(1))])
    assert rig.recorder.of("brake_engaged") == ["commit_failures"]
    assert rig.status.brake == rig.brake.reason
    assert rig.status.brake is not None and "2 transactions in a row" in rig.status.brake
    assert rig.brake.reason in caplog.text


async def test_mostly_dead_letters_engage_the_brake() -> None:
    rig = Rig(window_bills=10, dead_letter_ratio=0.5)
    bad = [bill(i, starttime="2026-02-30 10:00:00") for i in range(1, 8)]
    await rig.committer.commit([batch(*bad, bill(8), bill(9), bill(10))])
    assert rig.recorder.of("brake_engaged") == ["dead_letters"]
    assert rig.status.brake == rig.brake.reason


# --- what is reported --------------------------------------------------------------------


async def test_only_listings_are_timed_here_and_only_real_commits_change_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    with caplog.at_level(logging.INFO, logger="cdr_connector.committer"):
        await rig.committer.commit([batch(bill(1), bill(2)), batch(bill(2), mode="sweep")])
    assert rig.recorder.of("fetch_cycle") == [("sweep", 0.0)]
    assert rig.recorder.of("committed") == [("live", 2, NOW), ("sweep", 1, NOW)]
    assert rig.recorder.of("state_changed") == [2], "a batch of duplicates changes nothing"
    assert "committed 2 records, 0 dead letters, 0 duplicates dropped (live); 2 in total" in (
        caplog.text
    )


async def test_a_large_batch_lets_the_loop_run_before_its_first_bill_and_every_250() -> None:
    rig = Rig()
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    for size, expected in ((250, 1), (251, 2), (500, 2)):
        counter = asyncio.create_task(count_turns())
        await asyncio.sleep(0)  # the counter waits at its first turn
        turns = 0
        first = len(rig.committer.state.committed) + 1
        await rig.committer.commit([batch(*(bill(i) for i in range(first, first + size)))])
        counter.cancel()
        assert turns == expected, size
