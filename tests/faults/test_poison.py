"""Scenario 6: poison records (wrong types, missing fields, impossible dates) in the backlog
and in live traffic. Each must be in the dead-letter topic, naming the bad field, and nothing
else may be affected: every good record published once, in order."""

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
    dead_letter_ids,
    finish,
    poison_kind,
    read_back,
    simulator_config,
)
from tests.integration.harness import Topics, admin_post, header, simulator_records

TRAFFIC_SECONDS = 30.0 if LONG else 6.0


async def test_poison_records_all_go_to_the_dead_letter_topic_and_nothing_else_is_affected(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=61, backlog=2000, rate=40.0, faults=FaultConfig(poison_rate=0.1))
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        made = await simulator_records(sim.admin_url)
        template = next(bill for bill in made if poison_kind(bill) is None)
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
            await asyncio.sleep(TRAFFIC_SECONDS)
            bills = await simulator_records(sim.admin_url)
            expected = dead_letter_ids(bills)
            fields = ("billsec", "endtime", "starttime", "answertime")
            expected.update(zip(injected["ids"], fields, strict=True))
            outcome, _ = await finish(
                scene, connector, "6. poison records", started, dead_expected=set(expected)
            )
        finally:
            connector.kill()
        poisoned = sim.state.stats()["records"]["poisoned"]
    fault_report.add(outcome)
    outcome.assert_clean()
    kinds = {poison_kind(b) for b in bills} - {None}
    assert len(kinds) >= 10, kinds
    # Loose but valid shapes (decimal strings, unknown codes) are records, not dead letters.
    assert kinds & ACCEPTED_KINDS, kinds
    assert poisoned >= 150, poisoned
    back = await read_back(kafka_bootstrap, topics)
    assert len(back.dead) == len(expected)
    for message in back.dead:
        record_id = int(header(message, "cdr.id") or -1)
        field = expected[record_id]
        assert header(message, "cdr.stage") == "normalise"
        assert header(message, "cdr.field") == field, (record_id, header(message, "cdr.error"))
        assert field in (header(message, "cdr.error") or "")
        assert header(message, "cdr.source") == scene.source
        assert message.value() and message.value().startswith(b"{")


def _without(bill: dict[str, object], *names: str) -> dict[str, object]:
    return {key: value for key, value in bill.items() if key not in names}
