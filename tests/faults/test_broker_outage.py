"""Scenario 2: the Kafka broker stops for 15 s (30 s in the long variant) in the middle of a
run and starts again, with its data, while the vendor keeps making calls. The connector must
neither exit nor lose what it had fetched: the queue in front of the committer stops fetching
within a round, and the batches it holds are committed once the broker is back.

The suite's shared broker is never touched: this scenario runs its own (`private_broker`,
tests/faults/private_broker.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdr_connector.simulator import running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.private_broker import PrivateBroker
from tests.faults.scenarios import LONG, Scene, finish, read_back, simulator_config
from tests.integration.harness import Topics

OUTAGE_SECONDS = 30.0 if LONG else 15.0
TRAFFIC_SECONDS = 20.0 if LONG else 4.0  # before and after the outage


async def test_a_broker_outage_loses_and_repeats_nothing(
    private_broker: PrivateBroker, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=43, backlog=2000, rate=40.0)
    async with running_simulator(config) as sim:
        scene = Scene(private_broker.bootstrap, sim, topics, tmp_path)
        connector = scene.connector("connector")
        try:
            await connector.wait_ready()
            await asyncio.sleep(TRAFFIC_SECONDS)
            before = len((await read_back(scene.bootstrap, topics)).data)
            queried_at_stop = sim.state.stats()["records"]["queried"]
            await asyncio.to_thread(private_broker.stop)
            await asyncio.sleep(OUTAGE_SECONDS)  # the vendor keeps making calls meanwhile
            queried_in_outage = sim.state.stats()["records"]["queried"] - queried_at_stop
            assert connector.process.poll() is None, (
                f"the connector exited during the outage:\n{connector.output()[-3000:]}"
            )
            await asyncio.to_thread(private_broker.restart_with_its_data)
            await asyncio.sleep(TRAFFIC_SECONDS)
            outcome, _ = await finish(
                scene,
                connector,
                f"2. Kafka broker down {OUTAGE_SECONDS:.0f} s",
                started,
                note=f"{queried_in_outage} fetched during the outage",
                timeout=180,
            )
        finally:
            connector.kill()
    fault_report.add(outcome)
    outcome.assert_clean()
    assert before >= 2000, "the outage must come after the backlog was committed"
    output = connector.output()
    noticed = ("commit_transaction failed", "transaction of")
    assert any(text in output for text in noticed), "the connector never saw the outage"
    assert outcome.made > before + OUTAGE_SECONDS * 20, "traffic went on during the outage"
    # The committer's queue holds at most two batches: fetching stops within a few rounds
    # instead of taking every new record from the vendor while they cannot be stored.
    assert queried_in_outage < OUTAGE_SECONDS * config.rate / 4, queried_in_outage
