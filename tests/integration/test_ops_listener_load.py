"""The connector's operations port under a crowd of slow clients, the way it fell over in
production: hundreds of connections that send part of a request line and never the rest, at a
file-descriptor limit the crowd alone would exhaust.

While 600 such clients hold their connections, /livez answers every probe within a second, the
slow clients are all closed within the header timeout, the log gains at most a few lines (not
one per failed accept), and /metrics still answers in gzip and in OpenMetrics, with the process
metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from cdr_connector.simulator import running_simulator
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    connector_env,
    free_port,
    simulator_config,
    wait_for_records,
)

SLOW_CLIENTS = 600
ATTACK_SECONDS = 8.0
PROBE_EVERY = 0.25
# The connector's descriptor limit is set to what it uses once running plus this: room for the
# listener's 100 connections (http.max_connections) and for those beyond the limit, which hold
# a descriptor from their accept (up to 128 in one turn of the event loop) until they are
# closed two turns later; not for the crowd.
FD_HEADROOM = 400
PARTIAL_REQUEST_LINE = b"GET /livez HTT"
# Descriptors this test process needs: the crowd, the probes, pytest, Kafka clients.
TEST_PROCESS_FDS = SLOW_CLIENTS + 400


@pytest.fixture(autouse=True)
def enough_descriptors_here() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < TEST_PROCESS_FDS:
        wanted = TEST_PROCESS_FDS if hard == resource.RLIM_INFINITY else min(hard, TEST_PROCESS_FDS)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        assert wanted >= TEST_PROCESS_FDS, f"ulimit -Hn is {hard}: too low for this test"


class SlowCrowd:
    """`size` clients, each sending a partial request line and then nothing, holding its
    connection until the server closes it (as the half-open connections of the incident did)."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._size = size
        self._connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.failed_to_connect = 0

    async def connect(self) -> None:
        slots = asyncio.Semaphore(100)

        async def one() -> None:
            async with slots:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self._port), 5.0
                    )
                except (OSError, TimeoutError):
                    self.failed_to_connect += 1
                    return
                writer.write(PARTIAL_REQUEST_LINE)
                self._connections.append((reader, writer))

        await asyncio.gather(*(one() for _ in range(self._size)))

    async def still_open(self) -> int:
        """How many connections the server has not closed."""

        async def is_open(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(reader.read(), 0.5) != b""
            except TimeoutError:
                return True
            except OSError:  # reset: closed with the partial request line unread
                return False

        return sum(await asyncio.gather(*(is_open(r) for r, _ in self._connections)))

    def close(self) -> None:
        for _, writer in self._connections:
            writer.close()


async def probe(port: int) -> float | str:
    """Seconds /livez took on a new connection, or what went wrong (1 s at most)."""
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=1.0),
                connector=aiohttp.TCPConnector(force_close=True),
            ) as session,
            session.get(f"http://127.0.0.1:{port}/livez") as response,
        ):
            if response.status != 200:
                return f"HTTP {response.status}"
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return time.monotonic() - started


def warnings_and_errors(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            if json.loads(line)["level"] in ("WARNING", "ERROR", "CRITICAL"):
                found.append(line)
                continue
        if not line.startswith("{"):  # anything that is not a JSON line counts too
            found.append(line)
    return found


def limit_descriptors(pid: int) -> None:
    """Lower the soft descriptor limit of `pid` to what it uses plus FD_HEADROOM."""
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + FD_HEADROOM, hard))


async def attack(port: int) -> tuple[list[float | str], int]:
    """The probes' results while the crowd holds its connections, and how many of those the
    server had not closed at the end."""
    crowd = SlowCrowd(port, SLOW_CLIENTS)
    probes: list[float | str] = []
    try:
        await crowd.connect()
        await asyncio.sleep(1.5)  # they hold their connections
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            probes.append(await probe(port))
            await asyncio.sleep(PROBE_EVERY)
        return probes, await crowd.still_open()
    finally:
        crowd.close()


async def negotiated_metrics(port: int) -> tuple[str | None, bytes, str, str]:
    """/metrics asked for gzip (Content-Encoding, the body) and for OpenMetrics (Content-Type,
    the text)."""
    url = f"http://127.0.0.1:{port}/metrics"
    openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            encoding = response.headers.get("Content-Encoding")
            body = await response.read()
        async with session.get(
            url, headers={**openmetrics, "Accept-Encoding": "identity"}
        ) as response:
            return encoding, body, response.headers["Content-Type"], await response.text()


async def test_livez_answers_within_a_second_while_600_slow_clients_hold_the_port(
    kafka_bootstrap: str, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topics = Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))
    async with running_simulator(simulator_config(backlog=50, seed=23)) as sim:
        env = connector_env(kafka_bootstrap, sim.url, topics, source="crowd", http_port=free_port())
        connector = ConnectorProcess(env, tmp_path / "connector.log")
        try:
            await connector.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, 50)
            limit_descriptors(connector.process.pid)
            lines_before = len(connector.output().splitlines())
            probes, left_open = await attack(connector.http_port)
            during = connector.output().splitlines()[lines_before:]
            encoding, body, openmetrics_type, openmetrics = await negotiated_metrics(
                connector.http_port
            )
            assert connector.process.poll() is None, connector.output()
            assert await connector.stop() == 0
        finally:
            connector.kill()

    failed = [p for p in probes if isinstance(p, str) or p >= 1.0]
    assert len(probes) >= ATTACK_SECONDS / (PROBE_EVERY + 1.0)
    assert failed == [], f"{len(failed)} of {len(probes)} probes failed or were slow: {failed[:5]}"
    assert left_open == 0, f"{left_open} slow clients were kept past the header timeout"
    noisy = warnings_and_errors(during)
    assert len(noisy) <= 4, "\n".join(noisy[:10])
    assert encoding == "gzip"
    assert openmetrics_type.startswith("application/openmetrics-text")
    assert openmetrics.endswith("# EOF\n")
    text = gzip.decompress(body).decode()
    resident = [line for line in text.splitlines() if line.startswith("process_resident_memory")]
    assert resident, "process_resident_memory_bytes is not exported"
    assert float(resident[0].split()[1]) > 10_000_000
