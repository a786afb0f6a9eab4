"""The transactional producer, driven from asyncio without an await per message.

confluent-kafka's calls block (`init_transactions`, `commit_transaction`, `flush`) and its
delivery callbacks fire only inside `poll`/`flush`. All of them run on one dedicated thread that
owns the producer: the event loop hands it a whole batch and awaits one future, so the loop keeps
fetching pages while a transaction commits, and no two threads ever touch the producer at once.

A batch is one transaction (`commit`):
  1. `begin_transaction()`;
  2. produce every message; a full local queue (`BufferError`) is drained with `poll` and the
     message produced again, so back-pressure costs time, never a message;
  3. `commit_transaction()`, which flushes, and fails if any message of the batch failed.
Errors are converted where they leave this module: a retriable commit error is retried on the
same transaction, an error that requires an abort aborts and raises `TransactionAbortRequiredError`
(the caller produces the batch again), and a fatal error (fenced by a newer instance) raises
`ProducerFencedError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as LibKafkaError

from cdr_connector import metrics
from cdr_connector.config import Settings
from cdr_connector.errors import (
    KafkaFatalError,
    KafkaTransientError,
    ProducerFencedError,
    TopicMissingError,
    TransactionAbortRequiredError,
)
from cdr_connector.kafka_clients import new_consumer, producer_config
from cdr_connector.recorder import Recorder
from cdr_connector.topics import ensure_topics

# ensure_topics lives in `topics`; it stays importable from here for the wiring that uses it.
__all__ = ["OutgoingMessage", "Sink", "TransactionalSink", "ensure_topics", "read_latest_state"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Aborting and flushing at close happen inside the shutdown bound, so they get little time.
_CLOSE_TIMEOUT_SECONDS = 5.0
# librdkafka's RD_KAFKA_PARTITION_UA: the partitioner picks the partition, by key.
_ANY_PARTITION = -1
# Poll interval while the local queue is full: short enough to refill it quickly, long enough
# not to spin.
_QUEUE_FULL_POLL_SECONDS = 0.05
_FENCED_CODES = frozenset(
    {LibKafkaError._FENCED, LibKafkaError.PRODUCER_FENCED, LibKafkaError.INVALID_PRODUCER_EPOCH}
)


class OutgoingMessage(NamedTuple):
    """One message of a transaction. A tuple: the connector builds one per record."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    timestamp_ms: int = 0


class Sink(Protocol):
    """Where batches go. `commit` is all or nothing: when it returns, every message of the
    batch is committed; when it raises, none is visible to read_committed consumers, and the
    same batch may be committed again. Raises RetryableError (try the batch again) or
    PermanentError (stop)."""

    async def start(self) -> None: ...

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None: ...

    async def close(self) -> None: ...


