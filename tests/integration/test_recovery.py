"""Completeness beyond the live stream: the audit of closed hours, and backfill."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from confluent_kafka import Message

from cdr_connector.avro import decode
from cdr_connector.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    assert_exactly_once,
    connector_env,
    free_port,
    header,
    metric_total,
    metrics_text,
    simulator_config,
    simulator_records,
    wait_for_records,
)
from tests.kafka_helpers import consume_all

ZONE = "Asia/Shanghai"
# Sweeps see only the last minute of dial time here, so older records taken by another reader
# can come back only through the audit or a backfill.
NARROW_SWEEPS = {
    "CDR_POLL__SWEEP_WINDOW_SECONDS": "60",
    "CDR_POLL__SWEEP_INTERVAL_SECONDS": "3600",
    "CDR_POLL__LOOKBACK_SECONDS": "21600",
}


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))


def connector(
    bootstrap: str, sim: RunningSimulator, topics: Topics, log: Path, *command: str, **extra: str
) -> ConnectorProcess:
    env = connector_env(bootstrap, sim.url, topics, source="recovery", http_port=free_port())
    env.update(NARROW_SWEEPS)
    env.update(extra)
    return ConnectorProcess(env, log, command or ("run",))


def fetch_modes(messages: list[Message]) -> dict[str, int]:
    modes: dict[str, int] = {}
    for message in messages:
        mode = decode(message.value() or b"")["fetch_mode"]
        modes[mode] = modes.get(mode, 0) + 1
    return modes


async def take_records(sim: RunningSimulator, at_least: int) -> None:
    """Let the simulator's competing reader take records, then stop it."""
    await admin_post(sim.admin_url, "faults", {"competitor_interval": 0.05, "competitor_batch": 50})
    while sim.state.stats()["records"]["taken_by_competitor"] < at_least:
        await asyncio.sleep(0.05)
    await admin_post(sim.admin_url, "faults", {"competitor_interval": 0})


async def test_the_audit_finds_records_another_reader_took_in_closed_hours(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = simulator_config(backlog=2000, seed=21, backlog_span=3 * 3600.0)
    async with running_simulator(config) as sim:
        await take_records(sim, 300)
        taken = sim.state.stats()["records"]["taken_by_competitor"]
        process = connector(
            kafka_bootstrap, sim, topics, tmp_path / "audit.log",
            CDR_POLL__AUDIT_INTERVAL_SECONDS="2", CDR_POLL__AUDIT_SETTLE_SECONDS="1",
        )  # fmt: skip
        try:
            await process.wait_ready()
            expected = {bill["id"] for bill in await simulator_records(sim.admin_url)}
            await wait_for_records(kafka_bootstrap, topics.data, len(expected), timeout=120)
            await asyncio.sleep(2)  # one more audit: it must find nothing left to publish
            assert await process.stop() == 0
        finally:
            process.kill()
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, expected)
    modes = fetch_modes(messages)
    assert modes.get("audit") == taken, modes
    assert '"event":"audit_gap"' in process.output().replace(" ", "")


async def test_a_bill_without_an_id_is_dead_lettered_once_however_often_it_is_listed(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """The live stream dead-letters it and sweeps every 2 s list it again; no committed id can
    say it is done, its content does. Audits every 2 s count its closed hour as complete."""
    config = simulator_config(backlog=300, seed=23, backlog_span=3 * 3600.0)
    async with running_simulator(config) as sim:
        good = {bill["id"] for bill in await simulator_records(sim.admin_url)}
        dialled = datetime.now(ZoneInfo(ZONE)).replace(tzinfo=None) - timedelta(hours=2, minutes=30)
        no_id = {"id": "x-1", **without_id_bill(dialled)}
        await admin_post(sim.admin_url, "inject", [no_id])
        process = connector(
            kafka_bootstrap, sim, topics, tmp_path / "no-id.log",
            CDR_POLL__SWEEP_WINDOW_SECONDS="21600", CDR_POLL__SWEEP_INTERVAL_SECONDS="2",
            CDR_POLL__AUDIT_INTERVAL_SECONDS="2", CDR_POLL__AUDIT_SETTLE_SECONDS="1",
        )  # fmt: skip
        try:
            await process.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, len(good), timeout=120)
            await wait_for_records(kafka_bootstrap, topics.dead_letter, 1, timeout=60)
            listed = await listings_after(process, sweeps=3, audits=3)
            assert await process.stop() == 0
        finally:
            process.kill()
    assert_exactly_once(await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data), good)
    [letter] = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.dead_letter)
    assert orjson.loads(letter.value() or b"") == no_id
    assert header(letter, "cdr.field") == "id"
    assert header(letter, "cdr.fetch_mode") == "live"
    # its hour counts it: the audits find nothing missing
    assert "cdr_connector_audit_missing_records{" in listed
    assert metric_total(listed, "cdr_connector_audit_missing_records") == 0


