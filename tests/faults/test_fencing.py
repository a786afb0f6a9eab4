"""Scenario 7: a second instance for the same source starts while the first is draining a
backlog. The newer one fences the older (same transactional.id), which exits 1 saying why;
what the older had fetched but not committed is recovered by the newer one's sweeps, and no
record is published twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdr_connector.simulator import FaultConfig, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import LONG, Scene, finish, simulator_config
from tests.integration.harness import ConnectorProcess, Topics, admin_post

TRAFFIC_SECONDS = 30.0 if LONG else 5.0


async def test_a_second_instance_fences_the_first_and_nothing_is_published_twice(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    faults = FaultConfig(latency_ms=30.0, jitter_ms=30.0)
    config = simulator_config(seed=67, backlog=8000, rate=40.0, faults=faults)
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        older = scene.connector("older")
        newer: ConnectorProcess | None = None
        try:
            await older.wait_ready()
            while sim.state.stats()["records"]["queried"] < 1500:
                await asyncio.sleep(0.02)
            # Slow the API so the backlog outlasts the newer instance's start-up, however
            # busy the machine is.
            await admin_post(sim.admin_url, "faults", {"latency_ms": 800.0})
            newer = scene.connector("newer")
            await newer.wait_ready(timeout=90)
            older_exit = await older.wait_exit(90)
            queried_when_fenced = sim.state.stats()["records"]["queried"]
            await admin_post(sim.admin_url, "faults", {"latency_ms": 30.0})
            await asyncio.sleep(TRAFFIC_SECONDS)
            outcome, _ = await finish(scene, newer, "7. two instances, one source", started)
        finally:
            older.kill()
            if newer is not None:
                newer.kill()
    outcome.note = "the older one fenced"
    fault_report.add(outcome)
    outcome.assert_clean()
    assert older_exit == 1
    output = older.output()
    assert "Another instance with the same transactional.id took over" in output, output[-3000:]
    assert queried_when_fenced < 8000, "the fence must come while the backlog is drained"
