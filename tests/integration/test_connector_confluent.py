"""Confluent Schema Registry framing end to end, with confluent-kafka's `mock://` registry.

The mock registry lives inside one process, so the connector runs in the test's process here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from cdr_connector.app import Connector
from cdr_connector.avro import ConfluentEncoder, decode, subject_for
from cdr_connector.config import Settings
from cdr_connector.simulator import SimulatorConfig, running_simulator
from tests.integration.harness import (
    SCHEMA_FILE,
    assert_exactly_once,
    free_port,
    header,
    simulator_records,
    wait_for_records,
)
from tests.kafka_helpers import consume_all


async def test_confluent_framing_with_a_registry(
    kafka_bootstrap: str, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_topic("cdr")
    config = SimulatorConfig(appid="a", accesskey="k", backlog=500, rate=0.0, backlog_span=3600.0)
    async with running_simulator(config) as sim:
        settings = Settings(
            source={"name": "confluent", "api_url": sim.url, "appid": "a", "accesskey": "k"},
            kafka={
                "bootstrap_servers": kafka_bootstrap,
                "topic": topic,
                "dead_letter_topic": unique_topic("dlq"),
                "state_topic": unique_topic("state"),
                "create_topics": True,
                "replication_factor": 1,
                "partitions": 2,
            },
            avro={"schema_registry_url": "mock://cdr-connector-test"},
            http={"host": "127.0.0.1", "port": free_port()},
            poll={"interval_seconds": 0.5},
        )
        connector = Connector(settings)
        task = asyncio.create_task(connector.run())
        try:
            await wait_for_records(kafka_bootstrap, topic, 500)
        finally:
            assert connector.pipeline is not None
            connector.pipeline.request_stop()
            assert await asyncio.wait_for(task, 30) == 0
        expected = {bill["id"] for bill in await simulator_records(sim.admin_url)}
    encoder = connector.encoder
    assert isinstance(encoder, ConfluentEncoder)
    registered = encoder.registry.get_latest_version(subject_for(topic))
    assert json.loads(registered.schema.schema_str) == json.loads(SCHEMA_FILE.read_text())
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topic)
    assert_exactly_once(messages, expected)
    for message in messages:
        value = message.value()
        assert value[0] == 0
        assert int.from_bytes(value[1:5], "big") == registered.schema_id
        assert header(message, "cdr.schema") == f"id:{registered.schema_id}"
        record = decode(value, encoder.registry)
        assert record["id"] == int(header(message, "cdr.id") or -1)
        assert record["source"] == "confluent"
