"""Scenario 10: the vendor changes its format. After a healthy start, nearly every new bill is
malformed (poison_rate 0.95): once more than half of the last `brake.window_bills` bills were
dead-lettered, the brake must stop the live syncflag=1 reads, so that the vendor keeps the
records nobody can publish yet, rather than every one of them moving into the dead-letter
topic. /readyz says why (503), `cdr_connector_brake_engaged{brake="dead_letters"}` is 1, records
arriving at the vendor stay unqueried, and every record the vendor did hand out is in a topic.

Then the fix: the connector stops (SIGTERM, exit 0), the vendor serves well-formed bills again,
and a restart with the same settings (a restart releases the brake) publishes what was left,
each record exactly once over both runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

from cdr_connector.simulator import FaultConfig, RunningSimulator, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import (
    Found,
    Scene,
    finish,
    probe,
    read_back,
    simulator_config,
)
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    metric_total,
    metrics_text,
    wait_for_records,
)

HEALTHY_BACKLOG = 300
WINDOW_BILLS = 200
SETTINGS = {"CDR_BRAKE__WINDOW_BILLS": str(WINDOW_BILLS)}  # dead_letter_ratio: 0.5 by default
FORMAT_CHANGE = FaultConfig(poison_rate=0.95)
# The changed format arrives at about 80 bills/s: a chunk every ARRIVAL_SECONDS.
ARRIVAL_SECONDS = 0.25
CHUNK = 20
MAX_CHUNKS = 100  # 2000 bills: ten windows' worth, far more than the brake may let through
POLL_INTERVAL = 0.5  # the harness's CDR_POLL__INTERVAL_SECONDS
# Poll intervals during which records keep arriving and none may be taken. The poison left
# unqueried (at most a chunk or two when the brake engages, plus these) stays far below half a
# window, so the restarted connector, reading it first, keeps its brake released.
WATCHED_INTERVALS = 6
AFTER_FIX = 300
BRAKE = 'brake="dead_letters"'


class Marks:
    """Ids the vendor marked as queried: a syncflag=1 read took them."""

    def __init__(self, sim: RunningSimulator) -> None:
        self.ids: set[int] = set()
        store = sim.state.store
        original = store.mark

        def mark(positions: Iterable[int]) -> int:
            positions = list(positions)
            self.ids.update(position + 1 for position in positions)  # id = position + 1
            return original(positions)

        store.mark = mark  # type: ignore[method-assign]


async def test_the_brake_stops_live_reads_on_a_changed_format_until_a_restart_after_the_fix(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=83, backlog=HEALTHY_BACKLOG, rate=0.0)
    async with running_simulator(config) as sim:
        marks = Marks(sim)
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        first = scene.connector("braked", **SETTINGS)
        try:
            await first.wait_ready()
            await wait_for_records(kafka_bootstrap, topics.data, HEALTHY_BACKLOG)
            await admin_post(sim.admin_url, "faults", {"poison_rate": FORMAT_CHANGE.poison_rate})
            reason = await until_braked(sim, first)
            metrics = await metrics_text(first)
            queried = sim.state.stats()["records"]["queried"]
            left, arrived = await records_stay_with_the_vendor(sim, marks)
            assert await probe(first, "livez") == (200, {"status": "alive"})
            await every_marked_record_is_in_a_topic(scene, marks)
            code = await first.stop()
            assert code == 0, f"SIGTERM ended the connector with {code}:\n{first.output()[-3000:]}"
        finally:
            first.kill()
        assert "brake" in reason, reason
        assert metric_total(metrics, "cdr_connector_brake_engaged", BRAKE) == 1, metrics
        assert left > 0 and arrived > 0, (left, arrived)
        assert len(marks.ids) == queried

        # The fix: the vendor serves well-formed bills again; the restart releases the brake.
        await admin_post(sim.admin_url, "faults", {"poison_rate": 0.0})
        await admin_post(sim.admin_url, "generate", {"count": AFTER_FIX})
        second = scene.connector("after-fix", **SETTINGS)
        finale: dict[str, object] = {}
        try:
            await second.wait_ready()

            async def at_the_end() -> None:
                finale["readyz"] = await probe(second, "readyz")
                finale["metrics"] = await metrics_text(second)

            outcome, records = await finish(
                scene,
                second,
                "10. brake on a changed format",
                started,
                note=f"{left} left with the vendor while braked",
                before_stop=at_the_end,
            )
        finally:
            second.kill()
    fault_report.add(outcome)
    outcome.assert_clean()
    assert finale["readyz"] == (200, {"status": "ready"}), finale["readyz"]
    assert metric_total(str(finale["metrics"]), "cdr_connector_brake_engaged", BRAKE) == 0
    assert len(records) >= HEALTHY_BACKLOG + left + AFTER_FIX
    # The second run published what the first left with the vendor.
    assert len(marks.ids) == len(records), (len(marks.ids), len(records))


async def until_braked(sim: RunningSimulator, connector: ConnectorProcess) -> str:
    """Bills of the changed format arrive until /readyz answers 503; its reason."""
    for _ in range(MAX_CHUNKS):
        await admin_post(sim.admin_url, "generate", {"count": CHUNK})
        await asyncio.sleep(ARRIVAL_SECONDS)
        status, body = await probe(connector, "readyz")
        if status == 503:
            reason: str = body["reason"]
            return reason
        assert status == 200, (status, body)
    raise AssertionError(
        f"{MAX_CHUNKS * CHUNK} bills of the changed format and /readyz is still 200:\n"
        f"{connector.output()[-3000:]}"
    )


async def records_stay_with_the_vendor(sim: RunningSimulator, marks: Marks) -> tuple[int, int]:
    """For WATCHED_INTERVALS poll intervals new records arrive and none is taken; the number
    left unqueried at the end and how many arrived meanwhile."""
    await asyncio.sleep(2 * POLL_INTERVAL)  # rounds fetched before the brake are committed
    before = sim.state.stats()["records"]
    taken = set(marks.ids)
    for _ in range(WATCHED_INTERVALS):
        await admin_post(sim.admin_url, "generate", {"count": 5})
        await asyncio.sleep(POLL_INTERVAL)
    after = sim.state.stats()["records"]
    assert marks.ids == taken, f"{len(marks.ids - taken)} records read while braked"
    assert after["queried"] == before["queried"], (before, after)
    return after["unqueried"], after["visible"] - before["visible"]


async def every_marked_record_is_in_a_topic(scene: Scene, marks: Marks) -> None:
    """Every record the vendor handed out was committed, as a record or a dead letter."""
    deadline = time.monotonic() + 30.0
    while True:
        found = Found.of(await read_back(scene.bootstrap, scene.topics))
        missing = marks.ids - found.every().keys()
        if not missing:
            return
        assert time.monotonic() < deadline, f"{len(missing)} fetched, not committed: {missing}"
        await asyncio.sleep(1.0)
