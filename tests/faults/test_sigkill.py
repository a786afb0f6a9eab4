"""Scenario 1: SIGKILL the connector at random moments, again and again, restarting it each time,
while the vendor keeps making calls. A kill between fetch and commit leaves records that the
vendor marked as queried but Kafka never received; the next start-up sweep must publish them."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdr_connector.checkpoint import CheckpointState
from cdr_connector.simulator import RunningSimulator, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import LONG, Scene, finish, simulator_config
from tests.integration.harness import ConnectorProcess, Topics, admin_post
from tests.kafka_helpers import consume_all

KILLS = 60 if LONG else 10
# Records made visible before each start, so that every run has a backlog to drain.
BURST = 1000
# A kill this soon after the vendor marked a page lands before its transaction commits.
AFTER_MARK_SECONDS = (0.0, 0.03)


@dataclass
class Kill:
    ready: bool  # the connector had reported ready (start-up sweep done) when it was killed
    queried: int  # records the vendor had handed out with syncflag=1 at the kill
    committed_after: int = -1  # records a read_committed reader saw once the process was dead


async def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    rng = random.Random(2024)
    config = simulator_config(seed=41, backlog=1000, rate=20.0)
    started = time.monotonic()
    kills: list[Kill] = []
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        marks = PageMarks(sim)
        settings = {"CDR_POLL__PAGE_SIZE": "100", "CDR_POLL__CONCURRENCY": "2"}
        for number in range(KILLS):
            await admin_post(sim.admin_url, "generate", {"count": BURST})
            connector = scene.connector(f"run-{number:02d}", **settings)
            try:
                kill = await _kill_at_a_random_moment(connector, rng, number, marks)
            finally:
                connector.kill()
            # Read before the next start, whose start-up sweep publishes what was in flight.
            kill.committed_after = await _committed_ids(scene)
            kills.append(kill)
        last = scene.connector("final", **settings)
        try:
            await last.wait_ready(timeout=90)
            outcome, _ = await finish(scene, last, f"1. SIGKILL x{KILLS}", started)
        finally:
            last.kill()
    in_flight = [k for k in kills if k.queried > k.committed_after]
    outcome.note = f"{len(in_flight)} between fetch and commit"
    fault_report.add(outcome)
    outcome.assert_clean()
    assert len(kills) == KILLS
    assert sum(k.ready for k in kills) >= KILLS // 2, "most kills must hit a running connector"
    # Kills between fetch and commit: the vendor had handed out records that were not
    # committed when the process died; only the sweep of a later start can have published them.
    assert len(in_flight) >= 3, [(k.queried, k.committed_after) for k in kills]
    assert outcome.recovered > 0
    assert outcome.made >= 1000 + KILLS * BURST


async def _kill_at_a_random_moment(
    connector: ConnectorProcess, rng: random.Random, number: int, marks: PageMarks
) -> Kill:
    """Run 4k+3 dies at a random moment of its start-up (fencing, state read, start-up sweep);
    runs 4k+1 and 4k+2 a few milliseconds after the vendor marked a page of new records for
    them (between fetch and commit); the others at a random moment after they report ready.
    The simulator serves from this event loop, so nothing is fetched between reading its count
    and the kill.
    """
    ready = False
    if number % 4 == 3:
        await asyncio.sleep(rng.uniform(0.3, 2.5))
    else:
        await connector.wait_ready(timeout=90)
        ready = True
        if number % 4 in (1, 2):
            await marks.next_page(connector)
            await asyncio.sleep(rng.uniform(*AFTER_MARK_SECONDS))
        else:
            await asyncio.sleep(rng.uniform(0.05, 1.5))
    queried = int(marks.sim.state.stats()["records"]["queried"])
    assert connector.process.poll() is None, f"the connector died by itself:\n{connector.output()}"
    connector.kill()  # SIGKILL
    return Kill(ready=ready, queried=queried)


class PageMarks:
    """Wraps the simulator's marking of syncflag=1 answers to tell when a page was handed out."""

    def __init__(self, sim: RunningSimulator) -> None:
        self.sim = sim
        self._marked = asyncio.Event()
        store = sim.state.store
        original = store.mark

        def mark(positions: Any) -> int:
            newly = original(positions)
            self._marked.set()
            return newly

        store.mark = mark  # type: ignore[method-assign]

    async def next_page(self, connector: ConnectorProcess) -> None:
        """Make more records visible and wait until the connector's next live round takes some."""
        self._marked.clear()
        await admin_post(self.sim.admin_url, "generate", {"count": BURST})
        try:
            await asyncio.wait_for(self._marked.wait(), timeout=30)
        except TimeoutError:
            raise AssertionError(f"no page fetched within 30 s:\n{connector.output()}") from None


async def _committed_ids(scene: Scene) -> int:
    """How many ids the connector's latest committed state holds (records and dead letters)."""
    messages = await asyncio.to_thread(consume_all, scene.bootstrap, scene.topics.state)
    payloads = [m.value() for m in messages if m.key() == scene.source.encode()]
    return len(CheckpointState.decode(payloads[-1]).committed) if payloads else 0
