"""Scenario 9: a hostile vendor. Over ten thousand good bills (a backlog, then live traffic)
with poison drawn at random, plus every kind of the hostile poison injected by name a few
times: ids no reader may trust, bills whose bytes are not JSON, a page claiming 10**12 records,
a call ending in 2099, 300 KB bills. One run of six 300 KB bills in a row makes a page larger
than the 1 MiB the connector reads (`source.max_answer_bytes`): the live read of it must fail
and a sweep must read the same records again in smaller pages. Meanwhile another client of the
account takes records with syncflag=1; sweeps (every 3 s, over the last hour) and audits (every
5 s, over closed hours; the backlog spans two hours, so its oldest records, the first the other
client takes, can only come back through the audit) recover them.

Every good bill must be published once, every bad one dead-lettered once (with or without its
id, as POISON_RULES say), nothing misplaced; the brake (default settings) must stay released,
and the connector alive and ready until SIGTERM ends it with exit status 0."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from cdr_connector.simulator import FaultConfig, RunningSimulator, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import (
    LONG,
    Scene,
    check_dead_letter,
    expected_destinations,
    finish,
    header_id,
    poison_kind,
    probe,
    read_back,
    simulator_config,
)
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    header,
    metric_total,
    metrics_text,
)

# The kinds of poison that came with the hostile-data rules (cdr_connector/bill.py).
HOSTILE_KINDS = (
    "id_twenty_digits",
    "id_four_hundred_digits",
    "id_negative",
    "id_decimal_text",
    "id_null",
    "id_lookalike_digits",
    "id_float",
    "id_in_a_list",
    "raw_lone_surrogate",
    "raw_invalid_utf8",
    "raw_nan_duration",
    "raw_deep_userkey",
    "inflated_totalitems",
    "far_future_endtime",
    "huge",
)
INJECTION_ROUNDS = 3  # each injects one bill of every hostile kind
HUGE_RUN = 6  # 300 KB each: 1.8 MB in one page, past MAX_ANSWER_BYTES
MAX_ANSWER_BYTES = 1_048_576
GOOD_BILLS = 40_000 if LONG else 10_000
BACKLOG = 30_000 if LONG else 9_000
BACKLOG_SPAN = 2 * 3600.0  # at least one closed hour, whatever the minute of the run
RATE = 80.0
TRAFFIC_SECONDS = 90.0 if LONG else 20.0
FAULTS = FaultConfig(poison_rate=0.015, competitor_interval=0.25, competitor_batch=10)
SETTINGS = {
    "CDR_SOURCE__MAX_ANSWER_BYTES": str(MAX_ANSWER_BYTES),
    "CDR_POLL__CONCURRENCY": "4",
    "CDR_POLL__PAGE_SIZE": "500",
    # The last hour is the sweeps'; the closed hours before it are the audit's alone.
    "CDR_POLL__SWEEP_WINDOW_SECONDS": "3600",
    "CDR_POLL__AUDIT_INTERVAL_SECONDS": "5",
    "CDR_POLL__AUDIT_SETTLE_SECONDS": "1",
}
# The connector keeps up with RATE once the backlog is drained: unqueried records stay below
# this between its rounds.
CAUGHT_UP = 200
SPLIT_LOG = "asking for its records in"
AUDIT_LAST_RUN = "cdr_connector_audit_last_run_timestamp_seconds"


async def test_a_hostile_vendor_gets_every_good_bill_published_once_and_every_bad_one_dead_lettered(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(
        seed=71, backlog=BACKLOG, rate=RATE, faults=FAULTS, backlog_span=BACKLOG_SPAN
    )
    async with running_simulator(config) as sim:
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        await inject_every_hostile_kind(sim)  # in the backlog
        connector = scene.connector("connector", **SETTINGS)
        finale: dict[str, object] = {}
        try:
            await connector.wait_ready()
            traffic_started = time.monotonic()
            await asyncio.sleep(TRAFFIC_SECONDS / 4)
            await inject_every_hostile_kind(sim)
            huge_ids = await a_page_too_large_for_a_live_read(scene)
            await inject_every_hostile_kind(sim)
            await until_enough_good_bills(sim, traffic_started)

            async def at_the_end() -> None:
                finale["audit_settled"] = await audit_finds_nothing_missing(connector)
                finale["livez"] = (await probe(connector, "livez"))[0]
                finale["readyz"] = await probe(connector, "readyz")
                finale["metrics"] = await metrics_text(connector)

            outcome, records = await finish(
                scene,
                connector,
                "9. hostile vendor",
                started,
                timeout=120,
                before_stop=at_the_end,
            )
        finally:
            connector.kill()
        taken = sim.state.stats()["records"]["taken_by_competitor"]
    outcome.note = (
        f"{len(HOSTILE_KINDS)} hostile kinds x{INJECTION_ROUNDS}, {HUGE_RUN} x 300 KB in a row, "
        f"{taken} taken by another reader"
    )
    fault_report.add(outcome)
    outcome.assert_clean()

    expected = expected_destinations(records)
    assert len(expected.data) >= GOOD_BILLS, len(expected.data)
    kinds = Counter(poison_kind(r) for r in records)
    assert all(kinds[k] >= INJECTION_ROUNDS for k in HOSTILE_KINDS), kinds
    assert kinds["huge"] >= INJECTION_ROUNDS + HUGE_RUN, kinds
    assert taken >= 100, taken

    back = await read_back(kafka_bootstrap, topics)
    for message in back.dead:
        check_dead_letter(message, expected, scene.source)
    # The run of huge bills failed its live read (the page was past the limit): a sweep read
    # it again in smaller pages.
    huge_modes = {header(m, "cdr.fetch_mode") for m in back.dead if header_id(m) in huge_ids}
    assert huge_modes and "live" not in huge_modes, huge_modes
    assert SPLIT_LOG in connector.output()

    # Bills whose dial hour cannot be read (unreadable bytes, a garbled start) are counted in
    # their hour once the audit has listed it whole: it does not report them missing forever.
    assert finale["audit_settled"], "cdr_connector_audit_missing_records never returned to 0"
    assert finale["livez"] == 200
    assert finale["readyz"] == (200, {"status": "ready"}), finale["readyz"]
    metrics = str(finale["metrics"])
    assert metric_total(metrics, "cdr_connector_api_total_mismatch_total") > 0
    assert metric_total(metrics, "cdr_connector_api_errors_total", 'kind="too_large"') > 0
    assert metric_total(metrics, "cdr_connector_api_pages_skipped_total") == 0
    assert metric_total(metrics, AUDIT_LAST_RUN) > 0
    assert metric_total(metrics, "cdr_connector_audit_repaired_records_total") > 0
    assert metric_total(metrics, "cdr_connector_sweep_recovered_records_total") > 0
    assert metric_total(metrics, "cdr_connector_brake_engaged") == 0


async def audit_finds_nothing_missing(connector: ConnectorProcess, timeout: float = 30.0) -> bool:
    """Whether an audit that ran after everything was committed found no record missing."""
    deadline = time.monotonic() + timeout
    first_run = metric_total(await metrics_text(connector), AUDIT_LAST_RUN)
    while time.monotonic() < deadline:
        text = await metrics_text(connector)
        if metric_total(text, AUDIT_LAST_RUN) > first_run:
            if metric_total(text, "cdr_connector_audit_missing_records") == 0:
                return True
            first_run = metric_total(text, AUDIT_LAST_RUN)
        await asyncio.sleep(1.0)
    return False


async def inject_every_hostile_kind(sim: RunningSimulator) -> list[int]:
    """One bill of every hostile kind, visible now; their ids."""
    wanted = [{"kind": kind, "count": 1} for kind in HOSTILE_KINDS]
    answer = await admin_post(sim.admin_url, "poison", wanted)
    assert answer["kinds"] == list(HOSTILE_KINDS), answer
    ids: list[int] = answer["ids"]
    return ids


async def a_page_too_large_for_a_live_read(scene: Scene) -> set[int]:
    """Once the connector keeps up, HUGE_RUN huge bills in a row, while the other reader waits:
    the connector's next live read takes them in one page, past MAX_ANSWER_BYTES. Returns
    their ids once they are all dead-lettered."""
    sim = scene.sim
    await until_caught_up(sim)
    await admin_post(sim.admin_url, "faults", {"competitor_interval": 0.0})
    answer = await admin_post(sim.admin_url, "poison", {"kind": "huge", "count": HUGE_RUN})
    huge_ids = set(answer["ids"])
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        back = await read_back(scene.bootstrap, scene.topics)
        if huge_ids <= {header_id(m) for m in back.dead}:
            break
        await asyncio.sleep(1.0)
    else:
        raise AssertionError(f"the huge bills {sorted(huge_ids)} were not dead-lettered in 60 s")
    await admin_post(sim.admin_url, "faults", {"competitor_interval": FAULTS.competitor_interval})
    return huge_ids


async def until_caught_up(sim: RunningSimulator, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (unqueried := sim.state.stats()["records"]["unqueried"]) >= CAUGHT_UP:
        assert time.monotonic() < deadline, f"{unqueried} records still unqueried"
        await asyncio.sleep(0.5)


async def until_enough_good_bills(sim: RunningSimulator, since: float) -> None:
    """Traffic for TRAFFIC_SECONDS at least, and until GOOD_BILLS well-formed bills were made
    (poisoned ones of accepted kinds, which are good, are not counted here)."""
    deadline = since + TRAFFIC_SECONDS + 120.0
    while True:
        records = sim.state.stats()["records"]
        good = records["visible"] - records["poisoned"]
        if time.monotonic() - since >= TRAFFIC_SECONDS and good >= GOOD_BILLS:
            return
        assert time.monotonic() < deadline, f"{good} good bills made"
        await asyncio.sleep(0.5)
