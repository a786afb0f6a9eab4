"""`fleet`: the replicas' consumer group, without a broker.

librdkafka calls a member's rebalance callbacks on the consumer's own thread; here a test calls
them the same way, from `asyncio.to_thread`, with the event loop running, and the sources'
start and stop are recorders that note the names they were given and what `owned` held while
they ran. The admin client and the consumer are stand-ins with the methods `fleet` calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cdr_connector import fleet, kafka_clients, metrics
from cdr_connector.config import FleetSettings, Settings
from cdr_connector.errors import KafkaTransientError
from cdr_connector.fleet import (
    Membership,
    SourcesChange,
    ensure_coordination_topic,
    source_partitions,
)
from cdr_connector.topics import await_topic_changes
from tests.fakes import make_settings

TOPIC = "unit.sources"
GROUP = "unit-replicas"
NAMES = ["west", "east", "north"]  # partitions by name order: 0 east, 1 north, 2 west
BOOTSTRAP = "broker-1.example:9093"


def fleet_settings(**fleet_changes: Any) -> Settings:
    """A fleet member's settings; `fleet_changes` are applied unvalidated (to reach values the
    settings refuse, such as a session under 6 s)."""
    kafka = {
        "bootstrap_servers": BOOTSTRAP,
        "replication_factor": 2,
        "operation_timeout_seconds": 7,
        "client_config": {"client.rack": "rack-1"},
    }
    settings = make_settings(kafka=kafka)
    chosen = FleetSettings(enabled=True, group_id=GROUP, coordination_topic=TOPIC)
    return settings.model_copy(update={"fleet": chosen.model_copy(update=fleet_changes)})


def partitions(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, number) for number in numbers]


def rebalances(change: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "cdr_connector_fleet_rebalances_total", {"change": change}
    )
    return value or 0.0


def owned_gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("cdr_connector_fleet_sources_owned")


@dataclass
class Call:
    """One start or stop of sources: which, of what, and what `owned` held while it ran."""

    change: str
    names: list[str]
    owned_meanwhile: set[str]
    on_loop_thread: bool


@dataclass
class Sources:
    """The three `SourcesChange` callbacks of a Membership, recording every call."""

    calls: list[Call] = field(default_factory=list)
    membership: Membership | None = None

    def change(self, kind: str) -> SourcesChange:
        async def record(names: list[str]) -> None:
            await asyncio.sleep(0.01)  # the thread must wait for the whole change
            assert self.membership is not None
            on_loop = threading.current_thread() is threading.main_thread()
            self.calls.append(Call(kind, names, set(self.membership.owned), on_loop))

        return record


def member(
    settings: Settings | None = None, names: list[str] = NAMES
) -> tuple[Membership, Sources]:
    sources = Sources()
    sources.membership = Membership(
        settings or fleet_settings(),
        names,
        sources.change("assigned"),
        sources.change("revoked"),
        sources.change("lost"),
    )
    return sources.membership, sources


async def joined() -> tuple[Membership, Sources]:
    """A member whose callbacks reach the running loop, as `run` arranges."""
    membership, sources = member()
    membership._loop = asyncio.get_running_loop()
    return membership, sources


async def from_librdkafka(
    callback: Callable[[Any, list[TopicPartition]], None], *numbers: int
) -> None:
    """`callback` called as librdkafka calls it: on a thread of its own, the loop running."""
    await asyncio.to_thread(callback, None, partitions(*numbers))


@pytest.fixture(autouse=True)
def owned_unknown() -> None:
    """The owned gauge starts at a value no test expects, so a change that forgets to set it
    shows."""
    metrics.FLEET_SOURCES_OWNED.set(-1)


# --- the coordination topic's partitions and the member's configuration ------------------------


def test_each_partition_stands_for_one_source_in_name_order() -> None:
    assert source_partitions(NAMES) == {0: "east", 1: "north", 2: "west"}
    assert source_partitions([]) == {}


def test_a_member_counts_the_configured_sources_at_once() -> None:
    member(names=["a", "b", "c", "d"])
    assert metrics.REGISTRY.get_sample_value("cdr_connector_fleet_sources_configured") == 4


def test_the_member_joins_the_fleet_group_with_the_cooperative_sticky_assignor() -> None:
    config = member(fleet_settings(session_timeout_seconds=6.5))[0]._config()
    assert config["group.id"] == GROUP
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["session.timeout.ms"] == 6500
    assert type(config["session.timeout.ms"]) is int
    assert config["heartbeat.interval.ms"] == 1300
    assert config["enable.partition.eof"] is False


def test_the_member_is_a_consumer_of_kafka_clients_with_the_users_client_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[Settings, str]] = []

    def consumer_config(settings: Settings, suffix: str, purpose: Any = None) -> dict[str, Any]:
        asked.append((settings, suffix))
        return kafka_clients.consumer_config(settings, suffix, purpose)

    monkeypatch.setattr(fleet, "consumer_config", consumer_config)
    settings = fleet_settings()
    config = member(settings)[0]._config()
    assert asked == [(settings, "fleet")]
    assert config["bootstrap.servers"] == BOOTSTRAP
    assert config["logger"] is kafka_clients.LIBRDKAFKA_LOG
    assert config["isolation.level"] == "read_committed"
    assert config["client.rack"] == "rack-1"


@pytest.mark.parametrize(
    ("session_seconds", "heartbeat_ms"),
    [(0.3, 100), (0.5, 100), (0.505, 101), (6, 1200), (10, 2000), (300, 60_000)],
)
def test_the_heartbeat_is_a_fifth_of_the_session_but_never_under_100_ms(
    session_seconds: float, heartbeat_ms: int
) -> None:
    settings = fleet_settings(session_timeout_seconds=session_seconds)
    assert member(settings)[0]._config()["heartbeat.interval.ms"] == heartbeat_ms


def test_partitions_that_stand_for_no_configured_source_are_ignored() -> None:
    membership = member()[0]
    assert membership._names(partitions(2, 7, 0, -1)) == ["west", "east"]
    assert membership._names(partitions(3)) == []


# --- the rebalance callbacks, called from librdkafka's thread ----------------------------------


async def test_assigned_sources_start_on_the_loop_and_are_owned_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    membership, sources = await joined()
    before = rebalances("assigned")
    await from_librdkafka(membership._assigned, 0, 2)
    assert sources.calls == [Call("assigned", ["east", "west"], {"east", "west"}, True)]
    assert membership.owned == {"east", "west"}
    assert owned_gauge() == 2
    assert rebalances("assigned") == before + 1
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "fleet: assigned east, west")
    ]

    await from_librdkafka(membership._assigned, 1)
    assert sources.calls[-1] == Call("assigned", ["north"], {"east", "north", "west"}, True)
    assert owned_gauge() == 3
    assert rebalances("assigned") == before + 2


async def test_revoked_sources_stop_while_still_owned_and_are_let_go_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    membership, sources = await joined()
    await from_librdkafka(membership._assigned, 0, 1, 2)
    before = {change: rebalances(change) for change in metrics.FLEET_CHANGES}
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    caplog.clear()  # the assignment's own line, when another test left INFO on
    await from_librdkafka(membership._revoked, 2, 0)
    assert sources.calls[1:] == [Call("revoked", ["west", "east"], set(NAMES), True)]
    assert membership.owned == {"north"}
    assert owned_gauge() == 1
    assert {change: rebalances(change) - before[change] for change in before} == {
        "assigned": 0,
        "revoked": 1,
        "lost": 0,
    }
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "fleet: revoked; stopping west, east before they move on")
    ]


async def test_lost_sources_stop_with_a_warning_and_are_let_go_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    membership, sources = await joined()
    await from_librdkafka(membership._assigned, 0, 1)
    before = {change: rebalances(change) for change in metrics.FLEET_CHANGES}
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    caplog.clear()  # the assignment's own line, when another test left INFO on
    await from_librdkafka(membership._lost, 0, 1)
    assert sources.calls[1:] == [Call("lost", ["east", "north"], {"east", "north"}, True)]
    assert membership.owned == set()
    assert owned_gauge() == 0
    assert {change: rebalances(change) - before[change] for change in before} == {
        "assigned": 0,
        "revoked": 0,
        "lost": 1,
    }
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "fleet: membership lost; stopping east, north before they move on")
    ]


@pytest.mark.parametrize("callback", ["_assigned", "_revoked", "_lost"])
@pytest.mark.parametrize("numbers", [(), (3,), (5, 9)], ids=["none", "one-unknown", "unknown"])
async def test_a_change_of_no_configured_source_starts_and_stops_nothing(
    callback: str, numbers: tuple[int, ...], caplog: pytest.LogCaptureFixture
) -> None:
    membership, sources = await joined()
    membership.owned.add("east")
    before = {change: rebalances(change) for change in metrics.FLEET_CHANGES}
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    await from_librdkafka(getattr(membership, callback), *numbers)
    assert sources.calls == []
    assert membership.owned == {"east"}
    assert owned_gauge() == -1, "the gauge is left alone"
    assert {change: rebalances(change) for change in before} == before
    assert caplog.records == []


# --- the coordination topic ---------------------------------------------------------------------


class Future:
    """A future of the admin client: its result, or the error it raises."""

    def __init__(self, error: int | None = None) -> None:
        self.error = error
        self.waited = False

    def result(self) -> None:
        self.waited = True
        if self.error is not None:
            raise KafkaException(KafkaError(self.error, "refused by the broker"))


def test_a_topic_that_exists_already_is_no_failure_and_is_named() -> None:
    futures = {"a": Future(), "b": Future(KafkaError.TOPIC_ALREADY_EXISTS), "c": Future()}
    assert await_topic_changes(futures, "create") == {"b"}  # type: ignore[arg-type]
    assert [future.waited for future in futures.values()] == [True, True, True]


@pytest.mark.parametrize(
    "error", [KafkaError.POLICY_VIOLATION, KafkaError.INVALID_PARTITIONS, KafkaError._TIMED_OUT]
)
def test_any_other_admin_failure_is_transient_and_names_the_topic(error: int) -> None:
    futures = {"fine": Future(), "coord": Future(error)}
    with pytest.raises(KafkaTransientError) as raised:
        await_topic_changes(futures, "grow")  # type: ignore[arg-type]
    assert str(raised.value) == "cannot grow topic coord: refused by the broker"
    assert isinstance(raised.value.__cause__, KafkaException)


@dataclass
class FakeAdmin:
    """An admin client whose metadata holds `topics` (name -> partition count or error)."""

    topics: dict[str, int | KafkaError]
    refuse_metadata: bool = False
    created: list[tuple[str, int, int, float]] = field(default_factory=list)
    grown: list[tuple[str, int, float]] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)

    def list_topics(self, *, timeout: float) -> Any:
        self.timeouts.append(timeout)
        if self.refuse_metadata:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "no broker answers"))
        found = {
            name: SimpleNamespace(error=None, partitions=dict.fromkeys(range(count)))
            if isinstance(count, int)
            else SimpleNamespace(error=count, partitions={})
            for name, count in self.topics.items()
        }
        return SimpleNamespace(topics=found)

    def create_topics(self, specs: list[Any], *, operation_timeout: float) -> dict[str, Future]:
        for spec in specs:
            self.created.append(
                (spec.topic, spec.num_partitions, spec.replication_factor, operation_timeout)
            )
        return self._futures(spec.topic for spec in specs)

    def create_partitions(self, specs: list[Any], *, operation_timeout: float) -> dict[str, Future]:
        for spec in specs:
            self.grown.append((spec.topic, spec.new_total_count, operation_timeout))
        return self._futures(spec.topic for spec in specs)

    def _futures(self, names: Any) -> dict[str, Future]:
        made = {name: Future() for name in names}
        self.futures.extend(made.values())
        return made


def admin_with(monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin) -> FakeAdmin:
    monkeypatch.setattr(fleet, "new_admin", lambda _settings: admin)
    return admin


@pytest.mark.parametrize(
    "found",
    [{}, {"other": 9}, {TOPIC: KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)}],
    ids=["no-topics", "only-others", "metadata-error"],
)
def test_a_missing_coordination_topic_is_created_with_a_partition_per_source(
    found: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    admin = admin_with(monkeypatch, FakeAdmin(found))
    ensure_coordination_topic(fleet_settings(), 5)
    assert admin.created == [(TOPIC, 5, 2, 7.0)]
    assert admin.grown == []
    assert admin.timeouts == [7.0]
    assert [future.waited for future in admin.futures] == [True]
    assert caplog.messages == [f"created coordination topic {TOPIC} with 5 partitions"]


def test_a_coordination_topic_one_partition_short_is_grown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    admin = admin_with(monkeypatch, FakeAdmin({TOPIC: 4, "other": 1}))
    ensure_coordination_topic(fleet_settings(), 5)
    assert admin.grown == [(TOPIC, 5, 7.0)]
    assert admin.created == []
    assert [future.waited for future in admin.futures] == [True]
    assert caplog.messages == [f"coordination topic {TOPIC} grown to 5 partitions"]


@pytest.mark.parametrize("partition_count", [5, 6])
def test_a_coordination_topic_with_a_partition_per_source_is_left_alone(
    partition_count: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    admin = admin_with(monkeypatch, FakeAdmin({TOPIC: partition_count}))
    ensure_coordination_topic(fleet_settings(), 5)
    assert (admin.created, admin.grown, caplog.messages) == ([], [], [])


def test_unreadable_metadata_is_a_transient_failure_naming_the_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = admin_with(monkeypatch, FakeAdmin({}, refuse_metadata=True))
    with pytest.raises(KafkaTransientError) as raised:
        ensure_coordination_topic(fleet_settings(), 3)
    assert str(raised.value) == f"cannot read topic {TOPIC}: no broker answers"
    assert isinstance(raised.value.__cause__, KafkaException)
    assert admin.created == []


class RacedAdmin(FakeAdmin):
    """Another replica, with fewer sources, creates the topic with `partitions` between this
    replica's read of the metadata and its own create."""

    def __init__(self, partitions: int) -> None:
        super().__init__({})
        self.partitions = partitions

    def create_topics(self, specs: list[Any], *, operation_timeout: float) -> dict[str, Future]:
        super().create_topics(specs, operation_timeout=operation_timeout)
        self.topics[TOPIC] = self.partitions
        return {TOPIC: Future(KafkaError.TOPIC_ALREADY_EXISTS)}


