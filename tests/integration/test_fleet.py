"""Several sources in one process, and replicas sharing them through a Kafka consumer group.

Each source reads its own simulator; every source's records go to one topic, told apart by
their `cdr.source` header, and each source's must arrive exactly once whatever happens to the
replicas."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Message

from cdr_connector.simulator import RunningSimulator, running_simulator
from tests.integration.harness import (
    ACCESSKEY,
    APPID,
    ConnectorProcess,
    Topics,
    admin_post,
    assert_exactly_once,
    connector_env,
    free_port,
    header,
    metric_total,
    metrics_text,
    simulator_config,
    simulator_records,
    wait_for_records,
)

SOURCE_TIMEOUT = "5"


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("cdr"), unique_topic("dlq"), unique_topic("state"))


@asynccontextmanager
async def simulators(count: int, **config: Any) -> AsyncIterator[list[RunningSimulator]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                running_simulator(simulator_config(seed=40 + i, **config))
            )
            for i in range(count)
        ]


def sources_env(
    bootstrap: str,
    sims: dict[str, RunningSimulator],
    topics: Topics,
    *,
    accesskeys: dict[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """`[[sources]]` as CDR_SOURCES: one source per simulator, named by the dict's keys."""
    first = next(iter(sims.values()))
    env = connector_env(bootstrap, first.url, topics, source="unused", http_port=free_port())
    env = {key: value for key, value in env.items() if not key.startswith("CDR_SOURCE__")}
    entries = [
        {
            "name": name,
            "api_url": sim.url,
            "appid": APPID,
            "accesskey": (accesskeys or {}).get(name, ACCESSKEY),
            "request_timeout_seconds": float(SOURCE_TIMEOUT),
        }
        for name, sim in sims.items()
    ]
    env["CDR_SOURCES"] = json.dumps(entries)
    env.update(extra)
    return env


def of_source(messages: list[Message], name: str) -> list[Message]:
    return [m for m in messages if header(m, "cdr.source") == name]


async def readyz(process: ConnectorProcess) -> tuple[int, str]:
    url = f"http://127.0.0.1:{process.http_port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.text()


async def test_one_process_runs_several_sources_and_one_failing_stops_no_other(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    async with simulators(3, backlog=400) as sims:
        named = dict(zip(("east", "west", "refused"), sims, strict=True))
        env = sources_env(kafka_bootstrap, named, topics, accesskeys={"refused": "wrong"})
        process = ConnectorProcess(env, tmp_path / "connector.log")
        try:
            messages = await wait_for_records(kafka_bootstrap, topics.data, 800, timeout=120)
            for name in ("east", "west"):
                ids = {b["id"] for b in await simulator_records(named[name].admin_url)}
                assert_exactly_once(of_source(messages, name), ids)
            assert of_source(messages, "refused") == []
            status, reason = await readyz(process)
            assert status == 503
            assert "source refused:" in reason and "east" not in reason
            text = await metrics_text(process)
            assert metric_total(text, "cdr_connector_source_ready", 'source="east"') == 1
            assert metric_total(text, "cdr_connector_source_ready", 'source="refused"') == 0
            started = "cdr_connector_source_start_seconds_count"
            assert metric_total(text, started, 'source="east"') == 1, "timed once"
            assert metric_total(text, started, 'source="refused"') == 0, "never running"
            assert process.process.poll() is None, "one source's failure ends no process"
        finally:
            # Stopped by a signal, yet a source failed and needs a person: exit 1.
            assert await process.stop() == 1, process.output()
        assert "source east: stopped cleanly" in process.output()


ACCOUNTS = 12


def fleet_env(bootstrap: str, sim: RunningSimulator, topics: Topics, group: str) -> dict[str, str]:
    """Replicas sharing the accounts of one multi-account simulator (`--accounts`)."""
    names = {f"account-{i}": sim for i in range(1, ACCOUNTS + 1)}
    keys = {f"account-{i}": f"{ACCESSKEY}-{i}" for i in range(1, ACCOUNTS + 1)}
    env = sources_env(
        bootstrap,
        names,
        topics,
        accesskeys=keys,
        CDR_FLEET__ENABLED="true",
        CDR_FLEET__GROUP_ID=group,
        CDR_FLEET__COORDINATION_TOPIC=f"{group}.sources",
        CDR_FLEET__SESSION_TIMEOUT_SECONDS="6",
    )
    entries = json.loads(env["CDR_SOURCES"])
    for index, entry in enumerate(entries, start=1):
        entry["appid"] = f"{APPID}-{index}"
    env["CDR_SOURCES"] = json.dumps(entries)
    return env


async def owned(process: ConnectorProcess) -> float:
    return metric_total(await metrics_text(process), "cdr_connector_fleet_sources_owned")


async def wait_for_balance(replicas: list[ConnectorProcess], timeout: float = 60) -> None:
    """Until the replicas own every account between them, within one of each other."""
    counts: list[float] = []
    for _ in range(int(timeout / 0.5)):
        counts = [await owned(replica) for replica in replicas]
        if sum(counts) == ACCOUNTS and max(counts) - min(counts) <= 1:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"accounts owned per replica: {counts}, {ACCOUNTS} accounts")


