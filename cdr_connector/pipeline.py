"""The connector's core for one source: a scheduler feeding a committer through a small queue.

    RecordSource --batches--> Scheduler --queue (2)--> Committer --one transaction--> Kafka
    (poller.Poller)           live, sweep,              dedupe, convert,    records, dead
                              audit, backfill           dead letters, state letters, state

Start-up, in this order:
  1. `init_transactions()` fences any older instance with the same transactional.id and aborts
     the transaction it left open;
  2. only then is the state topic read to its end (read_committed): the committed ids;
  3. a sweep lists the recent window with syncflag=2 and publishes every id not committed,
     recovering records an earlier run fetched but did not commit.

Then the scheduler's feeders (`scheduler`) put batches on a queue of two and the committer
(`committer.Committer.commit`) takes them in order. Batches that queued up while a transaction
committed share the next transaction. The queue is small so that a Kafka outage stops the
fetching of further records (which the server would consider delivered) within a few rounds.
"""

from __future__ import annotations

import asyncio
import logging

from cdr_connector.avro import RecordEncoder
from cdr_connector.brake import Brake
from cdr_connector.clock import Clock
from cdr_connector.committer import CommitSummary, Committer, CommitterParts, StateReader
from cdr_connector.config import Settings
from cdr_connector.kafka_sink import Sink, read_latest_state
from cdr_connector.recorder import Recorder
from cdr_connector.redaction import Redactor
from cdr_connector.scheduler import Backfill, BatchQueue, Scheduler, SchedulerParts
from cdr_connector.source import FetchedBatch, RecordSource
from cdr_connector.status import PipelineStatus

__all__ = ["Backfill", "CommitSummary", "Pipeline", "PipelineStatus"]

log = logging.getLogger(__name__)


async def _next_batches(
    queue: BatchQueue,
) -> tuple[list[FetchedBatch], bool]:
    """The next batch and every batch already queued behind it (the queue holds two), up to
    the queue's end (None): the batches and whether the end was reached.

    Batches that arrived while the previous transaction committed share the next one, so at full
    speed a commit's broker round trips are paid once per several rounds (bench/README.md,
    finding 15); when the connector keeps up, the queue is empty and each batch commits alone,
    without waiting for another.
    """
    first = await queue.get()
    if first is None:
        return [], True
    batches = [first]
    while not queue.empty():
        batch = queue.get_nowait()
        if batch is None:
            return batches, True
        batches.append(batch)
    return batches, False


class Pipeline:
    """A scheduler and a committer sharing a stop signal, a brake and a status."""

    def __init__(
        self,
        settings: Settings,
        source: RecordSource,
        sink: Sink,
        encoder: RecordEncoder,
        clock: Clock,
        *,
        recorder: Recorder,
        state_reader: StateReader = read_latest_state,
        redactor: Redactor | None = None,
    ) -> None:
        """`redactor`: the API client's (`VendorApiClient.redactor`), applied to /readyz
        reasons and the `cdr.error` header of dead letters, which can quote vendor text."""
        redact = redactor if redactor is not None else Redactor()
        self._sink = sink
        self._recorder = recorder
        self._stop = asyncio.Event()
        self.status = PipelineStatus()
        brake = Brake(settings.brake)
        self.committer = Committer(
            settings,
            CommitterParts(sink, encoder, clock, recorder, state_reader, redact),
            brake=brake,
            status=self.status,
            stop=self._stop,
        )
        self.scheduler = Scheduler(
            settings,
            SchedulerParts(source, clock, recorder, self._committed_in_hour, redact),
            brake=brake,
            status=self.status,
            stop=self._stop,
        )

    def request_stop(self) -> None:
        """Stop fetching; batches already fetched are still committed."""
        self.status.stopping = True
        self._stop.set()

    async def wait_stop_requested(self) -> None:
        await self._stop.wait()

    async def start(self) -> None:
        """Start-up steps 1 and 2 (see the module docstring). After a RetryableError, call it
        again: a step that completed is not repeated."""
        if not self.status.kafka_ready:
            await self._sink.start()
            self.status.kafka_ready = True
        await self.committer.load_state()
        self._recorder.freshness(self.committer.freshness_lag)
        self.status.state_loaded = True
        state = self.committer.state
        log.info(
            "state loaded: %d committed ids in %d ranges",
            len(state.committed),
            len(state.committed.ranges),
        )

    async def run(self, backfill: Backfill | None = None) -> None:
        """Run until `request_stop`; with `backfill`, stop by itself once it is committed.
        Starts first, unless `start` has completed."""
        if not self.status.state_loaded:
            await self.start()
        await self.recover()
        queue: BatchQueue = asyncio.Queue(maxsize=2)
        async with asyncio.TaskGroup() as group:
            group.create_task(self.commit_queue(queue))
            group.create_task(self.scheduler.feed(queue, backfill))

    async def recover(self) -> None:
        """Start-up step 3 (see the module docstring): the sweep, committed batch by batch."""
        await self.scheduler.startup_sweep(self._commit_one)

    async def _commit_one(self, batch: FetchedBatch) -> list[CommitSummary]:
        return await self.committer.commit([batch])

    async def commit_queue(self, queue: BatchQueue) -> None:
        """Commit the batches of `queue` in order until its end (None): each batch with every
        batch queued behind it, in one transaction."""
        ended = False
        while not ended:
            batches, ended = await _next_batches(queue)
            if batches:
                await self.committer.commit(batches)
            # Free the rounds' bills now, while the next round is in flight; kept until the
            # next batch arrives, freeing them (about 4 ms for 8000 bills) would delay the
            # requests of the round after it.
            del batches

    def _committed_in_hour(self, hour_ms: int) -> int:
        return self.committer.state.hour_counts.get(hour_ms, 0)