def test_a_topic_created_meanwhile_with_too_few_partitions_is_read_again_and_grown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    admin = admin_with(monkeypatch, RacedAdmin(partitions=3))
    ensure_coordination_topic(fleet_settings(), 5)
    assert admin.grown == [(TOPIC, 5, 7.0)], "sources 4 and 5 would stand for no partition"
    assert admin.timeouts == [7.0, 7.0]
    assert caplog.messages == [f"coordination topic {TOPIC} grown to 5 partitions"]


def test_a_topic_created_meanwhile_with_enough_partitions_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.fleet")
    admin = admin_with(monkeypatch, RacedAdmin(partitions=5))
    ensure_coordination_topic(fleet_settings(), 5)
    assert (admin.grown, caplog.messages) == ([], [])


# --- run: the member's thread, on a consumer stand-in -------------------------------------------


class FakeConsumer:
    """Assigns every partition at its first poll and revokes what it assigned when closed, as
    the group does for a lone member; or fails its first poll."""

    def __init__(self, config: dict[str, Any], partition_count: int, fail: bool) -> None:
        self.config = config
        self.partition_count = partition_count
        self.fail = fail
        self.subscribed: list[str] = []
        self.callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self.polls: list[float] = []
        self.assigned: list[TopicPartition] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics
        self.callbacks = callbacks

    def poll(self, timeout: float) -> None:
        self.polls.append(timeout)
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker gone"))
        if self.callbacks and not self.assigned:
            self.assigned = partitions(*range(self.partition_count))
            self.callbacks["on_assign"](self, self.assigned)
        time.sleep(0.02)

    def close(self) -> None:
        if self.assigned:
            self.callbacks["on_revoke"](self, self.assigned)
        self.closed = True


