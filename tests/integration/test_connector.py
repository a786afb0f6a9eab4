"""The connector end to end: the real simulator, the real broker, the connector as a process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka.admin import AdminClient

from cdr_connector.simulator import (
    FaultConfig,
    RunningSimulator,
    running_simulator,
)
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    assert_exactly_once,
    assert_extension_order,
    connector_env,
    decode_single_object,
    free_port,
    header,
    load_schema,
    simulator_config,
    simulator_records,
    wait_for_records,
)
from tests.kafka_helpers import consume_all

ZONE = "Asia/Shanghai"
TEXT_FIELDS = (
    "extnumber",
    "destnumber",
    "displaynumber",
    "direction",
    "userid",
    "memberid",
    "chengshudu",
    "customuuid",
    "recordfilename",
    "downloadip",
    "userkey",
)
INT_FIELDS = ("id", "duration", "billsec", "callmethod", "hangupdirection", "hangupcause")


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    config = simulator_config(backlog=3000, seed=11)
    async with running_simulator(config) as sim:
        yield sim


def start_connector(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    topics: Topics,
    tmp_path: Path,
    *,
    source: str = "it",
    name: str = "connector",
    **extra: str,
) -> ConnectorProcess:
    settings = {"CDR_POLL__PAGE_SIZE": "200", "CDR_POLL__CONCURRENCY": "4", **extra}
    env = connector_env(
        kafka_bootstrap, sim.url, topics, source=source, http_port=free_port(), **settings
    )
    return ConnectorProcess(env, tmp_path / f"{name}.log")


def to_utc_ms(local: str | None) -> int | None:
    if local is None:
        return None
    naive = datetime.strptime(local, "%Y-%m-%d %H:%M:%S")
    return int(naive.replace(tzinfo=ZoneInfo(ZONE)).timestamp() * 1000)


def assert_record_matches(bill: dict[str, Any], record: dict[str, Any], message: Any) -> None:
    for name in TEXT_FIELDS + INT_FIELDS:
        assert record[name] == bill[name], (name, bill["id"])
    for name in ("starttime", "answertime", "endtime"):
        expected = to_utc_ms(bill[name])
        actual = record[name]
        if isinstance(actual, datetime):
            actual = int(actual.timestamp() * 1000)
        assert actual == expected, (name, bill["id"])
    assert record["source"] == "it"
    assert record["pbx_timezone"] == ZONE
    assert record["fetch_mode"] in {"live", "sweep"}
    assert record["extra_fields"] == {}
    expected_key = bill["extnumber"] or bill["displaynumber"]
    assert message.key() == expected_key.encode()
    assert message.timestamp()[1] == to_utc_ms(bill["endtime"])
    assert header(message, "cdr.source") == "it"
    assert (header(message, "cdr.schema") or "").startswith("fp:")


async def test_backlog_and_live_records_arrive_exactly_once_with_every_field_right(
    kafka_bootstrap: str, simulator: RunningSimulator, topics: Topics, tmp_path: Path
) -> None:
    connector = start_connector(kafka_bootstrap, simulator, topics, tmp_path)
    try:
        await connector.wait_ready()
        await wait_for_records(kafka_bootstrap, topics.data, 3000)
        await admin_post(simulator.admin_url, "generate", {"count": 700})
        await wait_for_records(kafka_bootstrap, topics.data, 3700)
        assert await connector.stop() == 0
    finally:
        connector.kill()
    bills = {bill["id"]: bill for bill in await simulator_records(simulator.admin_url)}
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, set(bills))
    assert_extension_order(messages)
    schema = load_schema()
    for message in messages:
        record = decode_single_object(message.value(), schema)
        assert_record_matches(bills[record["id"]], record, message)
    assert '"event": "commit"' in connector.output() or '"event":"commit"' in connector.output()


async def test_faults_racing_token_expiry_and_a_poison_record(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = simulator_config(
        backlog=2000,
        rate=40.0,
        seed=5,
        token_ttl=2.0,
        faults=FaultConfig(racing=True, race_delay_ms=20.0, http_5xx_rate=0.15, ret_500_rate=0.15),
    )
    async with running_simulator(config) as sim:
        connector = start_connector(kafka_bootstrap, sim, topics, tmp_path)
        try:
            await connector.wait_ready()
            poison = await admin_post(
                sim.admin_url,
                "inject",
                {"extnumber": "8001", "starttime": "2024-02-30 10:00:00"},
            )
            await asyncio.sleep(4)  # live traffic, several token expiries, racing reads
            await admin_post(sim.admin_url, "pause", {})
            bills = await simulator_records(sim.admin_url)
            good = {b["id"] for b in bills} - set(poison["ids"])
            await wait_for_records(kafka_bootstrap, topics.data, len(good), timeout=120)
            await asyncio.sleep(1)  # a duplicate would arrive after the count was reached
            assert await connector.stop() == 0
        finally:
            connector.kill()
        stats = sim.state.stats()
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, good)
    dead = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.dead_letter)
    assert [header(m, "cdr.id") for m in dead] == [str(i) for i in poison["ids"]]
    assert header(dead[0], "cdr.stage") == "normalise"
    assert "starttime" in (header(dead[0], "cdr.error") or "")
    assert b"2024-02-30 10:00:00" in dead[0].value()
    output = connector.output()
    assert "test-accesskey-s3cr3t" not in output
    assert stats["faults"].get("http_5xx") and stats["faults"].get("ret_500"), stats


async def test_sigterm_mid_backlog_then_restart_loses_and_repeats_nothing(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = simulator_config(
        backlog=20000,
        seed=3,
        faults=FaultConfig(latency_ms=100.0),
    )
    async with running_simulator(config) as sim:
        first = start_connector(
            kafka_bootstrap, sim, topics, tmp_path, name="first", CDR_POLL__PAGE_SIZE="100"
        )
        try:
            await first.wait_ready()
            while sim.state.stats()["records"]["queried"] < 2000:
                await asyncio.sleep(0.02)
            first.signal(signal.SIGTERM)
            assert await first.wait_exit(30) == 0
        finally:
            first.kill()
        partial = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
        assert 2000 <= len(partial) < 20000, "the stop must come mid-backlog"
        second = start_connector(kafka_bootstrap, sim, topics, tmp_path, name="second")
        try:
            await second.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, 20000, timeout=120)
            await asyncio.sleep(1)
            assert await second.stop() == 0
        finally:
            second.kill()
        expected = {b["id"] for b in await simulator_records(sim.admin_url)}
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, expected)
    assert_extension_order(messages)
    assert "stopped cleanly" in first.output()


async def test_a_second_instance_fences_the_first_which_exits_with_a_clear_message(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = simulator_config(backlog=500, rate=50.0, seed=9)
    async with running_simulator(config) as sim:
        older = start_connector(kafka_bootstrap, sim, topics, tmp_path, name="older")
        newer: ConnectorProcess | None = None
        try:
            await older.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, 500)
            newer = start_connector(kafka_bootstrap, sim, topics, tmp_path, name="newer")
            await newer.wait_ready()
            assert await older.wait_exit(60) == 1
            assert "fenced" in older.output().lower()
            assert "Another instance with the same transactional.id" in older.output()
            await asyncio.sleep(2)
            await admin_post(sim.admin_url, "pause", {})
            expected = {b["id"] for b in await simulator_records(sim.admin_url)}
            await wait_for_records(kafka_bootstrap, topics.data, len(expected))
            await asyncio.sleep(1)
            assert await newer.stop() == 0
        finally:
            older.kill()
            if newer is not None:
                newer.kill()
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, expected)


async def test_missing_topic_with_creation_off_is_a_clear_error_and_nothing_is_fetched(
    kafka_bootstrap: str,
    simulator: RunningSimulator,
    topics: Topics,
    tmp_path: Path,
    admin: AdminClient,
) -> None:
    connector = start_connector(
        kafka_bootstrap, simulator, topics, tmp_path, CDR_KAFKA__CREATE_TOPICS="false"
    )
    try:
        assert await connector.wait_exit(60) == 1
    finally:
        connector.kill()
    assert "kafka.create_topics is false" in connector.output()
    assert topics.data not in admin.list_topics(timeout=10).topics
    assert simulator.state.stats()["records"]["unqueried"] == 3000