async def account_records(admin_url: str, account: str) -> set[int]:
    ids: set[int] = set()
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            query = {"after_id": after, "limit": 10000, "account": account}
            async with session.get(f"{admin_url}records", params=query) as response:
                body = await response.json()
            if not body["records"]:
                return ids
            ids.update(record["id"] for record in body["records"])
            after = body["next_after_id"]


class Fleet:
    """Replica processes of one group, started and stopped as Kubernetes would."""

    def __init__(self, env: Callable[[], dict[str, str]], logs: Path) -> None:
        self._env = env
        self._logs = logs
        self.replicas: list[ConnectorProcess] = []
        self.retired: list[ConnectorProcess] = []

    async def start(self) -> ConnectorProcess:
        log = self._logs / f"replica-{len(self.replicas) + len(self.retired) + 1}.log"
        replica = ConnectorProcess(self._env(), log)
        await replica.wait_ready()
        self.replicas.append(replica)
        return replica

    async def stop(self, replica: ConnectorProcess) -> None:
        self.replicas.remove(replica)
        self.retired.append(replica)
        assert await replica.stop() == 0, replica.output()

    def kill(self, replica: ConnectorProcess) -> None:
        self.replicas.remove(replica)
        self.retired.append(replica)
        replica.kill()


async def test_replicas_share_accounts_through_kills_scaling_and_a_rolling_restart_exactly_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, unique_topic: Callable[[str], str]
) -> None:
    group = unique_topic("fleet")
    config = simulator_config(seed=60, backlog=150, rate=3.0, accounts=ACCOUNTS)
    async with running_simulator(config) as sim:
        fleet = Fleet(lambda: fleet_env(kafka_bootstrap, sim, topics, group), tmp_path)
        try:
            await fleet.start()
            await wait_for_balance(fleet.replicas)
            for _ in range(2):  # scale 1 -> 3
                await fleet.start()
            await wait_for_balance(fleet.replicas)
            fleet.kill(fleet.replicas[0])  # SIGKILL: its accounts move after the session
            await wait_for_balance(fleet.replicas)
            for old in list(fleet.replicas):  # a rolling restart, one new replica at a time
                await fleet.start()
                await wait_for_balance(fleet.replicas)
                await fleet.stop(old)
                await wait_for_balance(fleet.replicas)
            while len(fleet.replicas) > 1:  # scale down to 1
                await fleet.stop(fleet.replicas[-1])
                await wait_for_balance(fleet.replicas)
            await admin_post(sim.admin_url, "pause", {})
            expected = {
                f"account-{i}": await account_records(sim.admin_url, f"{APPID}-{i}")
                for i in range(1, ACCOUNTS + 1)
            }
            total = sum(len(ids) for ids in expected.values())
            messages = await wait_for_records(kafka_bootstrap, topics.data, total, timeout=120)
            for name, ids in expected.items():
                assert_exactly_once(of_source(messages, name), ids)
        finally:
            for replica in list(fleet.replicas):
                await fleet.stop(replica)


async def test_check_logs_in_as_every_source_and_names_the_refused_one(
    kafka_bootstrap: str, topics: Topics
) -> None:
    async with simulators(2, backlog=20) as sims:
        named = dict(zip(("east", "refused"), sims, strict=True))
        env = sources_env(kafka_bootstrap, named, topics, accesskeys={"refused": "wrong"})
        checked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cdr_connector", "check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = [line for line in checked.stdout.splitlines() if not line.startswith("{")]  # logs
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert [line.split(":")[0] for line in lines] == [
        "ok   vendor API login (east)",
        "FAIL vendor API login (refused)",
        "ok   Kafka and topics",
        "ok   Avro encoder",
    ]
    assert "wrong" not in checked.stdout, "the refused key is not shown"
