"""What the transactional sink reports, to the recorder it was given: committed and aborted
transactions and the delivery errors librdkafka named. The producer is a stand-in that keeps
librdkafka's calling convention; the real one is tested against a broker in
tests/integration/test_sink.py."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_sink import OutgoingMessage, TransactionalSink
from tests.fakes import FakeRecorder

MESSAGE = OutgoingMessage("cdr.calls", b"8001", b"value", [])


class Producer:
    """Commits, or fails its commit once after reporting a delivery error."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.on_delivery = config["on_delivery"]
        self.fail_next_commit = False
        self.committed = 0

    def init_transactions(self, _timeout: float) -> None: ...

    def begin_transaction(self) -> None: ...

    def produce(self, *_message: Any) -> None: ...

    def abort_transaction(self, _timeout: float) -> None: ...

    def commit_transaction(self, _timeout: float) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            self.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, "timed out", retriable=False)
            )
        self.committed += 1

    def flush(self, _timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


async def test_the_sink_reports_transactions_and_delivery_errors_to_its_recorder() -> None:
    producers: list[Producer] = []

    def factory(config: dict[str, Any]) -> Producer:
        producers.append(Producer(config))
        return producers[-1]

    recorder = FakeRecorder()
    source = {"name": "sink-reports", "appid": "a", "accesskey": "k"}
    settings = Settings(source=source)  # type: ignore[arg-type]
    sink = TransactionalSink(settings, producer_factory=factory, recorder=recorder)  # type: ignore[arg-type]
    await sink.start()
    try:
        await sink.commit([MESSAGE])
        producers[0].fail_next_commit = True
        with pytest.raises(KafkaTransientError):
            await sink.commit([MESSAGE])
    finally:
        await sink.close()
    assert recorder.of("transaction") == ["committed", "aborted"]
    assert recorder.of("delivery_errors") == [["_MSG_TIMED_OUT"]]
