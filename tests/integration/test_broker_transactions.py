"""The test broker supports what exactly-once delivery rests on.

Transactions must be atomic for ``read_committed`` readers, and a second producer with the same
``transactional.id`` must fence the first. If these fail, no exactly-once test of the connector
means anything.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from tests.kafka_helpers import consume_all, create_topics, unique_name

pytestmark = pytest.mark.kafka

OP_TIMEOUT = 15.0


def _transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            # Short, so a transaction left open by a crashed test does not hold readers back.
            "transaction.timeout.ms": 10_000,
            "linger.ms": 5,
        }
    )


def _values(messages: list[Message]) -> list[bytes | None]:
    return [m.value() for m in messages]


def test_read_committed_sees_only_the_committed_batch(
    kafka_bootstrap: str, admin: AdminClient, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic("txn-atomic")
    create_topics(admin, [topic])
    delivery_errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            delivery_errors.append(err)

    committed = [f"committed-{i}".encode() for i in range(10)]
    aborted = [f"aborted-{i}".encode() for i in range(10)]

    producer = _transactional_producer(kafka_bootstrap, unique_name("txn-atomic"))
    producer.init_transactions(OP_TIMEOUT)

    producer.begin_transaction()
    for value in committed:
        producer.produce(topic, value=value, on_delivery=on_delivery)
    producer.commit_transaction(OP_TIMEOUT)

    producer.begin_transaction()
    for value in aborted:
        producer.produce(topic, value=value, on_delivery=on_delivery)
    # The aborted records reach the log before the abort, so the reader must skip them.
    assert producer.flush(OP_TIMEOUT) == 0
    producer.abort_transaction(OP_TIMEOUT)

    assert delivery_errors == []
    assert (
        _values(consume_all(kafka_bootstrap, topic, isolation_level="read_committed")) == committed
    )
    # Not vacuous: the aborted batch is in the log, only hidden from read_committed readers.
    assert (
        _values(consume_all(kafka_bootstrap, topic, isolation_level="read_uncommitted"))
        == committed + aborted
    )


def test_same_transactional_id_fences_the_older_producer(
    kafka_bootstrap: str, admin: AdminClient, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic("txn-fence")
    create_topics(admin, [topic])
    transactional_id = unique_name("txn-fence")

    zombie = _transactional_producer(kafka_bootstrap, transactional_id)
    zombie.init_transactions(OP_TIMEOUT)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"from-the-zombie")
    assert zombie.flush(OP_TIMEOUT) == 0

    # Same transactional.id: bumps the producer epoch and aborts the zombie's open transaction.
    successor = _transactional_producer(kafka_bootstrap, transactional_id)
    successor.init_transactions(OP_TIMEOUT)

    with pytest.raises(KafkaException) as commit_error:
        zombie.commit_transaction(OP_TIMEOUT)
    error = commit_error.value.args[0]
    assert error.code() == KafkaError._FENCED, error
    assert error.fatal(), error
    assert not error.retriable(), error
    assert not error.txn_requires_abort(), error

    # Fencing is fatal: the zombie cannot start over either.
    with pytest.raises(KafkaException) as begin_error:
        zombie.begin_transaction()
    assert begin_error.value.args[0].code() == KafkaError._FENCED

    successor.begin_transaction()
    successor.produce(topic, value=b"from-the-successor")
    successor.commit_transaction(OP_TIMEOUT)

    assert _values(consume_all(kafka_bootstrap, topic, isolation_level="read_committed")) == [
        b"from-the-successor"
    ]