@dataclass
class Stand:
    """What `run` made and asked for."""

    consumers: list[FakeConsumer] = field(default_factory=list)
    ensured: list[tuple[Settings, int]] = field(default_factory=list)


def stand_in(monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> Stand:
    stand = Stand()

    def consumer(config: dict[str, Any]) -> FakeConsumer:
        stand.consumers.append(FakeConsumer(config, len(NAMES), fail))
        return stand.consumers[-1]

    monkeypatch.setattr(fleet, "Consumer", consumer)
    monkeypatch.setattr(
        fleet, "ensure_coordination_topic", lambda *args: stand.ensured.append(args)
    )
    return stand


async def test_run_owns_what_the_group_assigns_until_stopped_then_stops_it_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand = stand_in(monkeypatch)
    settings = fleet_settings()
    membership, sources = member(settings)
    stop = asyncio.Event()
    running = asyncio.ensure_future(membership.run(stop))
    try:
        async with asyncio.timeout(5):
            while not sources.calls:
                await asyncio.sleep(0.01)
        assert sources.calls == [Call("assigned", ["east", "north", "west"], set(NAMES), True)]
        assert not running.done(), "a member stays until stopped"
        stop.set()
        await asyncio.wait_for(running, 5)
    finally:
        membership._leaving.set()  # a member that missed the stop frees its thread
    assert sources.calls[1:] == [Call("revoked", ["east", "north", "west"], set(NAMES), True)]
    assert membership.owned == set()
    assert stand.ensured == [(settings, 3)]
    (consumer,) = stand.consumers
    assert consumer.closed
    assert consumer.subscribed == [TOPIC]
    assert consumer.config["group.id"] == GROUP
    assert consumer.polls and all(0 < timeout <= 1 for timeout in consumer.polls), (
        "a stop is noticed within a second, and a poll never blocks for good"
    )


async def test_a_member_whose_consumer_fails_raises_and_leaves_no_task_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand = stand_in(monkeypatch, fail=True)
    membership, sources = member()
    with pytest.raises(KafkaException):
        await asyncio.wait_for(membership.run(asyncio.Event()), 5)
    await asyncio.sleep(0)  # a cancelled task ends at its next step
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert stand.consumers[0].closed
    assert sources.calls == []
