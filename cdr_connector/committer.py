"""Commits fetched batches to Kafka exactly once: the only writer of records and of the state.

Duplicate removal happens here, not where bills are fetched, because only here is the set of
committed ids certain: a sweep and the live stream may fetch the same record, and whichever
batch commits second drops it.

No bill can stop the stream: whatever a bill holds, converting it either makes a record or a
dead letter (`bill`, `batch_writer`, `dead_letters`). A transaction that fails with an
unexpected error (a bug, not Kafka) is aborted, the state is read back from the state topic (it
may have been advanced in memory for the failed transaction) and the same batches are tried
again with backoff; the brake (`brake`) stops live reads after a few such failures in a row, or
when most recent bills are dead letters, and /readyz says why. The process stays up either way:
a crash would only read the same bills again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cdr_connector.avro import RecordEncoder
from cdr_connector.backoff import Backoff
from cdr_connector.batch_writer import BatchWriter, RecordTallies
from cdr_connector.bill import MAX_END_AHEAD_MS
from cdr_connector.bill_writer import BillWriter
from cdr_connector.brake import Brake
from cdr_connector.checkpoint import CheckpointState
from cdr_connector.clock import Clock, sleep_unless
from cdr_connector.config import Settings
from cdr_connector.dead_letters import DeadLetters
from cdr_connector.errors import CdrConnectorError, PermanentError, RetryableError
from cdr_connector.kafka_sink import OutgoingMessage, Sink
from cdr_connector.recorder import Recorder
from cdr_connector.records import RecordContext
from cdr_connector.redaction import Redactor
from cdr_connector.source import FetchedBatch
from cdr_connector.status import PipelineStatus

log = logging.getLogger(__name__)

# About 2 ms of converting between two chances for the event loop to run. Sending the next
# round's requests and reading its first answers take the loop several turns, each of which
# waits for such a stretch: with 1000 bills (7 ms) a round's first answer arrived 20-30 ms
# after the API's latency instead of 15 (bench/README.md, finding 5).
_BILLS_BETWEEN_YIELDS = 250

StateReader = Callable[[Settings, bytes], bytes | None]
"""Reads the last committed state of a source (by its key) from the state topic."""


@dataclass
class CommitSummary:
    """What committing one batch did: the figures the metrics and the log report."""

    produced: int = 0
    dead_lettered: int = 0
    deduplicated: int = 0
    tallies: RecordTallies = field(default_factory=RecordTallies)
    dead_letter_start_ms: list[int] = field(default_factory=list)
    dead_letter_stages: list[str] = field(default_factory=list)
    dead_letter_fingerprints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CommitterParts:
    """What a committer works with besides the settings."""

    sink: Sink
    encoder: RecordEncoder
    clock: Clock
    recorder: Recorder
    state_reader: StateReader
    redactor: Redactor = field(default_factory=Redactor)


class Committer:
    """Turns batches into one transaction each time `commit` is called, and keeps the state."""

    def __init__(
        self,
        settings: Settings,
        parts: CommitterParts,
        *,
        brake: Brake,
        status: PipelineStatus,
        stop: asyncio.Event,
    ) -> None:
        """`brake` and `status` are shared with the scheduler, which stops live reads when the
        brake engages; `stop` set gives up batches that keep failing (see `commit`)."""
        self._settings = settings
        self._parts = parts
        self._source = settings.source.name
        self._source_key = self._source.encode()
        self._record_headers = (
            ("cdr.source", self._source_key),
            ("cdr.schema", parts.encoder.schema_tag.encode()),
        )
        self._dead_letters = DeadLetters(settings, parts.redactor)
        self._backoff = Backoff(
            settings.poll.retry_initial_seconds, settings.poll.retry_max_seconds, random.Random()
        )
        self._brake = brake
        self._status = status
        self._stop = stop
        self._state = CheckpointState(source=self._source)
        self._state_known = True
        """False after a failed transaction, until the state is read back."""

    @property
    def state(self) -> CheckpointState:
        """The state as of the last commit: committed ids, hour counts, totals."""
        return self._state

    async def load_state(self) -> None:
        """The last committed state from the state topic (read_committed), or a new one."""
        reader = self._parts.state_reader
        payload = await asyncio.to_thread(reader, self._settings, self._source_key)
        state = CheckpointState(source=self._source)
        if payload is not None:
            state = CheckpointState.decode(payload)
        horizon_ms = int(self._parts.clock.time() * 1000) + MAX_END_AHEAD_MS
        if state.newest_end_ms > horizon_ms:
            # Written before the bounds on times existed, by a far-future bill: it would keep
            # the freshness lag at zero for good.
            log.warning("the state's newest end time is in the future; freshness starts anew")
            state.newest_end_ms = 0
        self._state = state
        self._state_known = True
        self._parts.recorder.state_changed(state)

    def freshness_lag(self) -> float:
        """Seconds since the end of the newest committed call (0 before the first)."""
        newest = self._state.newest_end_ms
        return max(0.0, self._parts.clock.time() - newest / 1000) if newest else 0.0

    async def commit(self, batches: list[FetchedBatch]) -> list[CommitSummary]:
        """Commit `batches`, in order, in one Kafka transaction, and return what each did.

        The steps, for each batch in turn:
          1. drop bills whose id is already committed or repeated in the batch;
          2. convert each bill into an Avro record; one that fails becomes a dead letter
             (one without a usable id only once, by its content's fingerprint);
          3. sort the records by id, so records of one extension keep their id order;
          4. advance the state with the batch's ids, hour counts and totals;
        then, for all of them at once:
          5. produce the records, the dead letters and the state after each batch (the last
             message is the state after all), and commit the transaction; on a retryable
             Kafka failure, produce the same messages again in a new transaction until it
             commits (the state they carry is already the one in memory: nothing counts twice);
          6. report each batch (metrics, log line) and let the brake observe it.

        An unexpected error (not one of ours: a bug) aborts the attempt: the state is read back
        from the state topic, since step 4 may have advanced it for a transaction that never
        committed, and the same batches are tried again after a backoff. The brake counts such
        failures in a row. A stop requested meanwhile gives the batches up (an empty list):
        their records were never committed, and the next start's sweep finds them. A permanent
        Kafka error (a fenced producer) is raised, and /readyz says why.
        """
        failures = 0
        while True:
            reading_back = not self._state_known
            try:
                if reading_back:
                    await self.load_state()
                return await self._attempt(batches)
            except Exception as exc:  # the process must outlive a bug
                if isinstance(exc, CdrConnectorError) and self._state_known:
                    raise
                # Until the state is read back, the one in memory may hold the ids of the
                # failed transaction: a retry against it would drop them as duplicates.
                self._state_known = False
                failures += 1
                await self._after_failure(exc, failures, reading_back)
                if self._stop.is_set():
                    log.error("stopping with %d uncommitted batch(es)", len(batches))
                    return []

    async def _attempt(self, batches: list[FetchedBatch]) -> list[CommitSummary]:
        clock = self._parts.clock
        started = clock.monotonic()
        summaries: list[CommitSummary] = []
        messages: list[OutgoingMessage] = []
        for batch in batches:
            summary, batch_messages = await self._convert(batch)
            summaries.append(summary)
            messages += batch_messages
        if messages:
            await self._commit_until_done(messages)
        took = clock.monotonic() - started
        for batch, summary in zip(batches, summaries, strict=True):
            self._report(batch, summary)
            if self._brake.observe(summary.produced, summary.dead_lettered):
                self._on_brake()
            if batch.mode != "live":  # a live cycle is timed where it is fetched
                self._parts.recorder.fetch_cycle(batch.mode, took)
        return summaries

    async def _convert(self, batch: FetchedBatch) -> tuple[CommitSummary, list[OutgoingMessage]]:
        """Steps 1 to 4 for one batch: its messages, the state after it last."""
        settings = self._settings
        context = RecordContext(
            source=self._source,
            zone=settings.source.zone,
            fetched_at_ms=batch.fetched_at_ms,
            fetch_mode=batch.mode,
        )
        writer = BatchWriter(
            BillWriter(self._parts.encoder, context, settings.kafka.key_fallback_field),
            self._state.committed,
            settings.kafka.max_value_bytes,
        )
        bills = batch.bills
        for start in range(0, len(bills), _BILLS_BETWEEN_YIELDS):
            # Let the next round's requests go out while a large batch converts, the first
            # time before any bill: they were created just before this batch arrived.
            # Nothing else touches the state meanwhile (there is one committer).
            await asyncio.sleep(0)
            writer.write(bills, start, min(start + _BILLS_BETWEEN_YIELDS, len(bills)))
        summary = CommitSummary(produced=len(writer.records), deduplicated=writer.deduplicated)
        messages = writer.messages(settings.kafka.topic, self._record_headers, summary.tallies)
        letters = self._dead_letters.build(
            writer.failures, batch, self._state.dead_letter_fingerprints
        )
        messages += letters.messages
        summary.dead_lettered = len(letters.messages)
        summary.deduplicated += letters.repeated
        summary.dead_letter_stages = letters.stages
        summary.dead_letter_start_ms = letters.start_ms
        summary.dead_letter_fingerprints = letters.fingerprints
        if messages or batch.settles_hour is not None:
            self._advance_state(writer.new_ids, summary, batch.settles_hour)
            state = self._state.encode()
            messages.append(
                OutgoingMessage(settings.kafka.state_topic, self._source_key, state, [])
            )
        return summary, messages

    def _advance_state(
        self, new_ids: list[int], summary: CommitSummary, settles_hour: tuple[int, int] | None
    ) -> None:
        state = self._state
        now_ms = int(self._parts.clock.time() * 1000)
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
                await self._parts.sink.commit(messages)
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
                await self._parts.clock.sleep(delay)
            except PermanentError as exc:
                self._status.failure = self._parts.redactor(str(exc))
                raise

    async def _after_failure(self, error: Exception, failures: int, reading_back: bool) -> None:
        self._parts.recorder.commit_failed()
        delay = self._backoff.delay(failures)
        if reading_back:
            log.error(
                "reading the state back failed too (%s); the batch waits for it, trying again "
                "in %.1f s",
                error,
                delay,
            )
        else:
            log.error(
                "a transaction failed unexpectedly (%s: %s); it is aborted, the state read "
                "back and the batch tried again in %.1f s",
                type(error).__name__,
                error,
                delay,
                exc_info=error,
            )
        if self._brake.commit_failed(error):
            self._on_brake()
        await sleep_unless(self._parts.clock, delay, self._stop)

    def _on_brake(self) -> None:
        kind, reason = self._brake.kind, self._brake.reason
        assert kind is not None and reason is not None
        self._status.brake = reason
        self._parts.recorder.brake_engaged(kind)
        log.error("%s", reason, extra={"event": "brake", "brake": kind})

    def _report(self, batch: FetchedBatch, summary: CommitSummary) -> None:
        self._parts.recorder.committed(
            batch.mode, len(batch.bills), summary, self._parts.clock.time()
        )
        if summary.produced == 0 and summary.dead_lettered == 0:
            return
        self._parts.recorder.state_changed(self._state)
        _log_commit(batch, summary, self._state.committed_total)


def _log_commit(batch: FetchedBatch, summary: CommitSummary, total: int) -> None:
    log.info(
        "committed %d records, %d dead letters, %d duplicates dropped (%s); %d in total",
        summary.produced,
        summary.dead_lettered,
        summary.deduplicated,
        batch.mode,
        total,
        extra={
            "event": "commit",
            "mode": batch.mode,
            "produced": summary.produced,
            "dead_lettered": summary.dead_lettered,
            "deduplicated": summary.deduplicated,
        },
    )
