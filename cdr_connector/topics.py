"""The connector's three topics: which it wants, which exist, and creating the missing ones.

`survey_topics` is the one answer to "which of the connector's topics are missing", for the
connector at start-up (`ensure_topics`, which creates them when allowed) and for
`cdr-connector check` (which only reports). Both are blocking: call them from a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import KafkaError as LibKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError, TopicMissingError
from cdr_connector.kafka_clients import new_admin

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The data, dead-letter and state topics, as the connector would create them."""
    kafka = settings.kafka
    retention = {"retention.ms": str(kafka.retention_ms)}
    return [
        NewTopic(kafka.topic, kafka.partitions, kafka.replication_factor, config=retention),
        NewTopic(
            kafka.dead_letter_topic, kafka.partitions, kafka.replication_factor, config=retention
        ),
        # One partition keeps every source's latest state in one place to read at start-up.
        NewTopic(
            kafka.state_topic, 1, kafka.replication_factor, config={"cleanup.policy": "compact"}
        ),
    ]


@dataclass(frozen=True)
class TopicSurvey:
    """The connector's topics against what the cluster has."""

    wanted: list[NewTopic]
    missing: list[NewTopic]
    may_create: bool
    """kafka.create_topics"""

    @property
    def wanted_names(self) -> list[str]:
        return [spec.topic for spec in self.wanted]

    @property
    def missing_names(self) -> list[str]:
        return [spec.topic for spec in self.missing]

    def require_creatable(self) -> None:
        """Raise TopicMissingError when a topic is missing and the connector may not create it."""
        if self.missing and not self.may_create:
            raise TopicMissingError(
                f"topic(s) {', '.join(self.missing_names)} do not exist and kafka.create_topics "
                "is false: create them (see deploy/topics) or set kafka.create_topics = true"
            )


def survey_topics(
    settings: Settings, admin: AdminClient | None = None, timeout: float | None = None
) -> TopicSurvey:
    """Which of `topic_specs` the cluster lacks; raises KafkaTransientError when it cannot be
    reached within `timeout` (default kafka.operation_timeout_seconds)."""
    kafka = settings.kafka
    if admin is None:
        admin = new_admin(settings)
    try:
        metadata = admin.list_topics(timeout=timeout or kafka.operation_timeout_seconds)
    except KafkaException as exc:
        raise KafkaTransientError(
            f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc.args[0].str()}"
        ) from exc
    wanted = topic_specs(settings)
    missing = [spec for spec in wanted if spec.topic not in metadata.topics]
    return TopicSurvey(wanted, missing, kafka.create_topics)


def ensure_topics(settings: Settings, admin: AdminClient | None = None) -> None:
    """Check that the data, dead-letter and state topics exist, creating them if allowed."""
    if admin is None:
        # One client for the survey and the creation: its futures need it alive.
        admin = new_admin(settings)
    survey = survey_topics(settings, admin)
    survey.require_creatable()
    if not survey.missing:
        return
    timeout = settings.kafka.operation_timeout_seconds
    futures = admin.create_topics(survey.missing, operation_timeout=timeout)
    existed = await_topic_changes(futures, "create")
    for topic in futures:
        if topic not in existed:
            log.info("created topic %s", topic)


def await_topic_changes(futures: Mapping[str, Future[None]], doing: str) -> set[str]:
    """Wait for every topic of an admin request (`create_topics`, `create_partitions`); `doing`
    names it in errors. Returns the topics that existed already (another replica, or `check`,
    got there first); any other failure raises KafkaTransientError naming the topic."""
    existed: set[str] = set()
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != LibKafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaTransientError(
                    f"cannot {doing} topic {topic}: {exc.args[0].str()}"
                ) from exc
            existed.add(topic)
    return existed
