"""The transactional sink against the broker: a message the broker refuses fails its whole
transaction, is counted by its librdkafka error, and leaves the sink able to commit the next."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from cdr_connector import metrics
from cdr_connector.config import load_settings
from cdr_connector.errors import RetryableError
from cdr_connector.kafka_sink import OutgoingMessage, TransactionalSink
from tests.kafka_helpers import consume_all, create_topics, unique_name


def delivery_errors(source: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "cdr_connector_kafka_delivery_errors_total",
        {"source": source, "code": "MSG_SIZE_TOO_LARGE"},
    )
    return value or 0.0


async def commit_within(
    sink: TransactionalSink, messages: list[OutgoingMessage], attempts: int
) -> None:
    """Commit as the pipeline does, producing again after a retryable failure (the idempotent
    producer may need one more transaction to resynchronise its sequence numbers)."""
    for attempt in range(1, attempts + 1):
        try:
            await sink.commit(messages)
            return
        except RetryableError:
            if attempt == attempts:
                raise


async def test_a_refused_message_fails_its_transaction_and_is_counted(
    kafka_bootstrap: str, admin: AdminClient, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic("sink-small")
    create_topics(admin, [topic], config={"max.message.bytes": "2000"})
    source = unique_name("sink")
    settings = load_settings(
        source={"name": source, "appid": "a", "accesskey": "k", "api_url": "http://127.0.0.1:9"},
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": topic, "compression": "none"},
    )
    sink = TransactionalSink(settings)
    await sink.start()
    try:
        too_large = OutgoingMessage(topic, b"8001", os.urandom(10_000), [], 0)
        fits = OutgoingMessage(topic, b"8001", b"fits", [("cdr.id", b"1")], 0)
        with pytest.raises(RetryableError):
            await sink.commit([too_large])
        assert delivery_errors(source) == 1
        await commit_within(sink, [fits], attempts=3)
    finally:
        await sink.close()
    committed = consume_all(kafka_bootstrap, topic)
    assert [m.value() for m in committed] == [b"fits"], "the failed transaction was aborted"
    assert delivery_errors(source) == 1
