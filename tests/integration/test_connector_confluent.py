"""Confluent Schema Registry framing end to end: the connector as a process, the real simulator,
the real broker and a real registry (Apicurio Registry's Confluent API, deploy/dev/registry.sh).

What is checked is what a downstream consumer and a registry administrator see: values that
confluent-kafka's own `AvroDeserializer` reads, subjects the connector registers or only looks
up, and the registry's compatibility rule refusing a breaking schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cdr_connector.simulator import RunningSimulator, running_simulator
from tests.integration.harness import (
    SCHEMA_FILE,
    ConnectorProcess,
    Topics,
    assert_exactly_once,
    connector_env,
    free_port,
    header,
    simulator_config,
    simulator_records,
    wait_for_records,
)
from tests.kafka_helpers import consume_all

BACKLOG = 300
SOURCE = "confluent"


@dataclass(frozen=True)
class Stack:
    """The broker, the registry and the simulator of one test, with fresh topics."""

    bootstrap: str
    registry_url: str
    registry: SchemaRegistryClient
    sim: RunningSimulator
    topics: Topics
    log_dir: Path

    @property
    def subject(self) -> str:
        return f"{self.topics.data}-value"

    def start_connector(self, **extra: str) -> ConnectorProcess:
        env = connector_env(
            self.bootstrap,
            self.sim.url,
            self.topics,
            source=SOURCE,
            http_port=free_port(),
            CDR_AVRO__SCHEMA_REGISTRY_URL=self.registry_url,
            **extra,
        )
        return ConnectorProcess(env, self.log_dir / "connector.log")

    def registered_by_an_admin(self, text: str) -> int:
        return self.registry.register_schema(self.subject, Schema(text, "AVRO"))


@pytest.fixture
async def stack(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    topics = Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))
    registry = SchemaRegistryClient({"url": schema_registry_url})
    async with running_simulator(simulator_config(backlog=BACKLOG, seed=20)) as sim:
        yield Stack(kafka_bootstrap, schema_registry_url, registry, sim, topics, tmp_path)


async def publish_backlog(stack: Stack, connector: ConnectorProcess) -> None:
    """Wait for the simulator's backlog in the topic, then stop the connector cleanly."""
    try:
        await wait_for_records(stack.bootstrap, stack.topics.data, BACKLOG)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{connector.output()}") from None
    finally:
        exit_status = await connector.stop()
    assert exit_status == 0, connector.output()


async def refusal(connector: ConnectorProcess) -> str:
    """The connector's output once it has stopped at start-up with exit status 1."""
    exit_status = await connector.wait_exit()
    output = connector.output()
    assert exit_status == 1, output
    return output


def deserialize_all(
    messages: list[Message], registry: SchemaRegistryClient, topic: str
) -> list[dict[str, Any]]:
    """Values as confluent-kafka's own deserializer reads them, through the registry."""
    deserializer = AvroDeserializer(registry)
    context = SerializationContext(topic, MessageField.VALUE)
    return [deserializer(message.value(), context) for message in messages]


async def assert_consumers_read_every_record(stack: Stack, schema_id: int) -> None:
    """Every simulator record, once, framed with `schema_id`, decodes field for field."""
    bills = {int(bill["id"]): bill for bill in await simulator_records(stack.sim.admin_url)}
    topic = stack.topics.data
    messages = await asyncio.to_thread(consume_all, stack.bootstrap, topic)
    assert_exactly_once(messages, set(bills))
    records = deserialize_all(messages, stack.registry, topic)
    for message, record in zip(messages, records, strict=True):
        assert message.value()[:5] == b"\x00" + schema_id.to_bytes(4, "big")
        assert header(message, "cdr.schema") == f"id:{schema_id}"
        bill = bills[record["id"]]
        assert record["id"] == int(header(message, "cdr.id") or -1)
        assert (record["extnumber"], record["billsec"]) == (bill["extnumber"], int(bill["billsec"]))
        assert record["source"] == SOURCE
        assert record["starttime"].tzinfo is not None  # timestamp-millis, as the schema says


async def test_values_decode_with_confluents_avro_deserializer(stack: Stack) -> None:
    await publish_backlog(stack, stack.start_connector())

    latest = stack.registry.get_latest_version(stack.subject)
    assert json.loads(latest.schema.schema_str or "") == json.loads(SCHEMA_FILE.read_text())
    assert latest.schema_id is not None
    await assert_consumers_read_every_record(stack, latest.schema_id)


@pytest.mark.parametrize("use_latest_version", ["false", "true"])
async def test_lookup_only_publishes_under_the_id_an_admin_registered(
    stack: Stack, use_latest_version: str
) -> None:
    schema_id = stack.registered_by_an_admin(SCHEMA_FILE.read_text())

    connector = stack.start_connector(
        CDR_AVRO__AUTO_REGISTER_SCHEMAS="false", CDR_AVRO__USE_LATEST_VERSION=use_latest_version
    )
    await publish_backlog(stack, connector)

    assert stack.registry.get_versions(stack.subject) == [1]
    await assert_consumers_read_every_record(stack, schema_id)


async def test_lookup_only_stops_clearly_when_the_subject_is_missing(stack: Stack) -> None:
    connector = stack.start_connector(CDR_AVRO__AUTO_REGISTER_SCHEMAS="false")

    output = await refusal(connector)

    assert (
        f"cdr-connector: cannot look up subject {stack.subject!r}: it has no version with "
        "this connector's schema"
    ) in output
    assert "avro.auto_register_schemas is false" in output
    assert stack.subject not in stack.registry.get_subjects()


def breaking_change() -> str:
    """Our schema as it would have been with a string `id`: a long cannot read a string, so
    under BACKWARD our schema may not follow it."""
    schema = json.loads(SCHEMA_FILE.read_text())
    for field in schema["fields"]:
        if field["name"] == "id":
            field["type"] = "string"
    return json.dumps(schema)


async def test_an_incompatible_schema_is_refused_by_the_backward_rule(stack: Stack) -> None:
    stack.registered_by_an_admin(breaking_change())
    stack.registry.set_compatibility(stack.subject, "BACKWARD")

    output = await refusal(stack.start_connector())

    assert (
        f"cdr-connector: cannot register subject {stack.subject!r}: the schema is "
        "incompatible with the subject's latest version under its BACKWARD compatibility rule"
    ) in output
    assert "schemas/README.md" in output
    assert stack.registry.get_versions(stack.subject) == [1]
