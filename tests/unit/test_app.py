"""The process (cdr_connector/app.py) on fakes: what /readyz and the per-source gauge say of its
sources, its exit status, the fleet's callbacks that start and stop sources, leaving the group
within the shutdown bound, the run itself (listener, signals, garbage collector) and
`run_connector`'s exit. `app.SourceRunner` and `app.Membership` are replaced by scripted fakes;
the only socket is the operations listener on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from cdr_connector import app, metrics
from cdr_connector.app import Connector
from cdr_connector.clock import Clock
from cdr_connector.config import Settings
from cdr_connector.errors import ApiAuthError, CdrConnectorError, ProducerFencedError
from cdr_connector.http import start_ops_server
from tests.fakes import FakeClock

NAMES = ("north", "south")  # what no other test gives a readiness gauge
BOUND = 7.0  # shutdown_timeout_seconds
Behaviour = Callable[["FakeMembership", asyncio.Event], Awaitable[None]]


def make(*names: str, fleet: bool = False) -> Settings:
    """Settings of `names`, in that order, with the listener on any free local port."""
    return Settings(
        sources=[{"name": n, "appid": f"app-{n}", "accesskey": "k"} for n in names],
        fleet={"enabled": fleet},
        http={"host": "127.0.0.1", "port": 0},
        shutdown_timeout_seconds=BOUND,
    )


@dataclass
class Script:
    """What a fake runner does: `code` None runs until stopped, then ends with 0."""

    code: int | None = None
    reason: str | None = None
    start_error: CdrConnectorError | None = None
    abandoned: bool = False


class FakeRunner:
    """Stands where app.py builds a `SourceRunner`, and does what its `Script` says."""

    def __init__(self, script: Script, settings: Settings, clock: Clock, backfill: Any) -> None:
        self.script = script
        self.settings = settings
        self.clock = clock
        self.backfill = backfill
        self.name = settings.source.name
        self.pipeline = object()
        self.start_error: CdrConnectorError | None = None
        self.abandoned = False
        self.calls: list[str] = []
        self.finished = False
        self._stop = asyncio.Event()

    def not_ready_reason(self) -> str | None:
        return self.script.reason

    def request_stop(self) -> None:
        self.calls.append("request_stop")
        self._stop.set()

    def drop(self) -> None:
        self.calls.append("drop")
        self._stop.set()

    async def run(self) -> int:
        self.calls.append("run")
        if self.script.code is None:
            await self._stop.wait()
            for _ in range(3):  # committing what was fetched takes a few turns of the loop
                await asyncio.sleep(0)
        self.start_error = self.script.start_error
        self.abandoned = self.script.abandoned
        self.finished = True
        return self.script.code or 0


@dataclass
class Runners:
    scripts: dict[str, Script] = field(default_factory=dict)
    made: list[FakeRunner] = field(default_factory=list)

    def build(self, settings: Settings, clock: Clock, backfill: Any = None) -> FakeRunner:
        script = self.scripts.setdefault(settings.source.name, Script())
        runner = FakeRunner(script, settings, clock, backfill)
        self.made.append(runner)
        return runner

    def named(self, name: str) -> FakeRunner:
        (runner,) = [r for r in self.made if r.name == name]
        return runner


class FakeMembership:
    """Stands where app.py builds a `Membership`; its run does what its group's behaviour says."""

    def __init__(self, group: Group, settings: Settings, names: list[str], *callbacks: Any) -> None:
        self.group = group
        self.settings = settings
        self.names = names
        self.on_assigned, self.on_revoked, self.on_lost = callbacks

    async def run(self, stop: asyncio.Event) -> None:
        await self.group.behaviour(self, stop)


async def hold_all(member: FakeMembership, stop: asyncio.Event) -> None:
    """Assign every source, hold them until the stop, then give them back."""
    await member.on_assigned(list(member.names))
    await stop.wait()
    await member.on_revoked(list(member.names))