def without_id_bill(dialled: datetime) -> dict[str, Any]:
    """A well-formed bill but for its id: an unanswered call dialled at `dialled`."""

    def local(at: datetime) -> str:
        return at.strftime("%Y-%m-%d %H:%M:%S")

    return {
        "extnumber": "8001", "destnumber": "13800000000", "displaynumber": "2190170001",
        "starttime": local(dialled), "answertime": None,
        "endtime": local(dialled + timedelta(seconds=30)), "duration": 30, "billsec": 0,
        "direction": "callout", "callmethod": 3, "userid": "0", "memberid": "0",
        "chengshudu": "0", "customuuid": "0", "recordfilename": "", "downloadip": "",
        "hangupdirection": 10041, "hangupcause": 10020, "userkey": "",
    }  # fmt: skip


async def listings_after(process: ConnectorProcess, *, sweeps: int, audits: int) -> str:
    """Wait until `sweeps` more sweeps and `audits` more audits have run; /metrics then."""

    def swept(text: str) -> float:
        return metric_total(text, "cdr_connector_poll_cycle_duration_seconds_count", 'mode="sweep"')

    def last_audit(text: str) -> float:
        return metric_total(text, "cdr_connector_audit_last_run_timestamp_seconds")

    first = text = await metrics_text(process)
    audit_times = {last_audit(first)}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        text = await metrics_text(process)
        audit_times.add(last_audit(text))
        if swept(text) >= swept(first) + sweeps and len(audit_times) > audits:
            return text
    raise AssertionError(f"60 s without {sweeps} sweeps and {audits} audits:\n{text}")


async def test_backfill_publishes_a_window_others_consumed_once_even_when_run_twice(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = simulator_config(backlog=1500, rate=20.0, seed=22, backlog_span=2 * 3600.0)
    async with running_simulator(config) as sim:
        await take_records(sim, 1500)  # another client took every record of the backlog
        now = datetime.now(ZoneInfo(ZONE)).replace(tzinfo=None)
        window = (
            "--from", (now - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S"),
            "--to", (now + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"),
            "--slice-seconds", "1800",
        )  # fmt: skip
        for run in ("first", "second"):
            process = connector(
                kafka_bootstrap, sim, topics, tmp_path / f"{run}.log", "backfill", *window
            )
            try:
                assert await process.wait_exit(120) == 0, process.output()
            finally:
                process.kill()
            assert "backfill" in process.output()
        await admin_post(sim.admin_url, "pause", {})
        live = connector(kafka_bootstrap, sim, topics, tmp_path / "live.log")
        try:
            await live.wait_ready()
            expected = {bill["id"] for bill in await simulator_records(sim.admin_url)}
            await wait_for_records(kafka_bootstrap, topics.data, len(expected))
            await asyncio.sleep(1)
            assert await live.stop() == 0
        finally:
            live.kill()
    messages = await asyncio.to_thread(consume_all, kafka_bootstrap, topics.data)
    assert_exactly_once(messages, expected)
    modes = fetch_modes(messages)
    # The start-up sweep (a 60 s window here) may publish the newest few of the taken records
    # before the backfill reaches them; a 2-hour backlog of 1500 holds about 13 in a minute.
    assert modes.get("backfill", 0) + modes.get("sweep", 0) >= 1500, modes
    assert modes.get("backfill", 0) >= 1500 - 20, modes


async def test_backfill_rejects_a_window_that_ends_before_it_starts(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    async with running_simulator(SimulatorConfig(backlog=0, rate=0.0)) as sim:
        process = connector(
            kafka_bootstrap, sim, topics, tmp_path / "bad.log",
            "backfill", "--from", "2026-01-02 00:00:00", "--to", "2026-01-01 00:00:00",
        )  # fmt: skip
        try:
            assert await process.wait_exit(30) == 2
        finally:
            process.kill()
    assert "--to '2026-01-01 00:00:00' is before --from" in process.output()
    assert "Traceback" not in process.output()
