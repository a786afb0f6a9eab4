"""Replicas of one consumer group (`fleet.enabled`) sharing the accounts of one multi-account
simulator (`accounts=`), for the replica scenarios of the fault suite.

Every account's records go to the scene's one data topic, told apart by their `cdr.source`
header; the verdict (`tally` of scenarios.py) is taken per account, since ids are per account,
and the rows summed into one line of the summary table.

Each scene's source names, group id and coordination topic are its own (`prefix`, unique per
run): a source's name makes its `transactional.id`, and a name shared with another test would
let the two fence each other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from cdr_connector.simulator import RunningSimulator, running_simulator
from tests.faults.scenarios import (
    ACCESSKEY,
    APPID,
    NO_FAULTS,
    QUIET_SECONDS,
    Destinations,
    Found,
    Outcome,
    ReadBack,
    expected_destinations,
    read_back,
    simulator_config,
    tally,
)
from tests.integration.harness import (
    ConnectorProcess,
    Topics,
    admin_post,
    connector_env,
    free_port,
    header,
    metric_total,
    metrics_text,
    simulator_records,
)

ACCOUNTS = 6
BACKLOG = 300  # per account
# The shortest session the broker accepts (group.min.session.timeout.ms): a dead or frozen
# replica loses its accounts this long after its last heartbeat.
SESSION_TIMEOUT = 6.0
# Per source, as the suite's one-source connectors have it in TEST_SETTINGS.
REQUEST_TIMEOUT = 5.0
OWNERS_TIMEOUT = 90.0


@dataclass(frozen=True)
class FleetScene:
    """One replica scenario's simulator, broker, topics and names."""

    bootstrap: str
    sim: RunningSimulator
    topics: Topics
    log_dir: Path
    prefix: str
    replicas: list[ConnectorProcess] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def sources(self) -> dict[str, str]:
        """Source name -> the appid of its account in the simulator."""
        return {f"{self.prefix}-{i}": f"{APPID}-{i}" for i in range(1, ACCOUNTS + 1)}

    def replica(self, name: str) -> ConnectorProcess:
        """A new replica of the group, every account configured (`[[sources]]`)."""
        entries = [
            {
                "name": source,
                "api_url": self.sim.url,
                "appid": appid,
                "accesskey": f"{ACCESSKEY}-{index}",
                "request_timeout_seconds": REQUEST_TIMEOUT,
            }
            for index, (source, appid) in enumerate(self.sources.items(), start=1)
        ]
        env = connector_env(
            self.bootstrap,
            self.sim.url,
            self.topics,
            source=self.prefix,
            http_port=free_port(),
            CDR_SOURCES=json.dumps(entries),
            CDR_FLEET__ENABLED="true",
            CDR_FLEET__GROUP_ID=self.prefix,
            CDR_FLEET__COORDINATION_TOPIC=f"{self.prefix}.sources",
            CDR_FLEET__SESSION_TIMEOUT_SECONDS=str(SESSION_TIMEOUT),
        )
        # `[[sources]]` replaces `[source]`: the one-source settings must not be given too.
        settings = {key: value for key, value in env.items() if not key.startswith("CDR_SOURCE__")}
        replica = ConnectorProcess(settings, self.log_dir / f"{name}.log")
        self.replicas.append(replica)
        return replica

    def kill_all(self) -> None:
        for replica in self.replicas:
            replica.kill()


@asynccontextmanager
async def two_replicas(
    bootstrap: str, topics: Topics, log_dir: Path, **simulator: Any
) -> AsyncIterator[tuple[FleetScene, list[ConnectorProcess], list[int]]]:
    """A simulator of ACCOUNTS accounts and two replicas sharing them, ready and balanced:
    the scene, the replicas and the accounts each owns. The names are the data topic's (unique
    per test) with a prefix of their own. Every replica is killed on the way out (those a test
    stopped already are left as they are)."""
    config = simulator_config(backlog=BACKLOG, accounts=ACCOUNTS, **simulator)
    async with running_simulator(config) as sim:
        scene = FleetScene(bootstrap, sim, topics, log_dir, f"replicas-{topics.data}")
        try:
            replicas = [scene.replica(name) for name in ("one", "two")]
            for replica in replicas:
                await replica.wait_ready()
            yield scene, replicas, await wait_for_owners(replicas)
        finally:
            scene.kill_all()