@dataclass
class Group:
    behaviour: Behaviour = hold_all
    made: list[FakeMembership] = field(default_factory=list)

    def build(self, settings: Settings, names: list[str], *callbacks: Any) -> FakeMembership:
        member = FakeMembership(self, settings, names, *callbacks)
        self.made.append(member)
        return member


class HangingClock(FakeClock):
    """A clock whose sleeps never end by themselves: a bound that must not be what ends a wait."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@pytest.fixture
def runners(monkeypatch: pytest.MonkeyPatch) -> Runners:
    made = Runners()
    monkeypatch.setattr(app, "SourceRunner", made.build)
    return made


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Group:
    made = Group()
    monkeypatch.setattr(app, "Membership", made.build)
    return made


@pytest.fixture(autouse=True)
def gauges() -> Iterator[None]:
    for name in NAMES:
        metrics.forget_source(name)
    yield
    for name in NAMES:
        metrics.forget_source(name)


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[None]:
    """`Connector.run` freezes the heap and raises the collector's thresholds: undone here."""
    saved = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


@pytest.fixture
def stray_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGINT that no event loop handler took land here instead of ending pytest."""
    caught: list[int] = []
    saved = {each: signal.getsignal(each) for each in (signal.SIGTERM, signal.SIGINT)}
    for each in saved:
        signal.signal(each, lambda signum, _frame: caught.append(signum))
    yield caught
    for each, handler in saved.items():
        signal.signal(each, handler)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.001)


async def soon(work: Awaitable[Any]) -> Any:
    """`work`, which must end within 2 s: a broken connector fails the test, not hangs it."""
    async with asyncio.timeout(2):
        return await work


async def leftover_tasks() -> set[asyncio.Task[Any]]:
    for _ in range(3):
        await asyncio.sleep(0)
    return asyncio.all_tasks() - {asyncio.current_task()}


def ready_gauge(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("cdr_connector_source_ready", {"source": name})


def connector_with(runners: Runners, reasons: dict[str, str | None], **make_args: Any) -> Connector:
    """A connector of north and south (or of `make_args`) running `reasons`' sources, in
    that order, each with that reason."""
    names = make_args.pop("names", NAMES)
    made = Connector(make(*names, **make_args), clock=FakeClock())
    for name, reason in reasons.items():
        runners.scripts[name] = Script(reason=reason)
        (settings,) = [s for s in made.settings.per_source() if s.source.name == name]
        made.runners[name] = runners.build(settings, made.clock)  # type: ignore[assignment]
    return made


# --- /readyz, the gauge and the one pipeline --------------------------------------------------


@dataclass(frozen=True)
class Case:
    names: tuple[str, ...]
    fleet: bool
    stopped: bool
    reasons: dict[str, str | None]
    expected: str | None


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            Case(("north",), False, False, {"north": "logging in"}, "logging in"),
            id="one-source-its-reason-as-is",
        ),
        pytest.param(
            Case(
                NAMES,
                False,
                False,
                {"south": "r2", "north": "r1"},
                "source north: r1; source south: r2",
            ),
            id="several-named-in-name-order",
        ),
        pytest.param(
            Case(NAMES, False, False, {"north": None, "south": "refused"}, "source south: refused"),
            id="several-only-the-unready",
        ),
        pytest.param(Case(NAMES, False, False, {"north": None, "south": None}, None), id="ready"),
        pytest.param(
            Case(NAMES, True, False, {"north": "r1", "south": "r2"}, None),
            id="fleet-ready-while-running-whatever-its-sources",
        ),
        pytest.param(
            Case(NAMES, True, True, {"north": None, "south": None}, "shutting down"),
            id="fleet-stopping-with-runners",
        ),
        pytest.param(
            Case(NAMES, True, True, {}, "shutting down"), id="fleet-stopping-without-runners"
        ),
        pytest.param(Case(NAMES, False, True, {}, "shutting down"), id="stopped-without-runners"),
        pytest.param(
            Case(("north",), False, True, {"north": "committing"}, "committing"),
            id="stopped-with-runners-says-theirs",
        ),
    ],
)
def test_not_ready_reason_is_what_readyz_says(runners: Runners, case: Case) -> None:
    made = connector_with(runners, case.reasons, names=case.names, fleet=case.fleet)
    if case.stopped:
        made.request_stop()
    assert made.not_ready_reason() == case.expected


def test_unready_sources_are_the_unready_ones_only_in_name_order(runners: Runners) -> None:
    names = ("south", "middle", "north")
    made = connector_with(runners, {"south": "r2", "middle": None, "north": "r1"}, names=names)
    unready = made.unready_sources()
    assert list(unready.items()) == [("north", "r1"), ("south", "r2")]


@pytest.mark.parametrize("count", [0, 1, 2])
def test_pipeline_is_the_runners_only_when_there_is_exactly_one(
    runners: Runners, count: int
) -> None:
    made = connector_with(runners, dict.fromkeys(NAMES[:count]))
    expected = runners.made[0].pipeline if count == 1 else None
    assert made.pipeline is expected


async def test_the_ready_gauge_of_each_source_follows_its_runner(runners: Runners) -> None:
    made = Connector(make(*NAMES), clock=FakeClock())
    north, south = made.settings.per_source()
    runners.scripts["south"] = Script(reason="logging in")
    started = made.start_source(north)
    made.start_source(south)
    north_runner: Any = runners.named("north")
    assert started is made.runners["north"] is north_runner
    assert (ready_gauge("north"), ready_gauge("south")) == (1.0, 0.0)
    runners.scripts["north"].reason = "brake engaged"
    runners.scripts["south"].reason = None
    assert (ready_gauge("north"), ready_gauge("south")) == (0.0, 1.0)
    made.request_stop()
    await soon(asyncio.gather(*made._tasks.values()))


def test_a_new_connector_has_run_nothing_and_hides_its_private_state() -> None:
    made = Connector(make(*NAMES))
    assert (made.ops_port, made.backfill, made.runners, made.abandoned) == (None, None, {}, False)
    for private in ("_tasks", "_stop", "_sources"):
        assert f"{private}=" not in repr(made)
        with pytest.raises(TypeError):
            Connector(make(*NAMES), **{private: {}})  # type: ignore[arg-type]


async def test_wait_stop_requested_returns_once_a_stop_is_requested(runners: Runners) -> None:
    made = connector_with(runners, {"north": None, "south": None})
    waiting = asyncio.create_task(made.wait_stop_requested())
    await asyncio.sleep(0)
    assert not waiting.done()
    made.request_stop()
    await soon(waiting)
    assert [r.calls for r in runners.made] == [["request_stop"], ["request_stop"]]


# --- every source, and the exit status --------------------------------------------------------


async def run_all(runners: Runners, scripts: dict[str, Script]) -> tuple[Connector, int]:
    runners.scripts.update(scripts)
    made = Connector(make(*scripts), clock=FakeClock(), backfill="backfill")  # type: ignore[arg-type]
    return made, await soon(made._run_all())


async def test_every_source_ending_cleanly_exits_0_and_says_so(
    runners: Runners, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdr_connector.app"):
        made, code = await run_all(runners, {"north": Script(code=0), "south": Script(code=0)})
    assert code == 0
    assert [(r.name, r.calls, r.clock, r.backfill) for r in runners.made] == [
        ("north", ["run"], made.clock, "backfill"),
        ("south", ["run"], made.clock, "backfill"),
    ]
    assert "stopped cleanly" in caplog.messages
    assert not made.abandoned


async def test_some_sources_failing_exits_1_without_raising_their_error(runners: Runners) -> None:
    failed = Script(code=1, start_error=ApiAuthError("appid refused"))
    _made, code = await run_all(runners, {"north": Script(code=0), "south": failed})
    assert code == 1


@pytest.mark.parametrize("north_error", [True, False])
async def test_every_source_failing_raises_the_first_start_up_error(
    runners: Runners, north_error: bool
) -> None:
    first = ApiAuthError("appid refused") if north_error else None
    second = ProducerFencedError("fenced")
    scripts = {
        "north": Script(code=1, start_error=first),
        "south": Script(code=1, start_error=second),
    }
    with pytest.raises(CdrConnectorError) as raised:
        await run_all(runners, scripts)
    assert raised.value is (first or second)


async def test_every_source_failing_without_a_start_up_error_exits_1(runners: Runners) -> None:
    _made, code = await run_all(runners, {"north": Script(code=1), "south": Script(code=1)})
    assert code == 1


async def test_a_source_that_abandoned_its_stop_makes_the_process_abandon_it(
    runners: Runners, caplog: pytest.LogCaptureFixture
) -> None:
    """North ends first, abandoned; south ends after it, not: the process stays abandoned."""
    scripts = {"north": Script(code=0, abandoned=True), "south": Script()}
    runners.scripts.update(scripts)
    made = Connector(make(*NAMES), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="cdr_connector.app"):
        running = asyncio.create_task(made._run_all())
        await until(lambda: bool(runners.made) and runners.named("north").finished)
        assert made.abandoned
        made.request_stop()
        assert await soon(running) == 0
    assert made.abandoned
    assert "stopped cleanly" not in caplog.messages


# --- the fleet's callbacks ------------------------------------------------------------------


async def test_assigned_sources_start_once_each(runners: Runners) -> None:
    made = Connector(make(*NAMES, fleet=True), clock=FakeClock())
    await made._assigned(["south"])
    await made._assigned(["north", "south"])
    assert sorted(made.runners) == ["north", "south"]
    assert sorted(r.name for r in runners.made) == ["north", "south"]
    await until(lambda: all(r.calls == ["run"] for r in runners.made))
    made.request_stop()
    await soon(asyncio.gather(*made._tasks.values()))


async def test_sources_assigned_after_a_stop_are_not_started(runners: Runners) -> None:
    made = Connector(make(*NAMES, fleet=True), clock=FakeClock())
    made.request_stop()
    await made._assigned(["north", "south"])
    assert (made.runners, runners.made) == ({}, [])


@pytest.mark.parametrize(("callback", "how"), [("_revoked", "request_stop"), ("_lost", "drop")])
async def test_revoked_stop_and_lost_drop_their_sources_and_wait_for_them(
    runners: Runners, callback: str, how: str
) -> None:
    made = Connector(make(*NAMES, fleet=True), clock=FakeClock())
    await made._assigned(["north", "south"])
    await until(lambda: all(r.calls == ["run"] for r in runners.made))
    assert ready_gauge("north") == 1.0
    await soon(getattr(made, callback)(["north", "ghost"]))
    north, south = runners.named("north"), runners.named("south")
    assert (north.calls, north.finished) == (["run", how], True)
    assert list(made.runners) == list(made._tasks) == ["south"]
    assert ready_gauge("north") is None
    assert (south.calls, ready_gauge("south")) == (["run"], 1.0)
    made.request_stop()
    await soon(asyncio.gather(*made._tasks.values()))


@pytest.mark.parametrize("callback", ["_revoked", "_lost"])
async def test_letting_go_of_sources_this_replica_does_not_run_is_harmless(
    runners: Runners, callback: str
) -> None:
    made = Connector(make(*NAMES, fleet=True), clock=FakeClock())
    await soon(getattr(made, callback)(["north"]))
    assert (made.runners, runners.made) == ({}, [])


# --- a member of the fleet ------------------------------------------------------------------


async def test_a_member_runs_what_the_group_assigns_until_a_stop_then_leaves(
    runners: Runners, group: Group
) -> None:
    """Leaving the group is bounded by shutdown_timeout_seconds; the bound is let go after."""

    async def south_only(member: FakeMembership, stop: asyncio.Event) -> None:
        await member.on_assigned(["south"])
        await stop.wait()
        await member.on_revoked(["south"])

    group.behaviour = south_only
    clock = HangingClock()
    made = Connector(make("south", "north", fleet=True), clock=clock)
    running = asyncio.create_task(made._run_as_member())
    await until(lambda: bool(made.runners))
    (member,) = group.made
    assert (member.settings, member.names) == (made.settings, ["north", "south"])
    assert list(made.runners) == ["south"]
    made.request_stop()
    assert await soon(running) == 0
    stops = ["request_stop", "request_stop"]  # the stop's, then the revocation's
    assert (runners.named("south").calls, made.runners, made.abandoned) == (
        ["run", *stops],
        {},
        False,
    )
    assert await leftover_tasks() == set()
    assert (clock.sleeps, clock.cancelled) == ([BOUND], 1)


async def test_leaving_the_group_past_the_shutdown_bound_abandons_it(
    runners: Runners, group: Group, caplog: pytest.LogCaptureFixture
) -> None:
    async def deaf(member: FakeMembership, stop: asyncio.Event) -> None:
        await member.on_assigned(["north"])
        await asyncio.Event().wait()  # never hears the stop

    group.behaviour = deaf
    clock = FakeClock()  # the bound passes at once
    made = Connector(make(*NAMES, fleet=True), clock=clock)
    running = asyncio.create_task(made._run_as_member())
    await until(lambda: bool(made.runners))
    made.request_stop()
    with caplog.at_level(logging.ERROR, logger="cdr_connector.app"):
        assert await soon(running) == 0
    assert made.abandoned
    assert clock.sleeps == [BOUND]
    assert any("did not finish within 7s" in m for m in caplog.messages)
    for task in await leftover_tasks():
        task.cancel()
    await asyncio.sleep(0)


async def test_a_membership_that_ends_by_itself_ends_the_run_without_a_bound(
    group: Group,
) -> None:
    async def brief(member: FakeMembership, stop: asyncio.Event) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    group.behaviour = brief
    clock = FakeClock()  # a bound, if one were waited, would pass at once
    made = Connector(make(*NAMES, fleet=True), clock=clock)
    assert await soon(made._run_as_member()) == 0
    assert (clock.sleeps, made.abandoned) == ([], False)
    assert await leftover_tasks() == set()


async def test_a_membership_error_ends_the_run_with_it(group: Group) -> None:
    async def failing(member: FakeMembership, stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("group coordinator gone")

    group.behaviour = failing
    made = Connector(make(*NAMES, fleet=True), clock=HangingClock())
    with pytest.raises(RuntimeError, match="group coordinator gone"):
        await soon(made._run_as_member())
    assert await leftover_tasks() == set()


# --- the run: listener, signals, garbage collector ------------------------------------------


@dataclass
class Started:
    """What `Connector.run` did before its sources: the checks it made, the listener it opened."""

    fastavro_checked: int = 0
    closed: list[int] = field(default_factory=list)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    seen = Started()

    def check_fastavro() -> None:
        seen.fastavro_checked += 1

    async def start(*args: Any) -> Any:
        listener = await start_ops_server(*args)
        real_close = listener.close

        async def close() -> None:
            seen.closed.append(listener.port)
            await real_close()

        listener.close = close  # type: ignore[method-assign]
        return listener

    monkeypatch.setattr(app, "assert_compiled_fastavro", check_fastavro)
    monkeypatch.setattr(app, "start_ops_server", start)
    return seen


async def readyz(port: int) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, await answer.json()


async def test_run_serves_readyz_then_ends_on_a_stop_and_closes_its_listener(
    runners: Runners, group: Group, started: Started, caplog: pytest.LogCaptureFixture
) -> None:
    runners.scripts["south"] = Script(reason="logging in")
    made = Connector(make(*NAMES), clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="cdr_connector.app"):
        running = asyncio.create_task(made.run())
        await until(lambda: len(runners.made) == 2)
        assert made.ops_port
        reason = "source south: logging in"
        assert await readyz(made.ops_port) == (503, {"status": "not ready", "reason": reason})
        made.request_stop()
        assert await soon(running) == 0
    assert started.fastavro_checked == 1
    assert started.closed == [made.ops_port]
    assert (group.made, gc.get_threshold()) == ([], (100_000, 50, 100))
    assert "source(s) north, south; /metrics, /livez and /readyz on port" in caplog.text
    assert any("bill writer" in message for message in caplog.messages)
    assert made.abandoned is False
    for each in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().remove_signal_handler(each)


async def test_run_with_fleet_enabled_runs_what_the_group_assigns(
    runners: Runners, group: Group, started: Started
) -> None:
    made = Connector(make(*NAMES, fleet=True), clock=HangingClock())
    running = asyncio.create_task(made.run())
    await until(lambda: len(runners.made) == 2)
    assert len(group.made) == 1
    assert await readyz(made.ops_port or 0) == (200, {"status": "ready"})
    made.request_stop()
    assert await soon(running) == 0
    assert started.closed == [made.ops_port]
    for each in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().remove_signal_handler(each)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_sigterm_and_sigint_stop_every_source(
    runners: Runners,
    started: Started,
    stray_signals: list[int],
    caplog: pytest.LogCaptureFixture,
    signum: int,
) -> None:
    made = Connector(make(*NAMES), clock=FakeClock())
    running = asyncio.create_task(made.run())
    await until(lambda: len(runners.made) == 2)
    with caplog.at_level(logging.INFO, logger="cdr_connector.app"):
        os.kill(os.getpid(), signum)
        try:
            assert await soon(running) == 0
        finally:
            for each in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().remove_signal_handler(each)
    assert stray_signals == []
    assert [r.calls for r in runners.made] == [["run", "request_stop"]] * 2
    assert f"received {signal.Signals(signum).name}: stopping" in caplog.messages


def test_garbage_collection_is_tuned_for_rounds_of_thousands_of_objects() -> None:
    gc.unfreeze()
    app._tune_garbage_collection()
    assert gc.get_threshold() == (100_000, 50, 100)
    assert gc.get_freeze_count() > 0


# --- run_connector ----------------------------------------------------------------------------


class ExitedError(Exception):
    """What the fake `os._exit` raises instead of ending the process."""


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch, stray_signals: list[int]) -> list[Any]:
    """What run_connector does on its way out, in order: the fake `os._exit` raises `ExitedError`.
    (Standard output is watched by the test itself: pytest's capture replaces it after the
    fixtures.)"""
    done: list[Any] = []

    def exit_now(code: int) -> None:
        done.append(("_exit", code))
        raise ExitedError

    monkeypatch.setattr(os, "_exit", exit_now)
    monkeypatch.setattr(logging, "shutdown", lambda: done.append("logging.shutdown"))
    monkeypatch.setattr(app, "assert_compiled_fastavro", lambda: None)
    return done


@pytest.mark.parametrize("code", [0, 1])
def test_run_connector_returns_the_exit_status(
    runners: Runners, exits: list[Any], code: int
) -> None:
    runners.scripts.update({"north": Script(code=0), "south": Script(code=code)})
    assert app.run_connector(make(*NAMES), backfill="backfill") == code  # type: ignore[arg-type]
    assert exits == []
    assert [r.backfill for r in runners.made] == ["backfill"] * 2


class Stdout:
    def __init__(self, done: list[Any]) -> None:
        self.done = done

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        self.done.append("flush")


def test_run_connector_exits_at_once_when_a_source_was_abandoned(
    monkeypatch: pytest.MonkeyPatch, runners: Runners, exits: list[Any]
) -> None:
    """Logs and standard output are flushed first: `os._exit` would lose what they hold."""
    runners.scripts.update({"north": Script(code=0, abandoned=True), "south": Script(code=1)})
    monkeypatch.setattr(sys, "stdout", Stdout(exits))
    with pytest.raises(ExitedError):
        app.run_connector(make(*NAMES))
    assert exits == ["logging.shutdown", "flush", ("_exit", 1)]
