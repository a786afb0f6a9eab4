"""The operator commands: check, schema, tail."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from cdr_connector.__main__ import main
from cdr_connector.app import Connector
from cdr_connector.checks import run_checks
from cdr_connector.config import Settings
from cdr_connector.errors import TopicMissingError
from cdr_connector.simulator import RunningSimulator, SimulatorConfig, running_simulator
from cdr_connector.tail import tail
from cdr_connector.topics import ensure_topics
from tests.integration.harness import SCHEMA_FILE, admin_post, free_port, wait_for_records
from tests.kafka_helpers import create_topics


def make_settings(
    sim: RunningSimulator, bootstrap: str, topic: Callable[[str], str], **source: Any
) -> Settings:
    return Settings(
        source={"name": "cli", "api_url": sim.url, "appid": "a", "accesskey": "k", **source},
        kafka={
            "bootstrap_servers": bootstrap,
            "topic": topic("cdr"),
            "dead_letter_topic": topic("dlq"),
            "state_topic": topic("state"),
            "create_topics": True,
            "replication_factor": 1,
            "partitions": 1,
            "operation_timeout_seconds": 3,
        },
        http={"host": "127.0.0.1", "port": free_port()},
        poll={"interval_seconds": 0.3, "max_attempts": 1},
    )


@pytest.fixture
async def sim() -> Any:
    config = SimulatorConfig(appid="a", accesskey="k", backlog=40, rate=0.0, backlog_span=3600.0)
    async with running_simulator(config) as running:
        yield running


def test_schema_prints_the_schema_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(SCHEMA_FILE.read_text())


async def test_check_passes_with_a_line_per_check(
    sim: RunningSimulator, kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    lines: list[str] = []
    assert (
        await run_checks(make_settings(sim, kafka_bootstrap, unique_topic), out=lines.append) == 0
    )
    assert [line.split(":")[0] for line in lines] == [
        "ok   vendor API login",
        "ok   Kafka and topics",
        "ok   Avro encoder",
    ]
    assert "will be created" in lines[1]
    assert sim.state.stats()["records"]["unqueried"] == 40, "check must not consume records"


async def test_check_and_start_up_agree_on_which_topics_are_missing(
    sim: RunningSimulator,
    kafka_bootstrap: str,
    admin: AdminClient,
    unique_topic: Callable[[str], str],
) -> None:
    allowed = make_settings(sim, kafka_bootstrap, unique_topic)
    refused = allowed.model_copy(
        update={"kafka": allowed.kafka.model_copy(update={"create_topics": False})}
    )
    kafka = allowed.kafka
    create_topics(admin, [kafka.topic])
    lines: list[str] = []
    assert await run_checks(allowed, out=lines.append) == 0
    assert lines[1].endswith(f"; {kafka.dead_letter_topic}, {kafka.state_topic} will be created")

    with pytest.raises(TopicMissingError) as start_up:
        await asyncio.to_thread(ensure_topics, refused)
    lines.clear()
    assert await run_checks(refused, out=lines.append) == 1
    assert lines[1] == f"FAIL Kafka and topics: {start_up.value}"
    assert f"topic(s) {kafka.dead_letter_topic}, {kafka.state_topic} do not exist" in lines[1]

    await asyncio.to_thread(ensure_topics, allowed)
    lines.clear()
    assert await run_checks(refused, out=lines.append) == 0
    wanted = f"{kafka.topic}, {kafka.dead_letter_topic}, {kafka.state_topic}"
    assert lines[1] == f"ok   Kafka and topics: reached {kafka_bootstrap}, topics {wanted}"


async def test_check_fails_naming_what_to_fix(
    sim: RunningSimulator, unique_topic: Callable[[str], str]
) -> None:
    settings = make_settings(sim, f"127.0.0.1:{free_port()}", unique_topic, accesskey="wrong")
    lines: list[str] = []
    assert await run_checks(settings, out=lines.append) == 1
    assert lines[0].startswith("FAIL vendor API login")
    assert "check source.appid and source.accesskey" in lines[0]
    assert lines[1].startswith("FAIL Kafka and topics: cannot reach Kafka")
    assert "wrong" not in "\n".join(lines)


async def test_tail_prints_committed_records_and_dead_letters_as_json_lines(
    sim: RunningSimulator, kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    await admin_post(sim.admin_url, "inject", {"extnumber": "8001", "starttime": "bad"})
    settings = make_settings(sim, kafka_bootstrap, unique_topic)
    connector = Connector(settings)
    task = asyncio.create_task(connector.run())
    try:
        await wait_for_records(kafka_bootstrap, settings.kafka.topic, 40)
    finally:
        if connector.pipeline is not None:
            connector.pipeline.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
    out = io.StringIO()
    await asyncio.to_thread(
        tail, settings, from_beginning=True, max_records=40, idle_exit_seconds=20, out=out
    )
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(1, 41))
    assert all(r["source"] == "cli" for r in records)
    dead = io.StringIO()
    await asyncio.to_thread(
        tail, settings, from_beginning=True, max_records=1, idle_exit_seconds=20,
        dead_letters=True, out=dead,
    )  # fmt: skip
    letter = json.loads(dead.getvalue())
    assert letter["headers"]["cdr.stage"] == "normalise"
    assert json.loads(letter["value"])["starttime"] == "bad"
