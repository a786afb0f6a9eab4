"""Decides what to fetch and when, and hands every batch to the committer's queue.

Four feeders run at once, each on its own clock:
  - live: a cycle of syncflag=1 rounds every `poll.interval_seconds`;
  - sweep: the recent window with syncflag=2, right after a live request failed (its records
    may be marked and lost on the way) and every `poll.sweep_interval_seconds` anyway;
  - audit: every `poll.audit_interval_seconds`, the vendor's count of each closed hour against
    the committed count, and a syncflag=3 listing of every hour that falls short;
  - backfill (on request): a historical window in slices, with syncflag=3, then a stop.
A failed round keeps what it did bring (it goes to the committer) and backs off; a content
fault (an answer that cannot be read) is not asked again as is: a sweep finds its records.
Before any of them, the start-up sweep commits batch by batch what an earlier run fetched and
did not commit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cdr_connector.backoff import Backoff
from cdr_connector.brake import Brake
from cdr_connector.clock import Clock, sleep_unless
from cdr_connector.config import Settings
from cdr_connector.errors import ApiContentError, PermanentError, RetryableError
from cdr_connector.recorder import Recorder
from cdr_connector.redaction import Redactor
from cdr_connector.source import (
    AUDIT,
    BACKFILL,
    SWEEP,
    FetchedBatch,
    RecordSource,
    RoundFailedError,
)
from cdr_connector.status import PipelineStatus

log = logging.getLogger(__name__)

BatchQueue = asyncio.Queue[FetchedBatch | None]
"""Batches on their way to the committer; None ends the stream."""


@dataclass(frozen=True)
class Backfill:
    """A historical window of dial time, read with syncflag=3 in slices."""

    start: datetime
    end: datetime
    slice_seconds: float = 3600.0

    def slices(self) -> list[tuple[datetime, datetime]]:
        """Inclusive, non-overlapping windows to the second, covering [start, end]."""
        bounds: list[tuple[datetime, datetime]] = []
        cursor = self.start
        step = timedelta(seconds=self.slice_seconds)
        while cursor <= self.end:
            bounds.append((cursor, min(self.end, cursor + step - timedelta(seconds=1))))
            cursor += step
        return bounds


@dataclass(frozen=True)
class SchedulerParts:
    """What a scheduler works with besides the settings."""

    source: RecordSource
    clock: Clock
    recorder: Recorder
    committed_in_hour: Callable[[int], int]
    """The committed count of the hour starting at this UTC epoch ms (the audit's measure)."""
    redactor: Redactor


class Scheduler:
    """The feeders above; `stop` set ends them after the round under way."""

    def __init__(
        self,
        settings: Settings,
        parts: SchedulerParts,
        *,
        brake: Brake,
        status: PipelineStatus,
        stop: asyncio.Event,
    ) -> None:
        self._poll = settings.poll
        self._request_timeout = settings.source.request_timeout_seconds
        self._parts = parts
        self._source = parts.source
        self._clock = parts.clock
        self._brake = brake
        self._status = status
        self._stop = stop
        self._sweep_requested = asyncio.Event()
        self._backoff = Backoff(
            self._poll.retry_initial_seconds, self._poll.retry_max_seconds, random.Random()
        )
        self._fetch_failures = 0

    async def startup_sweep(self, commit: Callable[[FetchedBatch], Awaitable[object]]) -> None:
        """Hand each batch of the start-up sweep to `commit`, before any live round, until
        the sweep completes or a stop is requested.

        Recovered records are older than anything the live stream will bring, so sweeping
        first keeps them ahead of newer records of the same extension.
        """
        partial: BatchQueue = asyncio.Queue()

        async def sweep() -> None:
            async for batch in self._sweep_batches():
                await commit(batch)

        while not self._stop.is_set():
            completed = await self._retrying(sweep(), partial)
            while not partial.empty():
                batch = partial.get_nowait()
                if batch is not None:
                    await commit(batch)
            if completed:
                return

    async def feed(self, queue: BatchQueue, backfill: Backfill | None = None) -> None:
        """Run the feeders until a stop (or the backfill's end), then end the queue."""
        async with asyncio.TaskGroup() as feeders:
            feeders.create_task(self._live_loop(queue))
            feeders.create_task(self._sweep_loop(queue))
            feeders.create_task(self._audit_loop(queue))
            if backfill is not None:
                feeders.create_task(self._backfill(queue, backfill))
        # Only on a clean stop: after an error the enclosing TaskGroup cancels the committer,
        # and waiting for room on a full queue would never end.
        await queue.put(None)

    async def _live_loop(self, queue: BatchQueue) -> None:
        while not self._stop.is_set():
            if self._brake.engaged:
                await self._stop.wait()  # only a restart releases the brake
                continue
            started = self._clock.monotonic()
            if not await self._retrying(self._live_cycle_into(queue), queue):
                # A failed syncflag=1 request may have been answered after all, its records
                # marked by the server and lost on the way: only a sweep finds them again.
                self._sweep_requested.set()
            self._parts.recorder.fetch_cycle("live", self._clock.monotonic() - started)
            await self._pause(self._poll.interval_seconds)

    async def _live_cycle_into(self, queue: BatchQueue) -> None:
        async for batch in self._source.live_cycle():
            self._status.logged_in = True
            if batch.backlog is not None:
                self._parts.recorder.backlog(batch.backlog)
            await queue.put(batch)
            # The committer's must be the last reference: it frees the bills after their
            # commit, while the next round is in flight (see Poller.live_cycle).
            del batch
            if self._stop.is_set() or self._brake.engaged:
                return

    async def _sweep_loop(self, queue: BatchQueue) -> None:
        """Sweep when a live request has failed, and every `sweep_interval_seconds` anyway
        (records another reader of the account took are found that way, or by the audit)."""
        while not self._stop.is_set():
            await self._pause(self._poll.sweep_interval_seconds, self._sweep_requested)
            if self._stop.is_set():
                return
            if self._sweep_requested.is_set():
                # A request the client gave up on may still be answered, and its records
                # marked, within another request timeout: sweep after that.
                await self._pause(self._request_timeout)
                if self._stop.is_set():
                    return
                log.info("sweeping for records of a failed live request")
            self._sweep_requested.clear()
            await self._retrying(self._put_all(self._sweep_batches(), queue), queue)

    def _sweep_batches(self) -> AsyncIterator[FetchedBatch]:
        start, end = self._source.sweep_window()
        return self._source.listing(start, end, SWEEP)

    async def _audit_loop(self, queue: BatchQueue) -> None:
        while not self._stop.is_set():
            await self._pause(self._poll.audit_interval_seconds)
            if self._stop.is_set():
                return
            await self._retrying(self.audit(queue), queue)

    async def audit(self, queue: BatchQueue) -> None:
        """Compare the vendor's count of each closed hour with the committed count; list and
        queue the hours that fall short (the committer drops what is already committed)."""
        missing = 0
        for hour in self._source.audit_hours():
            missing += await self._audit_hour(hour, queue)
        self._parts.recorder.audited(missing, self._clock.time())

    async def _audit_hour(self, hour: datetime, queue: BatchQueue) -> int:
        """The records the vendor counts in `hour` beyond the committed ones, listed."""
        start, end = self._source.local_hour(hour)
        vendor_count = await self._source.count(start, end)
        hour_ms = int(hour.timestamp() * 1000)
        gap = vendor_count - self._parts.committed_in_hour(hour_ms)
        if gap < 0:
            log.warning(
                "audit: %d more records committed for %s than the vendor counts now "
                "(records deleted by the vendor, or a changed filter)",
                -gap,
                start,
            )
        if gap <= 0:
            return 0
        log.warning(
            "audit: the vendor counts %d records dialled %s-%s, %d committed; repairing",
            vendor_count,
            start,
            end,
            vendor_count - gap,
            extra={"event": "audit_gap", "hour": hour.isoformat(), "gap": gap},
        )
        await self._put_all(self._source.listing(start, end, AUDIT), queue)
        now_ms = int(self._clock.time() * 1000)
        await queue.put(FetchedBatch("audit", [], now_ms, settles_hour=(hour_ms, vendor_count)))
        return gap

    async def _backfill(self, queue: BatchQueue, backfill: Backfill) -> None:
        """List every slice of the window with syncflag=3, `concurrency` slices at a time, then
        stop: the committer drains the queue before the run ends."""
        slots = asyncio.Semaphore(self._poll.concurrency)

        async def one_slice(start: datetime, end: datetime) -> None:
            async with slots:
                listing = self._source.listing
                while not await self._retrying(
                    self._put_all(listing(start, end, BACKFILL), queue), queue
                ):
                    if self._stop.is_set():
                        return

        async with asyncio.TaskGroup() as slices:
            for start, end in backfill.slices():
                slices.create_task(one_slice(start, end))
        log.info("backfill %s to %s fetched; stopping once committed", backfill.start, backfill.end)
        self._status.stopping = True
        self._stop.set()

    @staticmethod
    async def _put_all(batches: AsyncIterator[FetchedBatch], queue: BatchQueue) -> None:
        async for batch in batches:
            await queue.put(batch)

    async def _retrying(self, work: Coroutine[Any, Any, None], queue: BatchQueue) -> bool:
        """Run one fetch cycle; on a retryable error keep what was fetched and back off.

        Returns whether the cycle completed.
        """
        try:
            await work
        except RoundFailedError as failed:
            if failed.batch.bills:
                await queue.put(failed.batch)
            await self._after_fetch_error(failed.cause)
            return False
        self._fetch_failures = 0
        return True

    async def _after_fetch_error(self, cause: BaseException) -> None:
        if isinstance(cause, ApiContentError):
            # Asking again would bring the same answer; what it held is found by a sweep.
            self._fetch_failures += 1
            log.error("%s; not asked again as is (a sweep recovers its records)", cause)
            await self._pause(self._backoff.delay(self._fetch_failures))
            return
        if not isinstance(cause, RetryableError):
            if isinstance(cause, PermanentError):
                self._status.failure = self._parts.redactor(str(cause))
            raise cause
        self._fetch_failures += 1
        delay = cause.retry_after or self._backoff.delay(self._fetch_failures)
        log.warning("fetching failed (%s); retrying in %.1fs", cause, delay)
        await self._pause(delay)

    async def _pause(self, seconds: float, *wake_on: asyncio.Event) -> None:
        """Until `seconds` have passed on the clock, a stop is requested, or one of `wake_on`
        is set."""
        await sleep_unless(self._clock, seconds, self._stop, *wake_on)
