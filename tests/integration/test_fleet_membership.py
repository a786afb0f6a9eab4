"""`fleet.Membership` and its coordination topic against the broker, in one process and in
seconds: the group assigns a lone member every source and revokes them all when it leaves.
tests/integration/test_fleet.py runs whole replicas of the connector for the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from cdr_connector.config import Settings, load_settings
from cdr_connector.fleet import Membership, SourcesChange, ensure_coordination_topic
from tests.kafka_helpers import create_topics, unique_name, wait_for_topics

NAMES = ["charlie", "alpha", "bravo"]
ASSIGNED_WITHIN = 20.0


def fleet_settings(bootstrap: str, group: str, topic: str) -> Settings:
    return load_settings(
        sources=[{"name": name, "appid": f"app-{name}", "accesskey": "k"} for name in NAMES],
        fleet={
            "enabled": True,
            "group_id": group,
            "coordination_topic": topic,
            "session_timeout_seconds": 6,
        },
        kafka={"bootstrap_servers": bootstrap, "replication_factor": 1},
    )


def partition_count(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(timeout=10).topics[topic].partitions)


async def test_a_lone_member_owns_every_source_and_stops_them_all_before_leaving(
    kafka_bootstrap: str, admin: AdminClient, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic("fleet-sources")
    settings = fleet_settings(kafka_bootstrap, unique_name("fleet-group"), topic)
    calls: list[tuple[str, list[str]]] = []

    def record(change: str) -> SourcesChange:
        async def changed(names: list[str]) -> None:
            calls.append((change, sorted(names)))

        return changed

    membership = Membership(settings, NAMES, record("assigned"), record("revoked"), record("lost"))
    stop = asyncio.Event()
    running = asyncio.ensure_future(membership.run(stop))
    try:
        async with asyncio.timeout(ASSIGNED_WITHIN):
            while membership.owned != set(NAMES):
                await asyncio.sleep(0.05)
        assert calls == [("assigned", ["alpha", "bravo", "charlie"])]
        assert partition_count(admin, topic) == 3
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert calls == [
        ("assigned", ["alpha", "bravo", "charlie"]),
        ("revoked", ["alpha", "bravo", "charlie"]),
    ], "leaving the group stops every source before run() returns"
    assert membership.owned == set()


def test_a_coordination_topic_of_fewer_partitions_than_sources_grows(
    kafka_bootstrap: str, admin: AdminClient, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic("fleet-sources")
    create_topics(admin, [topic], partitions=2)
    settings = fleet_settings(kafka_bootstrap, unique_name("fleet-group"), topic)
    ensure_coordination_topic(settings, 4)
    wait_for_topics(admin, [topic], 4)
    ensure_coordination_topic(settings, 4)  # enough already: nothing to do, nothing refused
    assert partition_count(admin, topic) == 4
