"""Every Kafka client is configured by `kafka_clients`: the same logger, the same broker, the
user's `kafka.client_config` unchanged, whichever part of the connector makes it.

The call sites (the state reader, `tail`, `check`, the topic survey at start-up) are run with the
client classes replaced by recorders, which keep the configuration and refuse to connect, so
each test shows what that call site would have handed librdkafka.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from cdr_connector import kafka_clients, topics
from cdr_connector.checks import run_checks
from cdr_connector.config import Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.kafka_sink import read_latest_state
from cdr_connector.tail import tail

TUNING = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "cdr-connector",
    "sasl.password": "s3cret-for-the-test",
    "socket.keepalive.enable": "true",
}
BOOTSTRAP = "broker-1.example:9093"


def settings() -> Settings:
    return Settings(
        source={"name": "acme", "appid": "a", "accesskey": "k", "api_url": "http://127.0.0.1:9/"},
        kafka={"bootstrap_servers": BOOTSTRAP, "client_config": TUNING},
        poll={"max_attempts": 1},  # `check` fails its login to nowhere at once
    )


class Unreachable(KafkaException):
    """What the recorders raise where a real client would talk to the broker."""

    def __init__(self) -> None:
        super().__init__(KafkaError(KafkaError._TRANSPORT))


class Recorder:
    """A Kafka client class stand-in: keeps every configuration it is made with."""

    configs: list[dict[str, Any]]

    def __init__(self, config: dict[str, Any]) -> None:
        type(self).configs.append(config)

    def list_topics(self, *_args: Any, **_kwargs: Any) -> Any:
        raise Unreachable

    def subscribe(self, *_args: Any) -> None:
        raise Unreachable

    def close(self) -> None:
        pass


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """The configurations each kind of client was made with, by kind."""
    kinds: dict[str, list[dict[str, Any]]] = {"consumer": [], "admin": []}
    for name, kind in (("Consumer", "consumer"), ("AdminClient", "admin")):
        monkeypatch.setattr(kafka_clients, name, type(name, (Recorder,), {"configs": kinds[kind]}))
    return kinds


def assert_shared_part(config: dict[str, Any]) -> None:
    assert config["bootstrap.servers"] == BOOTSTRAP
    assert config["logger"] is kafka_clients.LIBRDKAFKA_LOG
    assert {key: config[key] for key in TUNING} == TUNING


@pytest.mark.parametrize(
    "make",
    [
        kafka_clients.producer_config,
        kafka_clients.admin_config,
        lambda current: kafka_clients.consumer_config(current, "state"),
    ],
    ids=["producer", "admin", "consumer"],
)
def test_every_configuration_has_the_broker_the_logger_and_client_config(make: Any) -> None:
    assert_shared_part(make(settings()))


def test_client_config_overrides_the_connectors_tuning_but_a_purpose_overrides_both() -> None:
    current = Settings(
        source={"appid": "a", "accesskey": "k"},
        kafka={"client_config": {"linger.ms": "50", "auto.offset.reset": "earliest"}},
    )
    assert kafka_clients.producer_config(current)["linger.ms"] == "50"
    purpose = {"auto.offset.reset": "latest"}
    consumer = kafka_clients.consumer_config(current, "tail-x", purpose)
    assert consumer["auto.offset.reset"] == "latest"
    assert consumer["group.id"] == "cdr-connector-default-tail-x"


def test_the_state_reader_makes_its_consumer_here(made: dict[str, list[Any]]) -> None:
    with pytest.raises(KafkaTransientError, match="cannot read state topic"):
        read_latest_state(settings(), b"acme")
    [config] = made["consumer"]
    assert_shared_part(config)
    assert config["group.id"] == "cdr-connector-acme-state"
    assert config["isolation.level"] == "read_committed"


def test_tail_makes_its_consumer_here_reading_from_where_it_is_asked(
    made: dict[str, list[Any]],
) -> None:
    with pytest.raises(KafkaTransientError):
        tail(settings(), from_beginning=True, out=io.StringIO())
    [config] = made["consumer"]
    assert_shared_part(config)
    assert config["auto.offset.reset"] == "earliest"
    assert config["enable.partition.eof"] is False


async def test_check_makes_its_admin_client_here(made: dict[str, list[Any]]) -> None:
    lines: list[str] = []
    assert await run_checks(settings(), out=lines.append) == 1
    assert any(line.startswith("FAIL Kafka and topics: cannot reach Kafka") for line in lines)
    [config] = made["admin"]
    assert_shared_part(config)


def test_the_start_up_topic_survey_makes_its_admin_client_here(
    made: dict[str, list[Any]],
) -> None:
    with pytest.raises(KafkaTransientError, match="cannot reach Kafka"):
        topics.ensure_topics(settings())
    [config] = made["admin"]
    assert_shared_part(config)


def test_the_producer_is_transactional_idempotent_and_partitions_as_java_clients_do() -> None:
    config = kafka_clients.producer_config(settings())
    assert {key: config[key] for key in PRODUCER_OWN} == {
        "client.id": "cdr-connector-acme",
        "transactional.id": "cdr-connector-acme",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "transaction.timeout.ms": 60_000,
        "message.timeout.ms": 55_000,
        "linger.ms": 5,
        "delivery.report.only.error": True,
    }


PRODUCER_OWN = (
    "client.id",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "partitioner",
    "transaction.timeout.ms",
    "message.timeout.ms",
    "linger.ms",
    "delivery.report.only.error",
)


@pytest.mark.parametrize(
    ("transaction_seconds", "message_ms"), [(6.0, 1000), (6.001, 1001), (1.0, 1000), (900, 895_000)]
)
def test_a_message_times_out_5_s_before_its_transaction_and_never_in_under_a_second(
    transaction_seconds: float, message_ms: int
) -> None:
    current = Settings(
        source={"name": "acme", "appid": "a", "accesskey": "k"},
        kafka={"transaction_timeout_seconds": transaction_seconds},
    )  # type: ignore[arg-type]
    assert kafka_clients.producer_config(current)["message.timeout.ms"] == message_ms


def test_a_consumer_reads_committed_records_from_the_start_and_commits_no_offsets() -> None:
    config = kafka_clients.consumer_config(settings(), "state")
    assert {key: config[key] for key in CONSUMER_OWN} == {
        "group.id": "cdr-connector-acme-state",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }


CONSUMER_OWN = (
    "group.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.partition.eof",
    "auto.offset.reset",
)
