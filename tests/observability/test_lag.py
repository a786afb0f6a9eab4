"""Lag rises while the connector falls behind the vendor and falls as it catches up.

The simulator makes 40 calls a second visible, each as it ends. The connector reads 20 records
per request, one request at a time. Phases, read from the connector's own /metrics:

1. steady: it keeps up; the backlog at the vendor and the freshness lag are small;
2. slowed: every API request takes 2 s (the simulator's latency fault), so it reads about 10
   records a second of the 40, and 1,500 more records arrive at once: the backlog the API
   reports and the freshness lag both grow;
3. caught up: the latency drops to 50 ms, so it reads several hundred records a second and
   works the backlog off over a few seconds (page by page, seen in several readings); both
   fall back to steady values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from cdr_connector.simulator import SimulatorConfig, running_simulator
from tests.integration.harness import admin_post
from tests.observability.conftest import scrape, start_connector, value_of

SOURCE = "lag"
BACKLOG = "cdr_connector_api_backlog_records"
FRESHNESS = "cdr_connector_freshness_lag_seconds"
NEWEST_END = "cdr_connector_newest_committed_call_end_timestamp_seconds"
RATE = 40.0
PAGE_SIZE = 20
BURST = 1500
SLOW_MS = 2000.0
CATCH_UP_MS = 50.0
# A connector that keeps up: at most a page or two at the vendor and a call or two behind.
STEADY_BACKLOG = 2 * PAGE_SIZE
STEADY_FRESHNESS = 3.0


@dataclass(frozen=True)
class Reading:
    at: float
    backlog: float
    freshness: float
    newest_end: float


class Watcher:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._port = port
        self.readings: list[Reading] = []

    async def read(self) -> Reading | None:
        samples = await scrape(self._session, self._port)
        backlog = value_of(samples, BACKLOG, source=SOURCE)
        freshness = value_of(samples, FRESHNESS, source=SOURCE)
        newest = value_of(samples, NEWEST_END, source=SOURCE)
        if backlog is None or freshness is None or newest is None:
            return None
        reading = Reading(time.time(), backlog, freshness, newest)
        self.readings.append(reading)
        return reading

    async def until(self, what: str, done: Callable[[Reading], bool], timeout: float) -> Reading:
        """Read every 0.25 s until `done(reading)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reading = await self.read()
            if reading is not None and done(reading):
                return reading
            await asyncio.sleep(0.25)
        raise AssertionError(f"not {what} within {timeout}s; last readings {self.readings[-5:]}")


def steady(reading: Reading) -> bool:
    return reading.backlog <= STEADY_BACKLOG and reading.freshness <= STEADY_FRESHNESS


async def test_backlog_and_freshness_rise_while_slowed_and_fall_once_caught_up(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(
        appid="test-appid",
        accesskey="test-accesskey-s3cr3t",
        backlog=0,
        rate=RATE,
        timezone="Asia/Shanghai",
        seed=31,
    )
    async with running_simulator(config) as sim, aiohttp.ClientSession() as session:
        connector = start_connector(
            kafka_bootstrap,
            sim,
            SOURCE,
            tmp_path,
            CDR_POLL__PAGE_SIZE=str(PAGE_SIZE),
            CDR_POLL__CONCURRENCY="1",
            CDR_POLL__INTERVAL_SECONDS="0.2",
        )
        try:
            await connector.wait_ready()
            watcher = Watcher(session, connector.http_port)

            await watcher.until("steady", steady, timeout=30)

            await admin_post(sim.admin_url, "faults", {"latency_ms": SLOW_MS})
            slowed_at = time.time()
            await admin_post(sim.admin_url, "generate", {"count": BURST})
            peak = await watcher.until(
                "behind", lambda r: r.backlog >= BURST and r.freshness >= 6.0, timeout=30
            )
            behind = [r for r in watcher.readings if r.at >= slowed_at]
            # Rising: the freshness lag grew reading after reading while slowed.
            assert behind[-1].freshness > behind[0].freshness + 4.0, behind

            await admin_post(sim.admin_url, "faults", {"latency_ms": CATCH_UP_MS})
            recovered = await watcher.until("caught up", steady, timeout=40)
            assert await connector.stop() == 0
        finally:
            connector.kill()

    assert peak.backlog >= BURST
    assert recovered.backlog <= STEADY_BACKLOG < peak.backlog
    assert recovered.freshness <= STEADY_FRESHNESS < peak.freshness
    # The fall is real progress: newer calls were committed, not a reset of the gauges.
    assert recovered.newest_end > peak.newest_end
    # The backlog fell through intermediate values as pages were committed, not at one stroke.
    falling = [r.backlog for r in watcher.readings if peak.at < r.at < recovered.at]
    assert any(STEADY_BACKLOG < b < peak.backlog for b in falling), falling