class TransactionalSink:
    """Owns the producer and its thread; one transaction per `commit` call."""

    def __init__(
        self,
        settings: Settings,
        *,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        recorder: Recorder | None = None,
    ) -> None:
        self._settings = settings
        self._source = settings.source.name
        self._recorder: Recorder = recorder or metrics.PrometheusRecorder(self._source)
        self._producer_factory = producer_factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-producer")
        self._producer: Producer | None = None
        self._timeout = settings.kafka.operation_timeout_seconds
        self._delivery_errors: list[LibKafkaError] = []
        self._transaction_open = False

    async def start(self) -> None:
        """Create the producer and fence any older instance with the same transactional.id."""
        await self._run(self._start_blocking)

    async def commit(self, messages: Sequence[OutgoingMessage]) -> None:
        """Produce `messages` in one transaction and commit it; see the module docstring."""
        await self._run(lambda: self._commit_blocking(messages))

    async def close(self) -> None:
        """Abort whatever is open, flush within the timeout, and stop the thread."""
        if self._producer is not None:
            await self._run(self._close_blocking)
        self._executor.shutdown(wait=True)

    def queue_depth(self) -> int:
        return len(self._producer) if self._producer is not None else 0

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _start_blocking(self) -> None:
        config = producer_config(self._settings)
        # One callback for the producer rather than one per produce() call, which costs a
        # reference per message; with delivery.report.only.error it only sees failures.
        config["on_delivery"] = self._on_delivery
        self._producer = self._producer_factory(config)
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise _convert(exc, "initialising transactions") from exc

    def _commit_blocking(self, messages: Sequence[OutgoingMessage]) -> None:
        producer = self._require_producer()
        self._delivery_errors.clear()
        try:
            if self._transaction_open:  # a failed attempt left it open: abort it first
                self._abort(producer)
            producer.begin_transaction()
            self._transaction_open = True
            for message in messages:
                self._produce(producer, message)
            self._commit_with_retries(producer)
            self._transaction_open = False
        except KafkaException as exc:
            error = _convert(exc, "committing a transaction")
            if not isinstance(error, KafkaFatalError | ProducerFencedError):
                self._abort_quietly(producer)
            raise error from exc
        finally:
            if self._delivery_errors:
                self._recorder.delivery_errors([e.name() for e in self._delivery_errors])
        self._recorder.transaction("committed")

    def _produce(self, producer: Producer, message: OutgoingMessage) -> None:
        while True:
            try:
                # All positional, in produce()'s own order: parsing keyword arguments costs
                # the binding about 0.5 µs a message (bench/README.md, finding 14). None, None:
                # no callback of this message's own, so the configured on_delivery applies.
                producer.produce(
                    message.topic,
                    message.value,
                    message.key,
                    _ANY_PARTITION,
                    None,
                    None,
                    message.timestamp_ms,
                    message.headers,
                )
                return
            except BufferError:
                producer.poll(_QUEUE_FULL_POLL_SECONDS)

    def _commit_with_retries(self, producer: Producer) -> None:
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                producer.commit_transaction(self._timeout)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or attempt == attempts:
                    raise
                log.warning("commit_transaction failed (%s); retrying", error.str())

    def _abort(self, producer: Producer) -> None:
        try:
            producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            raise _convert(exc, "aborting a transaction") from exc
        self._transaction_open = False
        self._recorder.transaction("aborted")

    def _abort_quietly(self, producer: Producer) -> None:
        """Abort after a failure; if even that fails, the next commit attempt aborts first."""
        try:
            self._abort(producer)
        except (KafkaTransientError, KafkaFatalError, ProducerFencedError) as exc:
            log.warning("aborting the failed transaction did not succeed yet: %s", exc)

    def _close_blocking(self) -> None:
        producer = self._require_producer()
        self._timeout = min(self._timeout, _CLOSE_TIMEOUT_SECONDS)
        if self._transaction_open:
            self._abort_quietly(producer)
        remaining = producer.flush(self._timeout)
        if remaining:
            log.error("%d messages were still queued at close; none was committed", remaining)
        self._producer = None

    def _on_delivery(self, error: LibKafkaError | None, _message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(error)

    def _require_producer(self) -> Producer:
        if self._producer is None:
            raise KafkaFatalError("the Kafka producer is not started")
        return self._producer


def _convert(exc: KafkaException, doing: str) -> Exception:
    error: LibKafkaError = exc.args[0]
    detail = f"Kafka failed while {doing}: {error.name()}: {error.str()}"
    if error.code() in _FENCED_CODES or (error.fatal() and "fenced" in error.str().lower()):
        return ProducerFencedError(
            f"{detail}. Another instance with the same transactional.id took over; this one "
            "stops. Run one instance per source (kafka.transactional_id / source.name)."
        )
    if error.fatal():
        return KafkaFatalError(detail)
    if error.txn_requires_abort():
        return TransactionAbortRequiredError(detail)
    return KafkaTransientError(detail)


# --- state ------------------------------------------------------------------------------------


def read_latest_state(settings: Settings, key: bytes) -> bytes | None:
    """Read the state topic to its end with read_committed and return the newest value of `key`.

    Called only after `init_transactions`, which aborted any transaction an older instance left
    open, so the end of the topic is the last committed state. Blocking: call it from a thread.
    """
    consumer = new_consumer(settings, "state")
    topic = settings.kafka.state_topic
    try:
        metadata = consumer.list_topics(topic, timeout=settings.kafka.operation_timeout_seconds)
        partitions = metadata.topics[topic].partitions
        if not partitions:
            raise TopicMissingError(f"state topic {topic} has no partitions or does not exist")
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        timeout = settings.kafka.operation_timeout_seconds
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout, cached=False)[1]
            for p in partitions
        }
        return _consume_to_end(consumer, key, ends, settings)
    except KafkaException as exc:
        raise KafkaTransientError(f"cannot read state topic {topic}: {exc.args[0].str()}") from exc
    finally:
        consumer.close()


def _consume_to_end(
    consumer: Consumer, key: bytes, ends: dict[int, int], settings: Settings
) -> bytes | None:
    """The newest value of `key` up to `ends`, each partition's end when the reading began.

    Not up to the end as it moves: other sources sharing the topic keep committing states, and
    with many of them an end that moves on is reached late or never. Nothing of this source's
    is written after `ends` were taken: its own producer, the only writer of its key, has just
    been initialised and writes nothing before the state is read.
    """
    latest: bytes | None = None
    topic = settings.kafka.state_topic
    at_end: set[int] = {p for p, end in ends.items() if end == 0}
    deadline_polls = int(settings.kafka.operation_timeout_seconds / 0.5) + 1
    idle = 0
    while len(at_end) < len(ends):
        for position in consumer.position([TopicPartition(topic, p) for p in ends]):
            # past the end, transaction markers included, even when no message came
            if position.offset >= ends[position.partition]:
                at_end.add(position.partition)
        if len(at_end) == len(ends):
            break
        message = consumer.poll(0.5)
        if message is None:
            idle += 1
            if idle > deadline_polls:
                raise KafkaTransientError(
                    f"reading state topic {settings.kafka.state_topic} did not reach its end "
                    f"within {settings.kafka.operation_timeout_seconds}s"
                )
            continue
        idle = 0
        error = message.error()
        if error is not None:
            if error.code() == LibKafkaError._PARTITION_EOF:
                at_end.add(message.partition() or 0)
                continue
            raise KafkaException(error)
        if message.key() == key:
            latest = message.value()
    return latest
