"""The pipeline's start and stop: which start-up step is repeated after a failure, what
/readyz says meanwhile, and who is woken by a stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from cdr_connector.checkpoint import CheckpointState
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_sink import OutgoingMessage
from tests.fakes import SOURCE, FakeApi, FakeRecorder, FakeSink, bill, make_pipeline, make_settings


class CountingSink(FakeSink):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1


class FlakyStateReader:
    """Fails the first `failures` reads of the state topic, then finds nothing."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0

    def __call__(self, _settings: object, _key: bytes) -> bytes | None:
        self.reads += 1
        if self.reads <= self.failures:
            raise KafkaTransientError("cannot read state topic cdr.state: timed out")
        return None


async def test_after_a_failed_state_read_start_again_reads_it_without_a_new_producer() -> None:
    sink, reader, recorder = CountingSink(), FlakyStateReader(1), FakeRecorder()
    pipeline = make_pipeline(sink, state_reader=reader, recorder=recorder)

    with pytest.raises(KafkaTransientError):
        await pipeline.start()
    assert pipeline.status.not_ready_reason() == "checkpoint state not loaded"
    assert recorder.lag is None, "the freshness gauge waits for the state"
    await pipeline.start()

    assert (sink.starts, reader.reads) == (1, 2)
    assert pipeline.status.kafka_ready and pipeline.status.state_loaded
    assert pipeline.status.not_ready_reason() == "not logged in to the vendor API"
    assert recorder.lag is not None
    assert recorder.lag() == pipeline.committer.freshness_lag()


async def test_a_loaded_state_is_logged_with_its_ids_and_ranges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = CheckpointState(SOURCE)
    state.committed.add_many([1, 2, 3, 10], 0)
    pipeline = make_pipeline(FakeSink(), state.encode())

    with caplog.at_level(logging.INFO, logger="cdr_connector.pipeline"):
        await pipeline.start()

    assert "state loaded: 4 committed ids in 2 ranges" in caplog.messages


async def test_run_after_start_does_not_start_again() -> None:
    sink, reader = CountingSink(), FlakyStateReader(0)
    pipeline = make_pipeline(sink, state_reader=reader)
    await pipeline.start()

    running = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.05)
    pipeline.request_stop()
    await asyncio.wait_for(running, 5)

    assert (sink.starts, reader.reads) == (1, 1)


async def test_run_without_start_starts_first() -> None:
    sink, reader = CountingSink(), FlakyStateReader(0)
    pipeline = make_pipeline(sink, state_reader=reader)

    running = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.05)
    pipeline.request_stop()
    await asyncio.wait_for(running, 5)

    assert (sink.starts, reader.reads) == (1, 1)


async def test_a_stop_wakes_whoever_waits_for_it_and_readyz_says_shutting_down() -> None:
    pipeline = make_pipeline(FakeSink())
    await pipeline.start()
    waiting = asyncio.create_task(pipeline.wait_stop_requested())
    await asyncio.sleep(0.01)
    assert not waiting.done()

    pipeline.request_stop()

    await asyncio.wait_for(waiting, 1)
    assert pipeline.status.stopping
    assert pipeline.status.not_ready_reason() == "shutting down"


class HeldSink(FakeSink):
    """Holds every commit until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None:
        await self.release.wait()
        await super().commit(messages)


async def test_while_a_commit_waits_at_most_two_rounds_are_fetched_ahead_of_it() -> None:
    sink, vendor = HeldSink(), FakeApi(1000)
    vendor.render = bill
    settings = make_settings(poll={"page_size": 10, "concurrency": 1})
    pipeline = make_pipeline(sink, api=vendor, settings=settings)
    running = asyncio.create_task(pipeline.run())
    for _ in range(500):
        if sum(flag == 1 for flag, _page in vendor.requests) >= 4:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # room for a fifth round, were the queue longer

    live_rounds = [page for flag, page in vendor.requests if flag == 1]
    # One round in the commit, two queued behind it, and one waiting for room in the queue.
    assert len(live_rounds) == 4
    pipeline.request_stop()
    sink.release.set()
    await asyncio.wait_for(running, 5)
    assert len(sink.on("cdr.calls")) == 40
