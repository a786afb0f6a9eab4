"""The transactional sink and the state reader against stand-ins that keep librdkafka's calling
convention: the order of a transaction's calls, back-pressure, commit retries, aborts, what the
recorder hears, close, the conversion of librdkafka's errors, and reading the state topic to
the end offsets taken at start. The real clients are tested against a broker in
tests/integration/."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from cdr_connector import kafka_sink, metrics
from cdr_connector.errors import (
    KafkaFatalError,
    KafkaTransientError,
    ProducerFencedError,
    TopicMissingError,
    TransactionAbortRequiredError,
)
from cdr_connector.kafka_sink import OutgoingMessage, TransactionalSink
from tests.fakes import FakeRecorder, make_settings

TIMEOUT = 12.5  # the operation timeout of most tests: above the close cap, and easy to spot
LOGGER = "cdr_connector.kafka_sink"
STATE_TOPIC = "cdr-connector.state"
FIRST = OutgoingMessage("cdr.calls", b"8001", b"one", [("source", b"unit")], 1_700_000_000_001)
SECOND = OutgoingMessage(STATE_TOPIC, None, b"two", [])  # no timestamp: librdkafka stamps it
FENCED_ADVICE = (
    ". Another instance with the same transactional.id took over; this one stops. "
    "Run one instance per source (kafka.transactional_id / source.name)."
)


def failure(
    code: int = KafkaError._TRANSPORT,
    reason: str = "reason",
    *,
    fatal: bool = False,
    retriable: bool = False,
    txn_requires_abort: bool = False,
) -> KafkaException:
    error = KafkaError(
        code, reason, fatal=fatal, retriable=retriable, txn_requires_abort=txn_requires_abort
    )
    return KafkaException(error)


def produced(message: OutgoingMessage) -> tuple[Any, ...]:
    """The call `produce` must receive for `message`: every argument positional."""
    return ("produce", message.topic, message.value, message.key, -1, None, None,
            message.timestamp_ms, message.headers)  # fmt: skip


BEGIN = ("begin_transaction",)
COMMIT = ("commit_transaction", TIMEOUT)
ABORT = ("abort_transaction", TIMEOUT)


class FakeProducer:
    """Records every call in order; `fail(name, ...)` makes the next calls of `name` raise, in
    turn; `deliveries` are reported to the configured on_delivery at the next commit."""

    def __init__(self, config: dict[str, Any], script: dict[str, list[BaseException]]) -> None:
        self.config = config
        self.calls: list[tuple[Any, ...]] = []
        self.accepted: list[tuple[Any, ...]] = []
        self.failures = {name: list(errors) for name, errors in script.items()}
        self.deliveries: list[KafkaError | None] = []
        self.queued = 0
        self.remaining = 0
        self.threads: set[threading.Thread] = set()
        self.active = 0
        self.most_active = 0
        self.begin_seconds = 0.0

    def fail(self, name: str, *errors: BaseException) -> None:
        self.failures.setdefault(name, []).extend(errors)

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        self.threads.add(threading.current_thread())
        pending = self.failures.get(call[0])
        if pending:
            raise pending.pop(0)

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions", timeout)

    def begin_transaction(self) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        time.sleep(self.begin_seconds)  # a slow call: another thread would overlap it
        self.active -= 1
        self._call("begin_transaction")

    def produce(self, *args: Any) -> None:
        self._call("produce", *args)
        self.accepted.append(("produce", *args))

    def poll(self, timeout: float) -> int:
        self._call("poll", timeout)
        return 0

    def commit_transaction(self, timeout: float) -> None:
        for error in self.deliveries:
            self.config["on_delivery"](error, None)
        self.deliveries = []
        self._call("commit_transaction", timeout)

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction", timeout)

    def flush(self, timeout: float) -> int:
        self._call("flush", timeout)
        return self.remaining

    def __len__(self) -> int:
        return self.queued


class Harness:
    """A sink on a FakeProducer and a FakeRecorder; `script` is handed to the producer made."""

    def __init__(self, timeout: float) -> None:
        self.recorder = FakeRecorder()
        self.producers: list[FakeProducer] = []
        self.script: dict[str, list[BaseException]] = {}
        settings = make_settings(kafka={"operation_timeout_seconds": timeout})
        self.sink = TransactionalSink(
            settings,
            producer_factory=self._factory,  # type: ignore[arg-type]
            recorder=self.recorder,  # type: ignore[arg-type]
        )

    def _factory(self, config: dict[str, Any]) -> FakeProducer:
        self.producers.append(FakeProducer(config, self.script))
        return self.producers[-1]

    @property
    def producer(self) -> FakeProducer:
        return self.producers[-1]

    async def started(self) -> FakeProducer:
        await self.sink.start()
        self.producer.calls.clear()
        return self.producer

    def transactions(self) -> list[Any]:
        return self.recorder.of("transaction")


@pytest.fixture
async def harness() -> AsyncIterator[Callable[..., Harness]]:
    """Makes harnesses, and closes their sinks (and threads) at the end of the test."""
    made: list[Harness] = []

    def make(timeout: float = TIMEOUT) -> Harness:
        made.append(Harness(timeout))
        return made[-1]

    yield make
    for each in made:
        await each.sink.close()


def messages_logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --- start ------------------------------------------------------------------------------------


async def test_start_gives_the_factory_a_config_with_on_delivery_and_inits_transactions(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    await h.sink.start()
    assert len(h.producers) == 1
    config = h.producer.config
    assert config["on_delivery"] == h.sink._on_delivery
    assert config["transactional.id"] == "cdr-connector-unit"
    assert h.producer.calls == [("init_transactions", TIMEOUT)]


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (failure(KafkaError._FENCED), ProducerFencedError),
        (failure(KafkaError._TRANSPORT, retriable=True), KafkaTransientError),
    ],
)
async def test_start_converts_an_init_transactions_failure(
    harness: Callable[..., Harness], error: KafkaException, raised: type[Exception]
) -> None:
    h = harness()
    h.script["init_transactions"] = [error]
    with pytest.raises(raised, match="while initialising transactions") as caught:
        await h.sink.start()
    assert caught.value.__cause__ is error


async def test_a_commit_before_start_raises_not_started_and_makes_no_producer(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    with pytest.raises(KafkaFatalError, match="not started"):
        await h.sink.commit([FIRST])
    assert h.producers == []
    assert h.recorder.events == []


# --- commit -----------------------------------------------------------------------------------


async def test_a_commit_begins_produces_each_message_positionally_and_commits_with_the_timeout(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    await h.sink.commit([FIRST, SECOND])
    assert producer.calls == [BEGIN, produced(FIRST), produced(SECOND), COMMIT]
    assert producer.calls[2] == ("produce", STATE_TOPIC, b"two", None, -1, None, None, 0, [])
    assert h.recorder.events == [("transaction", "committed")]
    producer.calls.clear()
    await h.sink.commit([SECOND])
    assert producer.calls == [BEGIN, produced(SECOND), COMMIT], "nothing left open to abort"
    assert h.transactions() == ["committed", "committed"]


async def test_a_full_queue_is_polled_and_the_same_message_produced_again(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("produce", BufferError(), BufferError())
    await h.sink.commit([FIRST, SECOND])
    poll = ("poll", 0.05)
    assert producer.calls == [
        BEGIN, produced(FIRST), poll, produced(FIRST), poll, produced(FIRST), produced(SECOND),
        COMMIT,
    ]  # fmt: skip
    assert producer.accepted == [produced(FIRST), produced(SECOND)], "none lost, none doubled"
    assert h.transactions() == ["committed"]


async def test_two_retriable_commit_failures_then_success_commit_the_same_transaction(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", *(failure(reason="busy", retriable=True) for _ in "ab"))
    await h.sink.commit([FIRST])
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT, COMMIT, COMMIT]
    assert h.transactions() == ["committed"]
    retrying = "commit_transaction failed (busy); retrying"
    assert messages_logged(caplog, logging.WARNING) == [retrying, retrying]


async def test_a_third_retriable_commit_failure_is_raised_and_the_transaction_aborted(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", *(failure(retriable=True) for _ in "abc"))
    with pytest.raises(KafkaTransientError, match="while committing a transaction") as caught:
        await h.sink.commit([FIRST])
    assert type(caught.value) is KafkaTransientError
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT, COMMIT, COMMIT, ABORT]
    assert h.transactions() == ["aborted"]


async def test_a_non_retriable_commit_error_is_not_retried_and_the_transaction_aborted(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    error = failure(KafkaError._STATE, "abortable", txn_requires_abort=True)
    producer.fail("commit_transaction", error)
    with pytest.raises(TransactionAbortRequiredError) as caught:
        await h.sink.commit([FIRST])
    assert caught.value.__cause__ is error
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT, ABORT]
    assert h.transactions() == ["aborted"]
    producer.calls.clear()
    await h.sink.commit([FIRST])
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT], "the abort closed it"
    assert h.transactions() == ["aborted", "committed"]


async def test_a_failed_produce_aborts_the_transaction_before_anything_is_committed(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("produce", failure(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
    with pytest.raises(KafkaTransientError, match="MSG_SIZE_TOO_LARGE: too large"):
        await h.sink.commit([FIRST, SECOND])
    assert producer.calls == [BEGIN, produced(FIRST), ABORT]
    assert h.transactions() == ["aborted"]


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (failure(KafkaError._FATAL, "out of order", fatal=True), KafkaFatalError),
        (failure(KafkaError.PRODUCER_FENCED, "fenced"), ProducerFencedError),
    ],
)
async def test_after_a_fatal_or_fenced_commit_error_no_abort_is_attempted(
    harness: Callable[..., Harness], error: KafkaException, raised: type[Exception]
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", error)
    with pytest.raises(raised):
        await h.sink.commit([FIRST])
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT]
    assert h.transactions() == []


async def test_a_transaction_left_open_by_a_failed_attempt_is_aborted_before_the_next_begin(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", failure(KafkaError._FATAL, "x", fatal=True))
    with pytest.raises(KafkaFatalError):
        await h.sink.commit([FIRST])
    producer.calls.clear()
    await h.sink.commit([SECOND])
    assert producer.calls == [ABORT, BEGIN, produced(SECOND), COMMIT]
    assert h.transactions() == ["aborted", "committed"]


async def test_an_abort_that_fails_leaves_the_transaction_open_so_the_next_commit_aborts_first(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", failure(KafkaError._TIMED_OUT, "commit timed out"))
    producer.fail("abort_transaction", failure(KafkaError._TRANSPORT, "abort failed"))
    with pytest.raises(KafkaTransientError, match="committing a transaction: _TIMED_OUT"):
        await h.sink.commit([FIRST])
    assert producer.calls == [BEGIN, produced(FIRST), COMMIT, ABORT]
    assert h.transactions() == []
    [warning] = messages_logged(caplog, logging.WARNING)
    assert warning.startswith("aborting the failed transaction did not succeed yet: ")
    assert "aborting a transaction: _TRANSPORT: abort failed" in warning
    producer.calls.clear()
    await h.sink.commit([SECOND])
    assert producer.calls == [ABORT, BEGIN, produced(SECOND), COMMIT]
    assert h.transactions() == ["aborted", "committed"]


async def test_an_abort_failing_again_at_the_next_commit_raises_and_begins_nothing(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.fail("commit_transaction", failure(KafkaError._FATAL, "x", fatal=True))
    with pytest.raises(KafkaFatalError):
        await h.sink.commit([FIRST])
    producer.calls.clear()
    producer.fail("abort_transaction", failure(KafkaError._TRANSPORT, "still down"))
    with pytest.raises(KafkaTransientError, match="aborting a transaction: _TRANSPORT"):
        await h.sink.commit([SECOND])
    assert producer.calls == [ABORT]
    assert h.transactions() == []
    producer.calls.clear()
    await h.sink.commit([SECOND])
    assert producer.calls == [ABORT, BEGIN, produced(SECOND), COMMIT], "still open"


async def test_delivery_errors_are_reported_by_name_and_cleared_between_commits(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    timed_out, purged = KafkaError(KafkaError._MSG_TIMED_OUT), KafkaError(KafkaError._PURGE_QUEUE)
    producer.deliveries = [None, timed_out, None, purged]
    producer.fail("commit_transaction", failure(KafkaError._MSG_TIMED_OUT))
    with pytest.raises(KafkaTransientError):
        await h.sink.commit([FIRST])
    assert h.recorder.events == [
        ("transaction", "aborted"),
        ("delivery_errors", ["_MSG_TIMED_OUT", "_PURGE_QUEUE"]),
    ]
    h.recorder.events.clear()
    producer.deliveries = [None]
    await h.sink.commit([FIRST])
    assert h.recorder.events == [("transaction", "committed")], "successes are not errors"


async def test_delivery_errors_are_reported_even_when_the_commit_succeeds(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.deliveries = [KafkaError(KafkaError._MSG_TIMED_OUT)]
    await h.sink.commit([FIRST])
    assert h.recorder.events == [
        ("delivery_errors", ["_MSG_TIMED_OUT"]),
        ("transaction", "committed"),
    ]


async def test_the_producer_is_used_from_one_dedicated_thread_one_call_at_a_time(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    producer = await h.started()
    producer.begin_seconds = 0.05
    await asyncio.gather(*(h.sink.commit([FIRST]) for _ in range(3)))
    assert producer.most_active == 1, "two threads were in the producer at once"
    [thread] = producer.threads
    assert thread is not threading.current_thread()
    assert thread.name.startswith("kafka-producer")
    assert h.transactions() == ["committed"] * 3


async def test_the_sink_without_a_recorder_reports_to_its_sources_prometheus_series() -> None:
    source = "kafka-sink-default-recorder"
    settings = make_settings(source, kafka={"operation_timeout_seconds": TIMEOUT})

    def factory(config: dict[str, Any]) -> FakeProducer:
        return FakeProducer(config, {})

    sink = TransactionalSink(settings, producer_factory=factory)  # type: ignore[arg-type]
    sample = "cdr_connector_transactions_total"
    labels = {"source": source, "result": "committed"}
    before = metrics.REGISTRY.get_sample_value(sample, labels) or 0.0
    try:
        await sink.start()
        await sink.commit([FIRST])
    finally:
        await sink.close()
    assert metrics.REGISTRY.get_sample_value(sample, labels) == before + 1


# --- close and queue depth --------------------------------------------------------------------


async def test_close_caps_its_timeout_at_five_seconds_aborts_the_open_transaction_and_flushes(
    harness: Callable[..., Harness],
) -> None:
    h = harness(timeout=12.5)
    producer = await h.started()
    producer.fail("commit_transaction", failure(KafkaError._FATAL, "x", fatal=True))
    with pytest.raises(KafkaFatalError):
        await h.sink.commit([FIRST])
    producer.calls.clear()
    producer.queued = 7
    await h.sink.close()
    assert producer.calls == [("abort_transaction", 5.0), ("flush", 5.0)]
    assert h.transactions() == ["aborted"]
    assert h.sink._producer is None
    assert h.sink.queue_depth() == 0


async def test_close_keeps_an_operation_timeout_under_five_and_aborts_nothing_when_none_is_open(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = harness(timeout=2.5)
    producer = await h.started()
    await h.sink.commit([FIRST])
    producer.calls.clear()
    await h.sink.close()
    assert producer.calls == [("flush", 2.5)]
    assert h.transactions() == ["committed"]
    assert messages_logged(caplog, logging.ERROR) == [], "nothing was left queued"


async def test_close_still_flushes_when_its_abort_fails(harness: Callable[..., Harness]) -> None:
    h = harness(timeout=3.0)
    producer = await h.started()
    producer.fail("commit_transaction", failure(KafkaError._FATAL, "x", fatal=True))
    producer.fail("abort_transaction", failure(KafkaError._FATAL, "y", fatal=True))
    with pytest.raises(KafkaFatalError):
        await h.sink.commit([FIRST])
    producer.calls.clear()
    await h.sink.close()
    assert producer.calls == [("abort_transaction", 3.0), ("flush", 3.0)]
    assert h.sink._producer is None


async def test_close_logs_how_many_messages_were_still_queued(
    harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = harness()
    producer = await h.started()
    producer.remaining = 3
    await h.sink.close()
    assert messages_logged(caplog, logging.ERROR) == [
        "3 messages were still queued at close; none was committed"
    ]


async def test_close_before_start_touches_no_producer(harness: Callable[..., Harness]) -> None:
    h = harness()
    await h.sink.close()
    assert h.producers == []
    assert h.sink.queue_depth() == 0


async def test_after_close_the_producer_thread_is_gone(harness: Callable[..., Harness]) -> None:
    h = harness()
    producer = await h.started()
    await h.sink.close()
    [thread] = producer.threads
    assert not thread.is_alive(), "close waits for the thread to end"
    with pytest.raises(RuntimeError, match="shutdown"):
        await h.sink.commit([FIRST])


async def test_queue_depth_is_zero_before_start_and_the_producers_length_after(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    assert h.sink.queue_depth() == 0
    producer = await h.started()
    producer.queued = 7
    assert h.sink.queue_depth() == 7


# --- converting librdkafka's errors -----------------------------------------------------------

DETAIL = "Kafka failed while testing: {}: {}"


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (KafkaError(KafkaError._FENCED, "r"), ProducerFencedError,
         DETAIL.format("_FENCED", "r") + FENCED_ADVICE),
        (KafkaError(KafkaError.PRODUCER_FENCED, "r"), ProducerFencedError,
         DETAIL.format("PRODUCER_FENCED", "r") + FENCED_ADVICE),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "r"), ProducerFencedError,
         DETAIL.format("INVALID_PRODUCER_EPOCH", "r") + FENCED_ADVICE),
        (KafkaError(KafkaError._FATAL, "Producer Fenced by a newer one", fatal=True),
         ProducerFencedError,
         DETAIL.format("_FATAL", "Producer Fenced by a newer one") + FENCED_ADVICE),
        (KafkaError(KafkaError._FATAL, "out of order", fatal=True), KafkaFatalError,
         DETAIL.format("_FATAL", "out of order")),
        (KafkaError(KafkaError._FATAL, "both", fatal=True, txn_requires_abort=True),
         KafkaFatalError, DETAIL.format("_FATAL", "both")),
        (KafkaError(KafkaError._STATE, "abort it", txn_requires_abort=True),
         TransactionAbortRequiredError, DETAIL.format("_STATE", "abort it")),
        (KafkaError(KafkaError._TRANSPORT, "not fenced, not fatal"), KafkaTransientError,
         DETAIL.format("_TRANSPORT", "not fenced, not fatal")),
        (KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True), KafkaTransientError,
         DETAIL.format("_TIMED_OUT", "slow")),
    ],
)  # fmt: skip
def test_convert_picks_the_error_class_and_message(
    error: KafkaError, kind: type[Exception], message: str
) -> None:
    converted = kafka_sink._convert(KafkaException(error), "testing")
    assert type(converted) is kind
    assert str(converted) == message


# --- reading the state topic ------------------------------------------------------------------

KEY = b"unit"
MAX_POLLS = 60  # a consumer polled more often than this is in a loop that never ends


@dataclass
class FakeMessage:
    at: int | None
    offset: int = 0
    key_: bytes | None = None
    value_: bytes | None = None
    error_: KafkaError | None = None

    def error(self) -> KafkaError | None:
        return self.error_

    def partition(self) -> int | None:
        return self.at

    def key(self) -> bytes | None:
        assert self.error_ is None, "the key of an error message was read"
        return self.key_

    def value(self) -> bytes | None:
        assert self.error_ is None, "the value of an error message was read"
        return self.value_


def record(partition: int, offset: int, key: bytes, value: bytes) -> FakeMessage:
    return FakeMessage(partition, offset, key, value)


def event(partition: int | None, code: int) -> FakeMessage:
    return FakeMessage(partition, error_=KafkaError(code, "event"))


class FakeConsumer:
    """Serves `script` (a message, or None for an idle poll; idle once it runs out); reading a
    record moves its partition's position past it, as librdkafka's does."""

    def __init__(
        self, script: Sequence[FakeMessage | None], positions: dict[int, int] | None = None
    ) -> None:
        self.script = list(script)
        self.positions = dict(positions or {})
        self.polls: list[float] = []
        self.asked: list[list[tuple[str, int]]] = []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self.asked.append([(tp.topic, tp.partition) for tp in partitions])
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, OFFSET_INVALID))
            for tp in partitions
        ]

    def poll(self, timeout: float) -> FakeMessage | None:
        self.polls.append(timeout)
        assert len(self.polls) <= MAX_POLLS, "polled without end"
        message = self.script.pop(0) if self.script else None
        if message is not None and message.error_ is None and message.at is not None:
            self.positions[message.at] = message.offset + 1
        return message


def read(consumer: FakeConsumer, ends: dict[int, int], timeout: float = 2.0) -> bytes | None:
    settings = make_settings(kafka={"operation_timeout_seconds": timeout})
    return kafka_sink._consume_to_end(consumer, KEY, ends, settings)  # type: ignore[arg-type]


def test_the_latest_value_of_the_key_up_to_the_end_wins_and_other_keys_are_ignored() -> None:
    consumer = FakeConsumer([
        record(0, 0, KEY, b"old"), record(0, 1, KEY, b"new"), record(0, 2, b"other", b"theirs"),
        record(0, 3, KEY, b"written after the end was taken"),
    ])  # fmt: skip
    assert read(consumer, {0: 3}) == b"new"
    assert consumer.polls == [0.5, 0.5, 0.5], "stops when the position equals the end"
    assert consumer.asked == [[(STATE_TOPIC, 0)]] * 4


def test_a_partition_whose_end_is_zero_is_at_its_end_from_the_start() -> None:
    consumer = FakeConsumer([])
    assert read(consumer, {0: 0}) is None
    assert (consumer.polls, consumer.asked) == ([], [])
    consumer = FakeConsumer([record(1, 0, KEY, b"value")])
    assert read(consumer, {0: 0, 1: 1}) == b"value"
    assert consumer.polls == [0.5]


def test_a_position_past_the_end_counts_as_at_the_end_without_a_poll() -> None:
    consumer = FakeConsumer([record(0, 9, KEY, b"never read")], positions={0: 5})
    assert read(consumer, {0: 4}) is None
    assert consumer.polls == []


def test_partition_eof_marks_its_partition_at_the_end() -> None:
    consumer = FakeConsumer([record(1, 0, KEY, b"value"), event(0, KafkaError._PARTITION_EOF)])
    assert read(consumer, {0: 5, 1: 1}) == b"value"
    assert consumer.polls == [0.5, 0.5]


def test_partition_eof_of_partition_zero_marks_partition_zero_only() -> None:
    consumer = FakeConsumer([event(0, KafkaError._PARTITION_EOF), record(1, 0, KEY, b"one")])
    assert read(consumer, {0: 5, 1: 1}) == b"one"
    consumer = FakeConsumer([event(1, KafkaError._PARTITION_EOF), record(0, 0, KEY, b"zero")])
    assert read(consumer, {0: 1, 1: 5}) == b"zero"


def test_a_partition_marked_by_eof_is_counted_once_when_its_position_reaches_the_end() -> None:
    eof = KafkaError._PARTITION_EOF
    consumer = FakeConsumer([
        event(0, eof), record(0, 0, KEY, b"a"), record(1, 0, KEY, b"b"), record(2, 0, KEY, b"c"),
    ])  # fmt: skip
    assert read(consumer, {0: 1, 1: 1, 2: 1}) == b"c"
    assert len(consumer.polls) == 4


def test_another_error_while_reading_raises_it_as_a_kafka_exception() -> None:
    consumer = FakeConsumer([event(0, KafkaError._TRANSPORT)])
    with pytest.raises(KafkaException) as caught:
        read(consumer, {0: 2})
    assert caught.value.args[0].code() == KafkaError._TRANSPORT


def test_idle_polls_up_to_the_deadline_are_tolerated_and_reset_by_a_message() -> None:
    # 2.0 s / 0.5 s + 1 = 5 idle polls in a row are tolerated
    script = [None] * 5 + [record(0, 0, KEY, b"a")] + [None] * 5 + [record(0, 1, KEY, b"b")]
    consumer = FakeConsumer(script)
    assert read(consumer, {0: 2}, timeout=2.0) == b"b"
    assert len(consumer.polls) == 12


@pytest.mark.parametrize("records", [0, 1], ids=["from-the-start", "after-a-record"])
def test_one_idle_poll_past_the_deadline_raises_a_transient_error_naming_the_state_topic(
    records: int,
) -> None:
    consumer = FakeConsumer([record(0, 0, KEY, b"a")][:records])
    with pytest.raises(KafkaTransientError) as caught:
        read(consumer, {0: 2}, timeout=2.0)
    assert str(caught.value) == (
        f"reading state topic {STATE_TOPIC} did not reach its end within 2.0s"
    )
    assert len(consumer.polls) == records + 6


class StateConsumer(FakeConsumer):
    """A FakeConsumer with the calls read_latest_state makes before and after reading."""

    def __init__(
        self,
        partitions: Sequence[int],
        watermarks: dict[int, tuple[int, int]],
        script: Sequence[FakeMessage | None] = (),
    ) -> None:
        super().__init__(script)
        self.partitions = dict.fromkeys(partitions)
        self.watermarks = watermarks
        self.list_error: KafkaException | None = None
        self.listed: list[tuple[str, float]] = []
        self.assigned: list[tuple[str, int, int]] = []
        self.watermark_calls: list[tuple[str, int, float, bool]] = []
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.listed.append((topic, timeout))
        if self.list_error is not None:
            raise self.list_error
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=self.partitions)})

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        self.watermark_calls.append((partition.topic, partition.partition, timeout, cached))
        return self.watermarks[partition.partition]

    def close(self) -> None:
        self.closed = True


def read_state(monkeypatch: pytest.MonkeyPatch, consumer: StateConsumer) -> bytes | None:
    settings = make_settings(kafka={"operation_timeout_seconds": 2.0})

    def new_consumer(given: Any, suffix: str) -> StateConsumer:
        assert (given, suffix) == (settings, "state")
        return consumer

    monkeypatch.setattr(kafka_sink, "new_consumer", new_consumer)
    return kafka_sink.read_latest_state(settings, KEY)


def test_read_latest_state_reads_every_partition_from_zero_to_its_uncached_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = [record(0, 3, KEY, b"old"), record(0, 4, KEY, b"new")]
    consumer = StateConsumer([0, 1], {0: (3, 5), 1: (0, 0)}, script)
    consumer.positions = {0: 3}  # the low watermark: older records were compacted away
    assert read_state(monkeypatch, consumer) == b"new"
    assert consumer.listed == [(STATE_TOPIC, 2.0)]
    assert consumer.assigned == [(STATE_TOPIC, 0, 0), (STATE_TOPIC, 1, 0)]
    assert consumer.watermark_calls == [(STATE_TOPIC, 0, 2.0, False), (STATE_TOPIC, 1, 2.0, False)]
    assert consumer.closed


def test_read_latest_state_without_partitions_raises_topic_missing_and_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = StateConsumer([], {})
    with pytest.raises(TopicMissingError, match=f"state topic {STATE_TOPIC} has no partitions"):
        read_state(monkeypatch, consumer)
    assert consumer.assigned == []
    assert consumer.closed


@pytest.mark.parametrize("where", ["listing", "reading"])
def test_read_latest_state_turns_a_kafka_exception_into_a_transient_error_and_closes(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    consumer = StateConsumer([0], {0: (0, 1)}, [event(0, KafkaError._TRANSPORT)])
    if where == "listing":
        consumer.list_error = failure(KafkaError._TRANSPORT, "broker down")
    with pytest.raises(KafkaTransientError, match=f"^cannot read state topic {STATE_TOPIC}: ") as e:
        read_state(monkeypatch, consumer)
    reason = "broker down" if where == "listing" else "event"
    assert str(e.value).endswith(f": {reason}")
    assert isinstance(e.value.__cause__, KafkaException)
    assert consumer.closed
