"""Scenarios 12-14: replicas sharing vendor accounts through a Kafka consumer group while one
of them dies, one freezes, or the broker restarts. Every account's records must still be in
the topics exactly once, live records of an extension in id order (fleet_scene.py).

12: the owner of several accounts is SIGKILLed under live traffic, with the vendor answering
    5xx and racing readers getting the same records: the survivor takes the accounts over once
    the dead one's session expires, and its start-up sweeps publish what the dead one had
    fetched but not committed.
13: a replica is SIGSTOPped the moment the vendor hands one of its accounts a page, so that its
    session expires while it holds records taken from the vendor and its producers; the other
    takes its accounts over (its `init_transactions` fences the frozen producers, its sweeps
    publish the page). Then SIGCONT: the frozen one must find its membership lost, stop those
    sources, have what it still tries to commit refused as fenced, and come back as an
    ordinary member.
14: the broker stops and starts again with its data while two replicas share the accounts; it
    stays down longer than the session timeout, so the group is formed anew.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cdr_connector.simulator import FaultConfig
from tests.faults.conftest import FaultReport
from tests.faults.fleet_scene import (
    ACCOUNTS,
    BACKLOG,
    SESSION_TIMEOUT,
    FleetScene,
    finish_fleet,
    owned,
    two_replicas,
    wait_for_owners,
)
from tests.faults.private_broker import PrivateBroker
from tests.faults.scenarios import LONG, probe
from tests.integration.harness import ConnectorProcess, Topics, admin_post, metrics_text

TRAFFIC_SECONDS = 20.0 if LONG else 4.0  # before and after each fault
BROKER_DOWN_SECONDS = 12.0  # twice the session timeout
# Live traffic with the vendor's faults on: 5xx answers, and concurrent syncflag=1 reads
# handed the same records.
FAULTS = FaultConfig(http_5xx_rate=0.05, racing=True)
# A takeover driven by the session timeout comes within it and a rebalance; this bound tells
# it apart from one that waits for a later timer (max.poll.interval.ms, 300 s by default) or
# for the dead replica's return. bench/fleet.py measures the takeover's p50 and p99.
TAKEOVER_BOUND = 3 * SESSION_TIMEOUT + 10.0
BURST = 1000
LOST_MEMBERSHIP = "membership lost; stopping"
FENCED = "Another instance with the same transactional.id took over"
DROPPED = "dropped, its open work left to its new owner"


async def ready(replica: ConnectorProcess) -> None:
    """Until every source the replica owns has started (its producer fenced any older one)."""
    for _ in range(400):
        status, body = await probe(replica, "readyz")
        # A fleet replica is ready while it runs; its sources are ready when none is listed.
        if status == 200 and not body.get("unready_sources"):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"replica never ready:\n{replica.output()[-3000:]}")


def fenced(replica: ConnectorProcess) -> set[str]:
    """The sources the replica gave up for another's: dropped when it learnt it had lost its
    membership, or stopped because a newer producer fenced theirs."""
    output = replica.output()
    return set(re.findall(rf"source (\S+) stopped: [^\n]*{FENCED}", output)) | set(
        re.findall(rf"source (\S+): {DROPPED}", output)
    )


async def owned_sources(replica: ConnectorProcess) -> set[str]:
    """The sources the replica runs now: those with a readiness series on its /metrics."""
    text = await metrics_text(replica)
    return set(re.findall(r'^cdr_connector_source_ready\{source="([^"]+)"\}', text, re.M))


async def freeze_between_fetch_and_commit(scene: FleetScene, replica: ConnectorProcess) -> None:
    """SIGSTOP the replica the moment the vendor marks a page of a fresh burst for one of its
    accounts, before the answer is sent: it is frozen holding records that are taken from the
    vendor and not committed. The simulator serves from this event loop, so the signal goes
    out while the answer is being made."""
    appids = [scene.sources[name] for name in await owned_sources(replica)]
    assert appids, "the replica to freeze owns no account"
    frozen = asyncio.Event()
    for appid in appids:
        store = scene.sim.fleet.accounts[appid].store
        store.mark = _freezing(store.mark, replica, frozen)  # type: ignore[method-assign]
    await admin_post(scene.sim.admin_url, f"generate?account={appids[0]}", {"count": BURST})
    await asyncio.wait_for(frozen.wait(), timeout=30)


def _freezing(
    mark: Callable[[Iterable[int]], int], replica: ConnectorProcess, frozen: asyncio.Event
) -> Any:
    def freezing(positions: Iterable[int]) -> int:
        newly = mark(positions)
        if newly and not frozen.is_set():
            replica.signal(signal.SIGSTOP)
            frozen.set()
        return newly

    return freezing


async def test_the_owner_of_several_accounts_killed_under_vendor_faults(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    sharing = two_replicas(kafka_bootstrap, topics, tmp_path, seed=81, rate=4.0, faults=FAULTS)
    async with sharing as shared:
        scene, (victim, survivor), (held, _) = shared
        await asyncio.sleep(TRAFFIC_SECONDS)
        victim.kill()
        killed_at = time.monotonic()
        await wait_for_owners([survivor])
        takeover = time.monotonic() - killed_at
        await ready(survivor)
        await asyncio.sleep(TRAFFIC_SECONDS)
        outcome = await finish_fleet(
            scene,
            [survivor],
            "12. replica SIGKILLed under 5xx and racing readers",
            note=lambda: f"{held} accounts taken over in {takeover:.0f} s",
        )
    fault_report.add(outcome)
    outcome.assert_clean()
    assert held >= 2, "the victim must own several accounts"
    assert takeover < TAKEOVER_BOUND, takeover
    assert outcome.made > ACCOUNTS * BACKLOG, "live traffic went on"


async def test_a_frozen_replica_loses_its_accounts_and_its_producers_are_fenced(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    async with two_replicas(
        kafka_bootstrap, topics, tmp_path, seed=82, rate=6.0, faults=FAULTS
    ) as shared:
        scene, (frozen, other), (held, _) = shared
        await asyncio.sleep(TRAFFIC_SECONDS)
        await freeze_between_fetch_and_commit(scene, frozen)
        await wait_for_owners([other])
        await ready(other)
        await asyncio.sleep(TRAFFIC_SECONDS)  # the frozen one's session is long gone
        frozen.signal(signal.SIGCONT)
        await wait_for_owners([frozen, other])
        rejoined_with = await owned(frozen)
        await asyncio.sleep(TRAFFIC_SECONDS)
        outcome = await finish_fleet(
            scene,
            [frozen, other],
            "13. replica SIGSTOPped past its session, then SIGCONTed",
            note=lambda: f"{held} accounts moved, {len(fenced(frozen))} of them dropped or fenced",
        )
    fault_report.add(outcome)
    outcome.assert_clean()
    output = frozen.output()
    assert LOST_MEMBERSHIP in output, output[-3000:]
    assert outcome.recovered > 0, "the page the frozen replica held must come from a sweep"
    # Thawed, it drops what it had fetched and commits none of it (the new owner's producer
    # fenced its own anyway); the new owner's sweep publishes it.
    assert fenced(frozen), output[-3000:]
    assert rejoined_with >= 1, "the thawed replica must rejoin and own accounts again"


async def test_a_broker_restart_while_two_replicas_share_the_accounts(
    private_broker: PrivateBroker,
    topics: Topics,
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    async with two_replicas(
        private_broker.bootstrap, topics, tmp_path, seed=83, rate=4.0
    ) as shared:
        scene, replicas, _ = shared
        await asyncio.sleep(TRAFFIC_SECONDS)
        await asyncio.to_thread(private_broker.stop)
        await asyncio.sleep(BROKER_DOWN_SECONDS)  # the vendor keeps making calls
        alive = [replica.process.poll() is None for replica in replicas]
        await asyncio.to_thread(private_broker.restart_with_its_data)
        counts = await wait_for_owners(replicas)
        await asyncio.sleep(TRAFFIC_SECONDS)
        outcome = await finish_fleet(
            scene,
            replicas,
            "14. broker restarted under two replicas",
            note=lambda: f"down {BROKER_DOWN_SECONDS:.0f} s, then {counts} accounts each",
        )
    fault_report.add(outcome)
    outcome.assert_clean()
    assert alive == [True, True], "no replica may exit while the broker is away"
    assert outcome.made > ACCOUNTS * BACKLOG + BROKER_DOWN_SECONDS, "traffic went on"
