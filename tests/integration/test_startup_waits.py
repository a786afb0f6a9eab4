"""Start-up of the connector process when what it needs is not there yet.

The operations listener starts first: a vendor API or a Kafka that cannot be reached keeps the
process alive (/livez 200) and unready (/readyz 503 naming the step it waits for and the last
error), and it carries on by itself once they answer. An operations port already in use is one
clear line and exit 2.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cdr_connector.simulator import running_simulator
from tests.integration.harness import (
    ACCESSKEY,
    ConnectorProcess,
    Topics,
    assert_exactly_once,
    connector_env,
    free_port,
    simulator_config,
    simulator_records,
    wait_for_records,
    wait_until_ok,
)

BACKLOG = 200


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        yield client


async def get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, Any]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.json()


async def wait_alive(session: aiohttp.ClientSession, connector: ConnectorProcess) -> None:
    await wait_until_ok(
        session,
        f"http://127.0.0.1:{connector.http_port}/livez",
        what="connector's /livez",
        process=connector.process,
        output=connector.output,
        timeout=30,
    )


async def wait_for_reason(
    session: aiohttp.ClientSession, connector: ConnectorProcess, *fragments: str
) -> str:
    """Poll /readyz until its 503 reason holds every fragment; /livez must stay 200."""
    deadline = time.monotonic() + 30
    reason = ""
    while time.monotonic() < deadline:
        assert connector.process.poll() is None, f"exited:\n{connector.output()}"
        assert await get(session, connector.http_port, "/livez") == (200, {"status": "alive"})
        status, body = await get(session, connector.http_port, "/readyz")
        assert status == 503, body
        assert body["status"] == "not ready"
        reason = body["reason"]
        if all(fragment in reason for fragment in fragments):
            return reason
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz never said {fragments}; last: {reason!r}")


async def test_a_vendor_outage_at_start_up_is_an_unready_pod_that_starts_once_it_answers(
    kafka_bootstrap: str, topics: Topics, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    vendor_port = free_port()  # nothing listens there yet
    env = connector_env(
        kafka_bootstrap,
        f"http://127.0.0.1:{vendor_port}/",
        topics,
        source="late-vendor",
        http_port=free_port(),
    )
    connector = ConnectorProcess(env, tmp_path / "connector.log")
    try:
        await wait_alive(session, connector)
        reason = await wait_for_reason(
            session, connector, "waiting for the vendor API login", "Cannot connect to host"
        )
        assert reason.startswith("starting: "), reason
        # It stays that way, alive, for as long as the vendor is away.
        await asyncio.sleep(3)
        await wait_for_reason(session, connector, "vendor API login")
        config = simulator_config(port=vendor_port, backlog=BACKLOG, seed=17)
        async with running_simulator(config) as sim:
            await connector.wait_ready(timeout=60)
            messages = await wait_for_records(kafka_bootstrap, topics.data, BACKLOG)
            expected = {record["id"] for record in await simulator_records(sim.admin_url)}
            assert await connector.stop() == 0
    finally:
        connector.kill()
    assert_exactly_once(messages, expected)
    output = connector.output()
    assert "start-up: the vendor API login failed" in output
    assert "Traceback" not in output
    assert ACCESSKEY not in output


async def test_kafka_unreachable_at_start_up_waits_unready_and_a_signal_stops_it(
    topics: Topics, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with running_simulator(simulator_config(backlog=BACKLOG, seed=18)) as sim:
        env = connector_env(
            f"127.0.0.1:{free_port()}",
            sim.url,
            topics,
            source="late-kafka",
            http_port=free_port(),
            CDR_KAFKA__OPERATION_TIMEOUT_SECONDS="2",
        )
        connector = ConnectorProcess(env, tmp_path / "connector.log")
        try:
            await wait_alive(session, connector)
            await wait_for_reason(session, connector, "waiting for Kafka", "cannot reach Kafka")
            stopping = time.monotonic()
            assert await connector.stop() == 0
            assert time.monotonic() - stopping < 10, "a signal must not wait for start-up"
        finally:
            connector.kill()
        records = sim.state.stats()["records"]
    assert records["queried"] == 0, "logging in must not take records from the vendor"
    output = connector.output()
    assert "stopped during start-up" in output
    assert "Traceback" not in output


async def test_an_operations_port_in_use_is_one_clear_line_and_exit_2(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        async with running_simulator(simulator_config(backlog=BACKLOG, seed=19)) as sim:
            env = connector_env(kafka_bootstrap, sim.url, topics, source="port", http_port=port)
            connector = ConnectorProcess(env, tmp_path / "connector.log")
            try:
                code = await connector.wait_exit(60)
            finally:
                connector.kill()
            records = sim.state.stats()["records"]
    output = connector.output()
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert lines[-1].startswith(
        f"cdr-connector: http.host/http.port: cannot listen on 127.0.0.1:{port}: "
    ), output
    assert "choose another http.port" in lines[-1]
    for line in lines[:-1]:
        json.loads(line)  # only the JSON log lines before it
    assert records["queried"] == 0
