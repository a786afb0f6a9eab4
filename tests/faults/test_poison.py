"""Scenario 6: poison records in the backlog and in live traffic, every kind the simulator has
(wrong types, missing fields, impossible dates, ids no reader may trust, bytes that are not
JSON, implausible pages and sizes), plus injected bills the contract rejects. Each must end
where POISON_RULES says, a dead letter naming the bad field, and nothing else may be affected:
every good record published once, in order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdr_connector.simulator import FaultConfig, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import (
    ACCEPTED_KINDS,
    LONG,
    Scene,
    check_dead_letter,
    expected_destinations,
    finish,
    poison_kind,
    read_back,
    simulator_config,
)
from tests.integration.harness import Topics, admin_post, simulator_records

TRAFFIC_SECONDS = 30.0 if LONG else 6.0
INJECTED_FIELDS = ("billsec", "endtime", "starttime", "answertime")


async def test_poison_records_all_go_to_the_dead_letter_topic_and_nothing_else_is_affected(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=61, backlog=2000, rate=40.0, faults=FaultConfig(poison_rate=0.1))
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        made = await simulator_records(sim.admin_url)
        template = _without(next(r for r in made if poison_kind(r) is None), "poison")
        connector = scene.connector("connector")
        try:
            await connector.wait_ready()
            injected = await admin_post(
                sim.admin_url,
                "inject",
                [
                    {**_without(template, "id"), "billsec": [12]},
                    {**_without(template, "id", "endtime")},
                    {**_without(template, "id"), "starttime": "2024-02-30 10:00:00"},
                    {**_without(template, "id"), "answertime": "2024-13-01 00:00:00"},
                ],
            )
            injected_dead = dict(zip(injected["ids"], INJECTED_FIELDS, strict=True))
            await asyncio.sleep(TRAFFIC_SECONDS)
            outcome, records = await finish(
                scene, connector, "6. poison records", started, injected_dead=injected_dead
            )
        finally:
            connector.kill()
        poisoned = sim.state.stats()["records"]["poisoned"]
    fault_report.add(outcome)
    outcome.assert_clean()
    kinds = {poison_kind(r) for r in records} - {None}
    assert len(kinds) >= 20, kinds
    # Loose but valid shapes (decimal strings, unknown codes) are records, not dead letters.
    assert kinds & ACCEPTED_KINDS, kinds
    assert poisoned >= 150, poisoned
    expected = expected_destinations(records).with_dead(injected_dead)
    assert expected.dead_without_id, "some bills without a usable id were made"
    assert None in expected.dead.values(), "some bills that are not JSON were made"
    back = await read_back(kafka_bootstrap, topics)
    assert len(back.dead) == len(expected.dead) + len(expected.dead_without_id)
    for message in back.dead:
        check_dead_letter(message, expected, scene.source)


def _without(bill: dict[str, object], *names: str) -> dict[str, object]:
    return {key: value for key, value in bill.items() if key not in names}
