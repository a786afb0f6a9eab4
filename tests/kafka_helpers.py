"""Small helpers for tests that talk to a real Kafka broker.

Everything here is synchronous and bounded by explicit timeouts, so a broken broker makes a
test fail quickly instead of hanging until the global pytest timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_TIMEOUT = 30.0


def unique_name(prefix: str = "t") -> str:
    """A name no other test uses: ``<prefix>-<32 hex digits>`` (valid as a topic name)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def check_reachable(bootstrap: str, timeout: float = 10.0) -> str | None:
    """Return None if a broker at ``bootstrap`` answers a metadata request, else the reason."""
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000}
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        return f"no metadata within {timeout:g}s: {exc.args[0]}"
    if not metadata.brokers:
        return "the cluster reported no brokers"
    return None


def create_topics(
    admin: AdminClient,
    names: Iterable[str],
    partitions: int = 1,
    *,
    config: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Create topics (one replica each) and wait until every partition has a leader."""
    names = list(names)
    new_topics = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
        for name in names
    ]
    futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise AssertionError(f"creating topic {name!r} failed: {exc.args[0]}") from exc
    wait_for_topics(admin, names, partitions, timeout=timeout)


def wait_for_topics(
    admin: AdminClient,
    names: Iterable[str],
    partitions: int = 1,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Wait until each topic is in the metadata with ``partitions`` partitions, all led."""
    pending = set(names)
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and len(topic.partitions) == partitions
                and all(p.error is None and p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"topics not ready after {timeout:g}s: {sorted(pending)}")
        time.sleep(0.1)


def delete_topics(
    admin: AdminClient, names: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Delete topics and wait for the broker to confirm."""
    futures = admin.delete_topics(list(names), operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise AssertionError(f"deleting topic {name!r} failed: {exc.args[0]}") from exc


def consume_all(
    bootstrap: str,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    timeout: float = DEFAULT_TIMEOUT,
    extra_config: Mapping[str, object] | None = None,
) -> list[Message]:
    """Read every partition of ``topic`` from the beginning up to its current end.

    No consumer group membership: partitions are assigned directly, nothing is committed.
    With ``read_committed`` the end is the last stable offset, so records of transactions
    still open are not waited for. Messages come back partition by partition, in offset order.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("test-reader"),
            "isolation.level": isolation_level,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **(extra_config or {}),
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        topic_md = metadata.topics.get(topic)
        if topic_md is None or topic_md.error is not None or not topic_md.partitions:
            error = None if topic_md is None else topic_md.error
            raise AssertionError(f"topic {topic!r} has no partitions to read ({error})")
        partitions = sorted(topic_md.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])

        by_partition: dict[int, list[Message]] = {p: [] for p in partitions}
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                read = sum(len(v) for v in by_partition.values())
                raise AssertionError(
                    f"reading {topic!r} did not reach the end within {timeout:g}s "
                    f"({read} messages read, partitions at end: {sorted(at_end)})"
                )
            msg = consumer.poll(min(remaining, 0.5))
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise KafkaException(error)
            at_end.discard(msg.partition())
            by_partition[msg.partition()].append(msg)
        return [m for p in partitions for m in by_partition[p]]
    finally:
        consumer.close()
