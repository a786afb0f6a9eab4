"""Scenarios 4 and 5: other readers of the same vendor account.

4. A competing client reads with syncflag=1 and takes unqueried records away; the vendor never
   returns them to syncflag=1 again, so only the sweeps (syncflag=2) can publish them.
5. Racing readers: concurrent syncflag=1 requests select the same records before the server
   marks them, so the same record arrives twice (in one round or in two); the committer must
   keep one.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdr_connector.simulator import FaultConfig, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import (
    LONG,
    Scene,
    finish,
    simulator_config,
)
from tests.integration.harness import Topics, metric_total, metrics_text

TRAFFIC_SECONDS = 60.0 if LONG else 5.0


async def test_records_a_competing_reader_took_are_all_recovered_by_sweeps(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    faults = FaultConfig(competitor_interval=0.2, competitor_batch=15)
    config = simulator_config(seed=53, backlog=1500, rate=40.0, faults=faults)
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        connector = scene.connector("connector")
        try:
            await connector.wait_ready()
            await asyncio.sleep(TRAFFIC_SECONDS)
            outcome, _ = await finish(scene, connector, "4. competing reader", started)
        finally:
            connector.kill()
        taken = sim.state.stats()["records"]["taken_by_competitor"]
    outcome.note = f"{taken} taken by the other reader"
    fault_report.add(outcome)
    outcome.assert_clean()
    assert taken >= 100, taken
    # A record the other reader took can reach the topic only through a sweep.
    assert outcome.recovered >= taken


async def test_racing_readers_returning_a_record_twice_publish_it_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    faults = FaultConfig(racing=True, race_delay_ms=30.0, jitter_ms=20.0)
    config = simulator_config(seed=59, backlog=3000, rate=60.0, faults=faults)
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        connector = scene.connector("connector", CDR_POLL__PAGE_SIZE="50")
        try:
            await connector.wait_ready()
            await asyncio.sleep(TRAFFIC_SECONDS)
            metrics = await metrics_text(connector)
            outcome, _ = await finish(scene, connector, "5. racing readers", started)
        finally:
            connector.kill()
        raced = sim.state.stats()["faults"].get("racing", 0)
    live = 'mode="live"'
    fetched = metric_total(metrics, "cdr_connector_records_fetched_total", live)
    produced = metric_total(metrics, "cdr_connector_records_produced_total", live)
    repeated = fetched - produced  # no poison here: every distinct live bill was produced
    outcome.note = f"{repeated:.0f} repeated bills dropped"
    fault_report.add(outcome)
    outcome.assert_clean()
    assert raced > 50, raced
    # The vendor really did hand out records twice, and the committer dropped the copies.
    assert repeated >= 100, (fetched, produced)
