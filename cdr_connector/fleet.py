"""Replicas sharing the sources through a Kafka consumer group (`fleet.enabled`).

Kafka's group coordinator already elects owners and notices when a member dies; the connector
builds on it rather than on a lock of its own. The coordination topic has one partition per
source, in the order of the sources' names (partition 0 is the first name); nothing is ever
written to it. Every replica subscribes to it in `fleet.group_id` with the cooperative-sticky
assignor, so a rebalance moves only the partitions that must move, and owns the sources of the
partitions assigned to it. Extra replicas own nothing: they are hot standbys.

The order of events is what keeps a source to one reader:
  - revoked: the source is stopped (its open transaction finished or aborted, its producer
    closed) before the callback returns, and only then does the group give its partition to
    another replica;
  - assigned: the source starts, and its producer's `init_transactions` fences any zombie
    that still holds the same `transactional.id`;
  - lost (this replica missed its session timeout): the source is stopped at once, since
    another replica may own it already; what it had fetched and not committed is found by the
    new owner's start-up sweep.

The consumer runs on a thread of its own (librdkafka's calls block), polling every
`_POLL_SECONDS`; its callbacks hand the work to the event loop and wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic

from cdr_connector import metrics
from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_clients import consumer_config, new_admin
from cdr_connector.topics import await_topic_changes

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5

SourcesChange = Callable[[list[str]], Coroutine[Any, Any, None]]
"""Starts or stops the named sources; awaited before the group may move them on."""


def source_partitions(names: list[str]) -> dict[int, str]:
    """Partition -> source: the sources in name order, one partition each."""
    return dict(enumerate(sorted(names)))


def ensure_coordination_topic(settings: Settings, sources: int) -> None:
    """The coordination topic with at least one partition per source: created, or grown
    when sources were added (a topic's partitions can only grow). A topic another replica
    created meanwhile (with as many partitions as it has sources) is read again, and grown."""
    topic = settings.fleet.coordination_topic
    admin = new_admin(settings)
    timeout = settings.kafka.operation_timeout_seconds
    partitions = _partition_count(admin, topic, timeout)
    if partitions is None:
        spec = NewTopic(topic, sources, settings.kafka.replication_factor)
        created = admin.create_topics([spec], operation_timeout=timeout)
        if topic not in await_topic_changes(created, "create"):
            log.info("created coordination topic %s with %d partitions", topic, sources)
            return
        partitions = _partition_count(admin, topic, timeout) or 0
    if partitions < sources:
        grow = NewPartitions(topic, sources)
        await_topic_changes(admin.create_partitions([grow], operation_timeout=timeout), "grow")
        log.info("coordination topic %s grown to %d partitions", topic, sources)


def _partition_count(admin: AdminClient, topic: str, timeout: float) -> int | None:
    """How many partitions `topic` has; None when it does not exist (or is not readable)."""
    try:
        # Not list_topics(topic=...): asking for one topic's metadata makes a broker with
        # auto.create.topics.enable create it, with the broker's default partition count.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaTransientError(f"cannot read topic {topic}: {exc.args[0].str()}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


class Membership:
    """This replica's membership in the group, and the sources it owns through it."""

    def __init__(
        self,
        settings: Settings,
        names: list[str],
        on_assigned: SourcesChange,
        on_revoked: SourcesChange,
        on_lost: SourcesChange,
    ) -> None:
        self._settings = settings
        self._by_partition = source_partitions(names)
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_lost = on_lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leaving = threading.Event()
        self.owned: set[str] = set()
        metrics.FLEET_SOURCES_CONFIGURED.set(len(names))

    async def run(self, stop: asyncio.Event) -> None:
        """Be a member until `stop`; leaving stops this replica's sources first."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(ensure_coordination_topic, self._settings, len(self._by_partition))
        member = asyncio.ensure_future(asyncio.to_thread(self._poll_until_leaving))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({member, stopping}, return_when=asyncio.FIRST_COMPLETED)
        self._leaving.set()
        stopping.cancel()
        await member  # closing the consumer revokes everything: the sources stop

    def _poll_until_leaving(self) -> None:
        consumer = Consumer(self._config())
        consumer.subscribe(
            [self._settings.fleet.coordination_topic],
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        try:
            while not self._leaving.is_set():
                consumer.poll(_POLL_SECONDS)
        finally:
            consumer.close()

    def _config(self) -> dict[str, Any]:
        fleet = self._settings.fleet
        session_ms = int(fleet.session_timeout_seconds * 1000)
        purpose = {
            "group.id": fleet.group_id,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(100, session_ms // 5),
            "enable.partition.eof": False,
        }
        return consumer_config(self._settings, "fleet", purpose)

    def _names(self, partitions: list[TopicPartition]) -> list[str]:
        return [
            self._by_partition[p.partition] for p in partitions if p.partition in self._by_partition
        ]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._change("assigned", partitions)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._change("revoked", partitions)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._change("lost", partitions)

    def _change(self, change: str, partitions: list[TopicPartition]) -> None:
        names = self._names(partitions)
        if not names:
            return
        if change == "assigned":
            log.info("fleet: assigned %s", ", ".join(names))
            self.owned.update(names)
            self._changed(change, names, self._on_assigned)
        else:
            why = "revoked" if change == "revoked" else "membership lost"
            log.log(
                logging.INFO if change == "revoked" else logging.WARNING,
                "fleet: %s; stopping %s before they move on",
                why,
                ", ".join(names),
            )
            self._changed(change, names, self._on_revoked if change == "revoked" else self._on_lost)
            self.owned.difference_update(names)
        metrics.FLEET_SOURCES_OWNED.set(len(self.owned))

    def _changed(self, change: str, names: list[str], then: SourcesChange) -> None:
        """Run `then(names)` on the event loop and wait for it: the group moves nothing on
        until this callback returns."""
        assert self._loop is not None
        metrics.FLEET_REBALANCES.labels(change).inc()
        asyncio.run_coroutine_threadsafe(then(names), self._loop).result()
