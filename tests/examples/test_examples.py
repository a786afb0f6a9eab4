"""The downstream examples (examples/) read the connector's topic: the Kafka Streams
application and the Python `DeserializingConsumer` each report calls and billed seconds per
extension per hour, and both reports must equal the totals computed from the simulator's own
records (its bills, with PBX-local dial times)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from cdr_connector.simulator import running_simulator
from tests.integration.harness import (
    PBX_ZONE,
    REPO_ROOT,
    ConnectorProcess,
    Topics,
    connector_env,
    free_port,
    simulator_config,
    simulator_records,
    wait_for_records,
)
from tests.kafka_helpers import consume_all, create_topics, unique_name

PYTHON_EXAMPLE = REPO_ROOT / "examples" / "python" / "cdr_totals.py"
BACKLOG = 1500
BACKLOG_SPAN = 3 * 3600.0  # dial times over several hours, so the hours are told apart
RUN_TIMEOUT = 180.0


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))


def simulator_totals(bills: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report the examples must print, from the bills as the vendor API renders them."""
    calls: Counter[tuple[str, str]] = Counter()
    billsec: Counter[tuple[str, str]] = Counter()
    for bill in bills:
        dialled = datetime.strptime(bill["starttime"], "%Y-%m-%d %H:%M:%S")
        hour = dialled.replace(tzinfo=ZoneInfo(PBX_ZONE)).astimezone(UTC)
        key = (bill["extnumber"], hour.strftime("%Y-%m-%dT%H:00:00Z"))
        calls[key] += 1
        billsec[key] += bill["billsec"]
    rows = [
        {"extension": e, "hour": h, "calls": calls[e, h], "billsec": billsec[e, h]}
        for e, h in sorted(calls)
    ]
    return {"records": len(bills), "totals": rows}


async def publish_simulator_backlog(
    kafka_bootstrap: str, topics: Topics, log: Path, **settings: str
) -> dict[str, Any]:
    """Run the connector until the simulator's backlog is on `topics.data`; return the totals
    of the simulator's records."""
    async with running_simulator(
        simulator_config(backlog=BACKLOG, seed=29, backlog_span=BACKLOG_SPAN)
    ) as sim:
        env = connector_env(
            kafka_bootstrap, sim.url, topics, source="examples", http_port=free_port(), **settings
        )
        connector = ConnectorProcess(env, log)
        try:
            await connector.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, BACKLOG)
            assert await connector.stop() == 0, connector.output()
        finally:
            connector.kill()
        bills = await simulator_records(sim.admin_url)
    assert len(bills) == BACKLOG
    return simulator_totals(bills)


async def run_example(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        list(command),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def report_of(command: Sequence[str]) -> Any:
    result = await run_example(command)
    assert result.returncode == 0, f"{command[-1]} exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def streams_command(streams_app: list[str], bootstrap: str, topic: str) -> list[str]:
    return [
        *streams_app,
        *("--bootstrap-servers", bootstrap, "--topic", topic),
        *("--application-id", unique_name("streams-totals"), "--timeout-seconds", "120"),
    ]


def python_command(bootstrap: str, topic: str) -> list[str]:
    return [sys.executable, str(PYTHON_EXAMPLE), "--bootstrap-servers", bootstrap, "--topic", topic]


@dataclass(frozen=True)
class Framing:
    magic: bytes
    """What every value on the topic starts with."""
    connector_settings: dict[str, str]
    example_options: list[str]


@pytest.fixture(params=["single-object", "confluent"])
def framing(request: pytest.FixtureRequest) -> Framing:
    """How the connector writes values, and what the examples are told to read them; the
    registry is started for the Confluent framing only."""
    if request.param == "single-object":
        return Framing(b"\xc3\x01", {}, [])
    registry: str = request.getfixturevalue("schema_registry_url")
    return Framing(
        b"\x00", {"CDR_AVRO__SCHEMA_REGISTRY_URL": registry}, ["--registry-url", registry]
    )


async def test_both_examples_total_the_records_as_the_simulator_does(
    kafka_bootstrap: str, streams_app: list[str], topics: Topics, framing: Framing, tmp_path: Path
) -> None:
    expected = await publish_simulator_backlog(
        kafka_bootstrap, topics, tmp_path / "connector.log", **framing.connector_settings
    )
    extensions = {row["extension"] for row in expected["totals"]}
    hours = {row["hour"] for row in expected["totals"]}
    assert len(extensions) > 1 and len(hours) > 1, "the data must tell keys apart"
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert all(m.value().startswith(framing.magic) for m in messages)

    streams = streams_command(streams_app, kafka_bootstrap, topics.data)
    assert await report_of([*streams, *framing.example_options]) == expected
    python = python_command(kafka_bootstrap, topics.data)
    assert await report_of([*python, *framing.example_options]) == expected


CONFLUENT_FRAMED = b"\x00\x00\x00\x00\x07\x02"  # schema id 7, then a body
UNREGISTERED = b"\x00\x7f\xff\xff\xff\x02"  # schema id 2**31 - 1, which no registry has given
OTHER_SCHEMA = b"\xc3\x01" + bytes(8) + b"\x02"  # single-object, another schema's fingerprint


@dataclass(frozen=True)
class Unreadable:
    value: bytes
    with_registry: bool
    reason: str
    """What the last line on stderr must say."""


@pytest.mark.parametrize(
    "case",
    [
        Unreadable(b'{"id": 1}', False, "neither Avro single-object encoding"),
        Unreadable(CONFLUENT_FRAMED, False, "pass --registry-url"),
        Unreadable(UNREGISTERED, True, "2147483647"),
        Unreadable(OTHER_SCHEMA, False, "fingerprint"),
    ],
    ids=["json", "confluent-without-registry", "unknown-schema-id", "other-fingerprint"],
)
async def test_both_examples_say_why_a_value_cannot_be_read(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    admin: AdminClient,
    streams_app: list[str],
    case: Unreadable,
) -> None:
    topic = unique_name("foreign")
    create_topics(admin, [topic])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, case.value, key=b"8001")
    assert producer.flush(30) == 0
    options = []
    if case.with_registry:
        options = ["--registry-url", request.getfixturevalue("schema_registry_url")]

    for command in (
        streams_command(streams_app, kafka_bootstrap, topic),
        python_command(kafka_bootstrap, topic),
    ):
        result = await run_example([*command, *options])
        assert result.returncode == 1, (command[-1], result.stdout, result.stderr)
        assert case.reason in result.stderr.splitlines()[-1], result.stderr
        assert result.stdout == ""


async def test_both_examples_say_when_the_topic_does_not_exist(
    kafka_bootstrap: str, admin: AdminClient, streams_app: list[str]
) -> None:
    topic = unique_name("missing")
    for command in (
        streams_command(streams_app, kafka_bootstrap, topic),
        python_command(kafka_bootstrap, topic),
    ):
        result = await run_example(command)
        assert result.returncode == 1, (command[-1], result.stdout, result.stderr)
        assert f"topic {topic}" in result.stderr, result.stderr
    assert topic not in admin.list_topics(timeout=10).topics, "reading must not create it"
