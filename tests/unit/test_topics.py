"""The connector's three topics against a scripted admin client: wanted, missing, created."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError as LibKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.cimpl import NewTopic

from cdr_connector import topics
from cdr_connector.errors import KafkaTransientError, TopicMissingError
from cdr_connector.topics import ensure_topics, survey_topics, topic_specs
from tests.fakes import make_settings

KAFKA = {
    "topic": "cdr",
    "dead_letter_topic": "cdr.dlq",
    "state_topic": "cdr.state",
    "partitions": 6,
    "replication_factor": 3,
    "retention_ms": 86_400_000,
    "operation_timeout_seconds": 7.0,
    "create_topics": True,
}


class _Metadata:
    def __init__(self, names: list[str]) -> None:
        self.topics = dict.fromkeys(names)


class _Admin:
    """Has the topics `existing`; `create_topics` answers each topic with `outcomes[topic]`
    (an exception) or success."""

    def __init__(self, existing: list[str], outcomes: dict[str, Exception] | None = None) -> None:
        self.existing = existing
        self.outcomes = outcomes or {}
        self.list_timeouts: list[float] = []
        self.created: list[NewTopic] = []
        self.create_timeout: float | None = None
        self.unreachable: KafkaException | None = None

    def list_topics(self, *, timeout: float) -> _Metadata:
        self.list_timeouts.append(timeout)
        if self.unreachable is not None:
            raise self.unreachable
        return _Metadata(self.existing)

    def create_topics(
        self, specs: list[NewTopic], *, operation_timeout: float
    ) -> dict[str, Future[None]]:
        self.created, self.create_timeout = specs, operation_timeout
        futures: dict[str, Future[None]] = {}
        for spec in specs:
            future: Future[None] = Future()
            error = self.outcomes.get(spec.topic)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
            futures[spec.topic] = future
        return futures


def _settings(**kafka: Any) -> Any:
    return make_settings(kafka=KAFKA | kafka)


def _described(spec: NewTopic) -> tuple[str, int, int, dict[str, str]]:
    return spec.topic, spec.num_partitions, spec.replication_factor, spec.config


def test_data_and_dead_letters_have_the_partitions_and_retention_and_state_one_compacted() -> None:
    assert [_described(spec) for spec in topic_specs(_settings())] == [
        ("cdr", 6, 3, {"retention.ms": "86400000"}),
        ("cdr.dlq", 6, 3, {"retention.ms": "86400000"}),
        ("cdr.state", 1, 3, {"cleanup.policy": "compact"}),
    ]


def test_the_survey_names_what_is_missing_and_waits_the_operation_timeout_by_default() -> None:
    admin = _Admin(["cdr", "other"])

    survey = survey_topics(_settings(), admin)
    survey_topics(_settings(), admin, timeout=1.5)

    assert survey.wanted_names == ["cdr", "cdr.dlq", "cdr.state"]
    assert survey.missing_names == ["cdr.dlq", "cdr.state"]
    assert admin.list_timeouts == [7.0, 1.5]


def test_a_missing_topic_the_connector_may_not_create_is_refused_with_what_to_do() -> None:
    survey = survey_topics(_settings(create_topics=False), _Admin(["cdr.dlq"]))

    with pytest.raises(TopicMissingError) as refused:
        survey.require_creatable()
    assert str(refused.value) == (
        "topic(s) cdr, cdr.state do not exist and kafka.create_topics is false: create them "
        "(see deploy/topics) or set kafka.create_topics = true"
    )
    survey_topics(_settings(create_topics=False), _Admin(["cdr", "cdr.dlq", "cdr.state"]))
    survey_topics(_settings(create_topics=True), _Admin([])).require_creatable()


def test_kafka_out_of_reach_is_a_transient_error_naming_the_bootstrap_servers() -> None:
    admin = _Admin([])
    admin.unreachable = KafkaException(LibKafkaError(LibKafkaError._TRANSPORT, "no route"))

    with pytest.raises(KafkaTransientError) as failed:
        survey_topics(_settings(bootstrap_servers="127.0.0.1:1"), admin)
    assert str(failed.value) == "cannot reach Kafka at 127.0.0.1:1: no route"


def test_only_the_missing_topics_are_created_within_the_operation_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = _Admin(["cdr.state"])

    with caplog.at_level(logging.INFO, logger="cdr_connector.topics"):
        ensure_topics(_settings(), admin)

    assert [spec.topic for spec in admin.created] == ["cdr", "cdr.dlq"]
    assert admin.create_timeout == 7.0
    assert caplog.messages == ["created topic cdr", "created topic cdr.dlq"]


def test_a_topic_someone_else_created_meanwhile_is_not_logged_as_created(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exists = KafkaException(LibKafkaError(LibKafkaError.TOPIC_ALREADY_EXISTS, "exists"))

    with caplog.at_level(logging.INFO, logger="cdr_connector.topics"):
        ensure_topics(_settings(), _Admin(["cdr.state"], {"cdr": exists}))

    assert caplog.messages == ["created topic cdr.dlq"]


def test_nothing_is_created_when_every_topic_exists_and_nothing_when_creating_is_refused() -> None:
    admin = _Admin(["cdr", "cdr.dlq", "cdr.state"])
    ensure_topics(_settings(), admin)
    assert admin.created == []

    refusing = _Admin(["cdr"])
    with pytest.raises(TopicMissingError):
        ensure_topics(_settings(create_topics=False), refusing)
    assert refusing.created == []


def test_a_topic_created_meanwhile_by_someone_else_is_no_error_but_a_refusal_is() -> None:
    exists = KafkaException(LibKafkaError(LibKafkaError.TOPIC_ALREADY_EXISTS, "exists"))
    ensure_topics(_settings(), _Admin([], {"cdr": exists}))

    denied = KafkaException(LibKafkaError(LibKafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
    with pytest.raises(KafkaTransientError) as failed:
        ensure_topics(_settings(), _Admin([], {"cdr.dlq": denied}))
    assert str(failed.value) == "cannot create topic cdr.dlq: denied"


def test_without_an_admin_one_client_is_made_for_the_survey_and_the_creation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[_Admin] = []

    def new_admin(settings: object) -> _Admin:
        made.append(_Admin([]))
        return made[-1]

    monkeypatch.setattr(topics, "new_admin", new_admin)
    ensure_topics(_settings())
    assert len(made) == 1
    assert len(made[0].created) == 3

    survey = survey_topics(_settings())
    assert len(made) == 2
    assert survey.missing_names == ["cdr", "cdr.dlq", "cdr.state"]
