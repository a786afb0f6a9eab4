"""The only place that orders a cycle: fetch -> convert -> produce -> commit.

Start-up, in this order:
  1. `init_transactions()` fences any older instance with the same transactional.id and aborts
     the transaction it left open;
  2. only then is the state topic read to its end (read_committed): the committed ids;
  3. a sweep lists the recent window with syncflag=2 and publishes every id not committed,
     recovering records an earlier run fetched but did not commit.

Then, concurrently: the live fetcher (syncflag=1 rounds), the sweeper (after a failed live
request, and periodically) and the audit put batches on a small queue; one committer takes them
in order. For each batch the committer:
  1. drops bills whose id is already committed or repeated in the batch;
  2. normalises and encodes each bill; one that fails becomes a dead-letter message;
  3. sorts the records by id, so records of one extension keep their id order;
  4. adds the ids to the state and produces records, dead letters and the new state;
  5. commits the transaction. On a retryable failure the same messages are produced again in
     a new transaction until it commits; the state was already updated in memory and is the
     one the messages carry, so nothing is counted twice.
Batches that queued up while a transaction committed are converted one after another, in order,
and share the next transaction. The queue holds at most two batches, so a Kafka outage stops
the fetching of further records (which the server would consider delivered) within a few rounds.

Duplicate removal happens in the committer, not the fetcher, because only there is the set of
committed ids certain: a sweep and the live stream may fetch the same record, and whichever
batch commits second drops it.

No bill can stop the stream: whatever a bill holds, converting it either makes a record or a
dead letter (`bill`, `batch_writer`). A transaction that fails with an unexpected error (a
bug, not Kafka) is aborted, the state is read back from the state topic (it may have been
advanced in memory for the failed transaction) and the same batches are tried again with
backoff; the brake (`brake`) stops live reads after a few such failures in a row, or when most
recent bills are dead letters, and /readyz says why. The process stays up either way: a crash
would only read the same bills again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from cdr_connector import metrics
from cdr_connector.avro import RecordEncoder
from cdr_connector.backoff import Backoff
from cdr_connector.batch_writer import BatchWriter, RecordTallies
from cdr_connector.bill import MAX_END_AHEAD_MS, dial_time_ms, raw_bytes
from cdr_connector.bill_writer import BillWriter
from cdr_connector.brake import Brake
from cdr_connector.checkpoint import CheckpointState, bill_fingerprint
from cdr_connector.clock import Clock
from cdr_connector.config import Settings
from cdr_connector.errors import (
    ApiContentError,
    CdrConnectorError,
    PermanentError,
    RecordError,
    RetryableError,
)
from cdr_connector.kafka_sink import OutgoingMessage, Sink, read_latest_state
from cdr_connector.poller import FetchedBatch, Poller, RoundFailedError
from cdr_connector.records import RecordContext
from cdr_connector.redaction import Redactor

log = logging.getLogger(__name__)

_MAX_HEADER_TEXT = 1000
# About 2 ms of converting between two chances for the event loop to run. Sending the next
# round's requests and reading its first answers take the loop several turns, each of which
# waits for such a stretch: with 1000 bills (7 ms) a round's first answer arrived 20-30 ms
# after the API's latency instead of 15 (bench/README.md, finding 5).
_BILLS_BETWEEN_YIELDS = 250


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


@dataclass
class PipelineStatus:
    """What /readyz reports; each flag is set by the step that establishes it."""

    kafka_ready: bool = False
    state_loaded: bool = False
    logged_in: bool = False
    stopping: bool = False
    failure: str | None = None
    brake: str | None = None

    def not_ready_reason(self) -> str | None:
        if self.failure:
            return self.failure
        if self.brake:
            return self.brake
        if self.stopping:
            return "shutting down"
        for ready, what in (
            (self.kafka_ready, "Kafka producer not initialised"),
            (self.state_loaded, "checkpoint state not loaded"),
            (self.logged_in, "not logged in to the vendor API"),
        ):
            if not ready:
                return what
        return None


@dataclass
class CommitSummary:
    produced: int = 0
    dead_lettered: int = 0
    deduplicated: int = 0
    tallies: RecordTallies = field(default_factory=RecordTallies)
    dead_letter_start_ms: list[int] = field(default_factory=list)
    dead_letter_stages: list[str] = field(default_factory=list)
    dead_letter_fingerprints: list[str] = field(default_factory=list)


async def _next_batches(
    queue: asyncio.Queue[FetchedBatch | None],
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
    def __init__(
        self,
        settings: Settings,
        poller: Poller,
        sink: Sink,
        encoder: RecordEncoder,
        clock: Clock,
        *,
        state_reader: Callable[[Settings, bytes], bytes | None] = read_latest_state,
        redactor: Redactor | None = None,
    ) -> None:
        """`redactor`: the API client's (`VendorApiClient.redactor`), applied to /readyz
        reasons and the `cdr.error` header of dead letters, which can quote vendor text."""
        self._settings = settings
        self._source = settings.source.name
        self._source_bytes = self._source.encode()
        self._topic = settings.kafka.topic
        self._record_headers = (
            ("cdr.source", self._source_bytes),
            ("cdr.schema", encoder.schema_tag.encode()),
        )
        self._poller = poller
        self._sink = sink
        self._encoder = encoder
        self._clock = clock
        self._state_reader = state_reader
        self._redact = redactor if redactor is not None else Redactor()
        self._state = CheckpointState(source=self._source)
        self._stop = asyncio.Event()
        self._sweep_requested = asyncio.Event()
        self._backoff = Backoff(
            settings.poll.retry_initial_seconds, settings.poll.retry_max_seconds, random.Random()
        )
        self._fetch_failures = 0
        self._brake = Brake(settings.brake)
        self.status = PipelineStatus()

    @property
    def state(self) -> CheckpointState:
        return self._state

    def request_stop(self) -> None:
        """Stop fetching; batches already fetched are still committed."""
        self.status.stopping = True
        self._stop.set()

    async def wait_stop_requested(self) -> None:
        await self._stop.wait()

    async def run(self, backfill: Backfill | None = None) -> None:
        """Run until `request_stop`; with `backfill`, stop by itself once it is committed.
        Starts first, unless `start` has completed."""
        if not self.status.state_loaded:
            await self._start()
        await self._startup_sweep()
        queue: asyncio.Queue[FetchedBatch | None] = asyncio.Queue(maxsize=2)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._commit_loop(queue))
            group.create_task(self._feed(queue, backfill))

    async def start(self) -> None:
        """Start-up steps 1 and 2 (see the module docstring). After a RetryableError, call it
        again: a step that completed is not repeated."""
        await self._start()

    async def _start(self) -> None:
        if not self.status.kafka_ready:
            await self._sink.start()
            self.status.kafka_ready = True
        await self._load_state()
        self._publish_state_metrics()
        # Computed at every scrape, so it keeps growing while a cycle is stuck or slow.
        metrics.FRESHNESS_LAG.labels(self._source).set_function(self._freshness_lag)
        self.status.state_loaded = True
        log.info(
            "state loaded: %d committed ids in %d ranges",
            len(self._state.committed),
            len(self._state.committed.ranges),
        )

    async def _load_state(self) -> None:
        """The last committed state from the state topic (read_committed), or a new one."""
        payload = await asyncio.to_thread(self._state_reader, self._settings, self._source_bytes)
        state = CheckpointState(source=self._source)
        if payload is not None:
            state = CheckpointState.decode(payload)
        horizon_ms = int(self._clock.time() * 1000) + MAX_END_AHEAD_MS
        if state.newest_end_ms > horizon_ms:
            # Written before the bounds on times existed, by a far-future bill: it would keep
            # the freshness lag at zero for good.
            log.warning("the state's newest end time is in the future; freshness starts anew")
            state.newest_end_ms = 0
        self._state = state

    # --- feeding ----------------------------------------------------------------------------

    async def _feed(
        self, queue: asyncio.Queue[FetchedBatch | None], backfill: Backfill | None
    ) -> None:
        async with asyncio.TaskGroup() as feeders:
            feeders.create_task(self._live_loop(queue))
            feeders.create_task(self._sweep_loop(queue))
            feeders.create_task(self._audit_loop(queue))
            if backfill is not None:
                feeders.create_task(self._backfill(queue, backfill))
        # Only on a clean stop: after an error the enclosing TaskGroup cancels the committer,
        # and waiting for room on a full queue would never end.
        await queue.put(None)

    async def _live_loop(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        while not self._stop.is_set():
            if self._brake.engaged:
                await self._stop.wait()  # only a restart releases the brake
                continue
            started = self._clock.monotonic()
            if not await self._retrying(self._live_cycle_into(queue), queue):
                # A failed syncflag=1 request may have been answered after all, its records
                # marked by the server and lost on the way: only a sweep finds them again.
                self._sweep_requested.set()
            metrics.POLL_CYCLE_DURATION.labels(self._source, "live").observe(
                self._clock.monotonic() - started
            )
            await self._pause(self._settings.poll.interval_seconds)

    async def _live_cycle_into(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        async for batch in self._poller.live_cycle():
            self.status.logged_in = True
            if batch.backlog is not None:
                metrics.API_BACKLOG.labels(self._source).set(batch.backlog)
            await queue.put(batch)
            del batch  # the committer's is the last reference (see Poller.live_cycle)
            if self._stop.is_set() or self._brake.engaged:
                return

    async def _sweep_loop(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        """Sweep when a live request has failed, and every `sweep_interval_seconds` anyway
        (records another reader of the account took are found that way, or by the audit)."""
        while not self._stop.is_set():
            await self._pause(self._settings.poll.sweep_interval_seconds, self._sweep_requested)
            if self._stop.is_set():
                return
            if self._sweep_requested.is_set():
                # A request the client gave up on may still be answered, and its records
                # marked, within another request timeout: sweep after that.
                await self._pause(self._settings.source.request_timeout_seconds)
                if self._stop.is_set():
                    return
                log.info("sweeping for records of a failed live request")
            self._sweep_requested.clear()

            async def sweep_into_queue() -> None:
                async for batch in self._sweep_batches():
                    await queue.put(batch)

            await self._retrying(sweep_into_queue(), queue)

    def _sweep_batches(self) -> AsyncIterator[FetchedBatch]:
        start, end = self._poller.sweep_window()
        return self._poller.listing(start, end, 2, "sweep")

    async def _audit_loop(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        while not self._stop.is_set():
            await self._pause(self._settings.poll.audit_interval_seconds)
            if self._stop.is_set():
                return
            await self._retrying(self._audit(queue), queue)

    async def _audit(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        """Compare the vendor's count of each closed hour with the committed count; list and
        publish the hours that fall short (the committer drops what is already committed)."""
        missing = 0
        for hour in self._poller.audit_hours():
            start, end = self._poller.local_hour(hour)
            vendor_count = await self._poller.count(start, end)
            hour_ms = int(hour.timestamp() * 1000)
            gap = vendor_count - self._state.hour_counts.get(hour_ms, 0)
            if gap > 0:
                missing += gap
                log.warning(
                    "audit: the vendor counts %d records dialled %s-%s, %d committed; repairing",
                    vendor_count,
                    start,
                    end,
                    vendor_count - gap,
                    extra={"event": "audit_gap", "hour": hour.isoformat(), "gap": gap},
                )
                async for batch in self._poller.listing(start, end, 3, "audit"):
                    await queue.put(batch)
                now_ms = int(self._clock.time() * 1000)
                await queue.put(
                    FetchedBatch("audit", [], now_ms, settles_hour=(hour_ms, vendor_count))
                )
            elif gap < 0:
                log.warning(
                    "audit: %d more records committed for %s than the vendor counts now "
                    "(records deleted by the vendor, or a changed filter)",
                    -gap,
                    start,
                )
        metrics.AUDIT_MISSING.labels(self._source).set(missing)
        metrics.AUDIT_LAST_RUN.labels(self._source).set(self._clock.time())

    async def _backfill(
        self, queue: asyncio.Queue[FetchedBatch | None], backfill: Backfill
    ) -> None:
        """List every slice of the window with syncflag=3, `concurrency` slices at a time, then
        stop the pipeline: the committer drains the queue before the run ends."""
        slots = asyncio.Semaphore(self._settings.poll.concurrency)

        async def one_slice(start: datetime, end: datetime) -> None:
            async with slots:
                while not await self._retrying(self._slice_into(start, end, queue), queue):
                    if self._stop.is_set():
                        return

        async with asyncio.TaskGroup() as slices:
            for start, end in backfill.slices():
                slices.create_task(one_slice(start, end))
        log.info("backfill %s to %s fetched; stopping once committed", backfill.start, backfill.end)
        self.request_stop()

    async def _slice_into(
        self, start: datetime, end: datetime, queue: asyncio.Queue[FetchedBatch | None]
    ) -> None:
        async for batch in self._poller.listing(start, end, 3, "backfill"):
            await queue.put(batch)

    async def _retrying(
        self, work: Coroutine[Any, Any, None], queue: asyncio.Queue[FetchedBatch | None]
    ) -> bool:
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
                self.status.failure = self._redact(str(cause))
            raise cause
        self._fetch_failures += 1
        delay = cause.retry_after or self._backoff.delay(self._fetch_failures)
        log.warning("fetching failed (%s); retrying in %.1fs", cause, delay)
        await self._pause(delay)

    async def _pause(self, seconds: float, *wake_on: asyncio.Event) -> None:
        """Until `seconds` have passed, a stop is requested, or one of `wake_on` is set."""
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._stop, *wake_on)]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _startup_sweep(self) -> None:
        """Commit the start-up sweep batch by batch, before any live round, until it completes.

        Recovered records are older than anything the live stream will bring, so sweeping
        first keeps them ahead of newer records of the same extension.
        """
        partial: asyncio.Queue[FetchedBatch | None] = asyncio.Queue()

        async def sweep() -> None:
            async for batch in self._sweep_batches():
                await self._commit_batch(batch)

        while not self._stop.is_set():
            completed = await self._retrying(sweep(), partial)
            while not partial.empty():
                batch = partial.get_nowait()
                if batch is not None:
                    await self._commit_batch(batch)
            if completed:
                return

    # --- committing -------------------------------------------------------------------------

    async def _commit_loop(self, queue: asyncio.Queue[FetchedBatch | None]) -> None:
        ended = False
        while not ended:
            batches, ended = await _next_batches(queue)
            if batches:
                await self._commit_batches(batches)
            # Free the rounds' bills now, while the next round is in flight; kept until the
            # next batch arrives, freeing them (about 4 ms for 8000 bills) would delay the
            # requests of the round after it.
            del batches

    async def _commit_batch(self, batch: FetchedBatch) -> CommitSummary:
        (summary,) = await self._commit_batches([batch])
        return summary

    async def _commit_batches(self, batches: list[FetchedBatch]) -> list[CommitSummary]:
        """Convert `batches` in order and commit them in one transaction, until that succeeds.

        An unexpected error (not one of ours: a bug) aborts the attempt: the state is read back
        from the state topic, since converting may have advanced it for a transaction that
        never committed, and the same batches are tried again after a backoff. The brake
        counts such failures in a row. A stop requested meanwhile gives the batches up: their
        records were never committed, and the next start's sweep finds them.
        """
        failures = 0
        while True:
            try:
                return await self._convert_and_commit(batches)
            except CdrConnectorError:
                raise
            except Exception as exc:  # the process must outlive a bug
                failures += 1
                await self._after_commit_failure(exc, failures)
                if self._stop.is_set():
                    log.error("stopping with %d uncommitted batch(es)", len(batches))
                    return []

    async def _after_commit_failure(self, error: Exception, failures: int) -> None:
        metrics.COMMIT_FAILURES.labels(self._source).inc()
        delay = self._backoff.delay(failures)
        log.error(
            "a transaction failed unexpectedly (%s: %s); it is aborted, the state read back "
            "and the batch tried again in %.1f s",
            type(error).__name__,
            error,
            delay,
            exc_info=error,
        )
        if self._brake.commit_failed(error):
            self._on_brake()
        try:
            await self._load_state()
        except Exception as exc:  # tried again with the batch
            log.error("reading the state back failed too (%s)", exc)
        await self._pause(delay)

    def _on_brake(self) -> None:
        kind, reason = self._brake.kind, self._brake.reason
        assert kind is not None and reason is not None
        self.status.brake = reason
        metrics.BRAKE_ENGAGED.labels(self._source, kind).set(1)
        log.error("%s", reason, extra={"event": "brake", "brake": kind})

    async def _convert_and_commit(self, batches: list[FetchedBatch]) -> list[CommitSummary]:
        """Each batch's messages end with the state after it, so the last one is the state
        after all."""
        started = self._clock.monotonic()
        summaries: list[CommitSummary] = []
        messages: list[OutgoingMessage] = []
        for batch in batches:
            summary, batch_messages = await self._convert(batch)
            summaries.append(summary)
            messages += batch_messages
        if messages:
            await self._commit_until_done(messages)
        ended = self._clock.monotonic()
        for batch, summary in zip(batches, summaries, strict=True):
            self._after_commit(batch, summary)
            if self._brake.observe(summary.produced, summary.dead_lettered):
                self._on_brake()
            if batch.mode != "live":
                metrics.POLL_CYCLE_DURATION.labels(self._source, batch.mode).observe(
                    ended - started
                )
        return summaries

    async def _convert(self, batch: FetchedBatch) -> tuple[CommitSummary, list[OutgoingMessage]]:
        context = RecordContext(
            source=self._source,
            zone=self._settings.source.zone,
            fetched_at_ms=batch.fetched_at_ms,
            fetch_mode=batch.mode,
        )
        writer = BatchWriter(
            BillWriter(self._encoder, context, self._settings.kafka.key_fallback_field),
            self._state.committed,
            self._settings.kafka.max_value_bytes,
        )
        bills = batch.bills
        for start in range(0, len(bills), _BILLS_BETWEEN_YIELDS):
            # Let the next round's requests go out while a large batch converts, the first
            # time before any bill: they were created just before this batch arrived.
            # Nothing else touches the state meanwhile (there is one committer).
            await asyncio.sleep(0)
            writer.write(bills, start, min(start + _BILLS_BETWEEN_YIELDS, len(bills)))
        summary = CommitSummary(produced=len(writer.records), deduplicated=writer.deduplicated)
        messages = writer.messages(self._topic, self._record_headers, summary.tallies)
        messages += self._dead_letters(writer.failures, batch, summary)
        if messages or batch.settles_hour is not None:
            self._advance_state(writer.new_ids, summary, batch.settles_hour)
            messages.append(
                OutgoingMessage(
                    self._settings.kafka.state_topic, self._source_bytes, self._state.encode(), []
                )
            )
        return summary, messages

    def _dead_letters(
        self,
        failures: list[tuple[Any, int | None, RecordError]],
        batch: FetchedBatch,
        summary: CommitSummary,
    ) -> list[OutgoingMessage]:
        """A dead letter for each bill that cannot be a record, but none for a bill without a
        usable id that is already in the dead-letter topic: sweeps and audits list it again,
        and only its content tells it apart (`checkpoint.bill_fingerprint`)."""
        letters: list[OutgoingMessage] = []
        known = self._state.dead_letter_fingerprints
        for bill, record_id, error in failures:
            if record_id is None:
                fingerprint = bill_fingerprint(bill)
                if fingerprint in known or fingerprint in summary.dead_letter_fingerprints:
                    summary.deduplicated += 1
                    continue
                summary.dead_letter_fingerprints.append(fingerprint)
            letters.append(self._dead_letter(bill, record_id, error, batch))
            summary.dead_letter_stages.append(error.stage)
            dead_start = dial_time_ms(bill, self._settings.source.zone, batch.fetched_at_ms)
            if dead_start is not None:
                summary.dead_letter_start_ms.append(dead_start)
        summary.dead_lettered = len(letters)
        return letters

    def _dead_letter(
        self, bill: Any, record_id: int | None, error: RecordError, batch: FetchedBatch
    ) -> OutgoingMessage:
        headers: list[tuple[str, str | bytes | None]] = [
            (
                "cdr.error",
                self._redact.cut(str(error), _MAX_HEADER_TEXT).encode(errors="backslashreplace"),
            ),
            ("cdr.stage", error.stage.encode()),
            ("cdr.source", self._source.encode()),
            ("cdr.fetch_mode", batch.mode.encode()),
            ("cdr.fetched_at", str(batch.fetched_at_ms).encode()),
        ]
        if error.field:
            headers.append(("cdr.field", error.field.encode()))
        if record_id is not None:
            headers.append(("cdr.id", str(record_id).encode()))
        value = raw_bytes(bill)
        limit = self._settings.kafka.max_value_bytes
        if len(value) > limit:
            # Too large for the dead-letter topic as well: its beginning, still JSON (quoting
            # at most doubles it); the whole bill stays with the vendor, found again by its id
            # and dial time.
            headers.append(("cdr.truncated", str(len(value)).encode()))
            head = value[: limit // 4].decode(errors="ignore")
            value = orjson.dumps({"truncated_bill": head, "bytes": len(value)})
        return OutgoingMessage(
            topic=self._settings.kafka.dead_letter_topic,
            key=str(record_id).encode() if record_id is not None else None,
            value=value,
            headers=headers,
            timestamp_ms=batch.fetched_at_ms,
        )

    def _advance_state(
        self,
        new_ids: list[int],
        summary: CommitSummary,
        settles_hour: tuple[int, int] | None = None,
    ) -> None:
        state = self._state
        now_ms = int(self._clock.time() * 1000)
        state.committed.add_many(new_ids, now_ms)
        state.add_dead_letter_fingerprints(summary.dead_letter_fingerprints, now_ms)
        state.add_hour_counts(summary.tallies.start_hours)
        state.count_hours(summary.dead_letter_start_ms)
        state.forget_before(now_ms - int(self._settings.poll.lookback_seconds * 1000))
        state.committed_total += summary.produced
        state.dead_lettered_total += summary.dead_lettered
        state.newest_end_ms = max(state.newest_end_ms, summary.tallies.newest_end_ms)
        if settles_hour is not None:
            # A dead letter whose dial time cannot be read (an unreadable bill, a garbled
            # start) is counted in no hour; the vendor counts it in its own. The audit listed
            # the whole hour and all of it is committed now: its count is the vendor's.
            hour, count = settles_hour
            state.hour_counts[hour] = max(state.hour_counts.get(hour, 0), count)

    async def _commit_until_done(self, messages: list[OutgoingMessage]) -> None:
        attempt = 0
        while True:
            try:
                await self._sink.commit(messages)
                return
            except RetryableError as exc:
                attempt += 1
                delay = exc.retry_after or self._backoff.delay(attempt)
                log.warning(
                    "transaction of %d messages failed (%s); producing it again in %.1fs",
                    len(messages),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except PermanentError as exc:
                self.status.failure = self._redact(str(exc))
                raise

    def _after_commit(self, batch: FetchedBatch, summary: CommitSummary) -> None:
        source = self._source
        now = self._clock.time()
        metrics.RECORDS_FETCHED.labels(source, batch.mode).inc(len(batch.bills))
        metrics.RECORDS_DEDUPLICATED.labels(source).inc(summary.deduplicated)
        metrics.LAST_COMMIT.labels(source).set(now)
        if summary.produced == 0 and summary.dead_lettered == 0:
            return
        metrics.RECORDS_PRODUCED.labels(source, batch.mode).inc(summary.produced)
        for stage in summary.dead_letter_stages:
            metrics.RECORDS_DEAD_LETTERED.labels(source, metrics.dead_letter_reason(stage)).inc()
        if batch.mode == "sweep":
            metrics.SWEEP_RECOVERED.labels(source).inc(summary.produced)
        elif batch.mode == "audit":
            metrics.AUDIT_REPAIRED.labels(source).inc(summary.produced)
        metrics.UNKNOWN_FIELDS.labels(source).inc(summary.tallies.unknown_fields)
        self._observe_records(summary.tallies, now)
        self._publish_state_metrics()
        log.info(
            "committed %d records, %d dead letters, %d duplicates dropped (%s); %d in total",
            summary.produced,
            summary.dead_lettered,
            summary.deduplicated,
            batch.mode,
            self._state.committed_total,
            extra={
                "event": "commit",
                "mode": batch.mode,
                "produced": summary.produced,
                "dead_lettered": summary.dead_lettered,
                "deduplicated": summary.deduplicated,
            },
        )

    def _observe_records(self, tallies: RecordTallies, now: float) -> None:
        """Per-record figures, added up per label set first (`RecordTallies`): a labelled
        child lookup costs more than the addition it feeds."""
        source = self._source
        metrics.END_TO_END_LATENCY.labels(source).observe_many(tallies.latencies(now))
        for (direction, callmethod, answered), count in tallies.calls.items():
            metrics.CALLS.labels(
                source,
                metrics.direction_label(direction),
                metrics.callmethod_label(callmethod),
                "true" if answered else "false",
            ).inc(count)
        for direction, seconds in tallies.billed_seconds.items():
            metrics.BILLED_SECONDS.labels(source, metrics.direction_label(direction)).inc(seconds)

    def _publish_state_metrics(self) -> None:
        state = self._state
        metrics.STATE_IDS.labels(self._source).set(len(state.committed))
        metrics.STATE_RANGES.labels(self._source).set(len(state.committed.ranges))
        if state.newest_end_ms:
            metrics.NEWEST_COMMITTED_END.labels(self._source).set(state.newest_end_ms / 1000)

    def _freshness_lag(self) -> float:
        newest = self._state.newest_end_ms
        return max(0.0, self._clock.time() - newest / 1000) if newest else 0.0