async def owned(replica: ConnectorProcess) -> int:
    """How many accounts the replica runs now (`cdr_connector_fleet_sources_owned`)."""
    return int(metric_total(await metrics_text(replica), "cdr_connector_fleet_sources_owned"))


async def wait_for_owners(replicas: list[ConnectorProcess]) -> list[int]:
    """Until these replicas own every account between them, within one of each other; the
    accounts owned by each. Fails after OWNERS_TIMEOUT."""
    deadline = time.monotonic() + OWNERS_TIMEOUT
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = [await owned(replica) for replica in replicas]
        if sum(counts) == ACCOUNTS and max(counts) - min(counts) <= 1:
            return counts
        await asyncio.sleep(0.25)
    raise AssertionError(f"accounts owned per replica: {counts} of {ACCOUNTS} accounts")


def of_source(back: ReadBack, name: str) -> ReadBack:
    def mine(messages: Iterable[Message]) -> list[Message]:
        return [m for m in messages if header(m, "cdr.source") == name]

    return ReadBack(mine(back.data), mine(back.dead))


async def wait_until_every_account_complete(
    scene: FleetScene, expected: dict[str, Destinations], *, timeout: float = 150.0
) -> None:
    """Poll the topics until every account's records are where they belong or `timeout`
    passes; then wait QUIET_SECONDS more so that a late duplicate is seen. A shortfall is
    left to `tally`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        back = await read_back(scene.bootstrap, scene.topics)
        if not any(Found.of(of_source(back, n)).missing(e) for n, e in expected.items()):
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(QUIET_SECONDS)


_COUNTED = (
    "made",
    "committed",
    "lost",
    "duplicated",
    "out_of_order",
    "misplaced",
    "recovered",
    "dead_letters",
)


def summed(scenario: str, parts: dict[str, Outcome], seconds: float, note: str) -> Outcome:
    """One row for the accounts' outcomes; examples name their account's source."""
    total = Outcome(scenario=scenario, seconds=seconds, note=note)
    for name, part in parts.items():
        for column in _COUNTED:
            setattr(total, column, getattr(total, column) + getattr(part, column))
        for kind, ids in part.examples.items():
            total.examples[f"{name} {kind}"] = ids
    return total


async def finish_fleet(
    scene: FleetScene,
    running: list[ConnectorProcess],
    scenario: str,
    *,
    note: Callable[[], str] = str,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Stop the faults and the traffic, let the replicas catch up, stop each `running` replica
    with SIGTERM (exit 0 each) and tally every account's records against the topics. `note`
    is read once the replicas have stopped."""
    await admin_post(scene.sim.admin_url, "faults", NO_FAULTS)
    await admin_post(scene.sim.admin_url, "pause", {})
    records = {
        name: await simulator_records(scene.sim.admin_url, appid)
        for name, appid in scene.sources.items()
    }
    expected = {name: expected_destinations(bills) for name, bills in records.items()}
    await wait_until_every_account_complete(scene, expected)
    if before_stop is not None:
        await before_stop()
    for replica in running:
        code = await replica.stop()
        assert code == 0, f"SIGTERM ended a replica with {code}:\n{replica.output()[-3000:]}"
    back = await read_back(scene.bootstrap, scene.topics)
    parts = {
        name: tally(scenario, records[name], of_source(back, name), expected=expected[name])
        for name in scene.sources
    }
    return summed(scenario, parts, time.monotonic() - scene.started, note())
