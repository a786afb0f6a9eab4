"""One source's runner (cdr_connector/runner.py) on fakes: its start-up steps with their retries
and the `starting` text /readyz shows, a stop or a failure at each point, the supervision of
its pipeline (a clean stop, an error, a drop, a stop that overruns its bound), and the helpers
that flatten errors into one line. Nothing here opens a connection: every step that would reach
Kafka or the vendor API is replaced where runner.py looks it up."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from cdr_connector import __version__, metrics
from cdr_connector import runner as runner_module
from cdr_connector.api import VendorApiClient
from cdr_connector.avro import SingleObjectEncoder
from cdr_connector.config import AvroSettings, Settings
from cdr_connector.errors import (
    ApiAuthError,
    ApiContentError,
    ApiTransientError,
    KafkaError,
    KafkaTransientError,
    RecordError,
)
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.redaction import Redactor
from cdr_connector.runner import (
    SourceRunner,
    _close_quietly,
    _connector_errors,
    _one_line,
    _StartUp,
)
from cdr_connector.scheduler import Backfill
from tests.fakes import SOURCE, FakeApi, FakeClock, FakeRecorder, FakeSink, make_settings

T = TypeVar("T")
ACCESS_KEY = "runner-access-key-0123"
SHUTDOWN_BOUND = 12.0
Behaviour = Callable[["ScriptedPipeline"], Awaitable[None]]


def settings(*, registry: str | None = None) -> Settings:
    """A source whose access key is long enough to be redacted anywhere, whose start-up
    retries wait 1 s, 2 s, 4 s... (with `ceiling_backoff`), and whose stop is bounded by 12 s."""
    made = make_settings(
        source_settings={"accesskey": ACCESS_KEY},
        poll={"retry_initial_seconds": 1.0, "retry_max_seconds": 30.0},
    )
    avro = AvroSettings(schema_registry_url=registry)
    return made.model_copy(update={"shutdown_timeout_seconds": SHUTDOWN_BOUND, "avro": avro})


async def soon(work: Awaitable[T]) -> T:
    """`work`, which must finish at once; a bound, so that a broken runner fails, not hangs."""
    return await asyncio.wait_for(work, 5)


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await soon(poll())


async def leftover_tasks() -> set[asyncio.Task[Any]]:
    """The tasks still pending besides the test's own, once cancellations have landed."""
    for _ in range(3):
        await asyncio.sleep(0)
    return asyncio.all_tasks() - {asyncio.current_task()}


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"source": SOURCE, **labels})


def up() -> float | None:
    return sample("cdr_connector_source_up")


class StillClock(FakeClock):
    """A clock whose sleeps never end by themselves (a shutdown bound never runs out)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled_sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled_sleeps += 1
            raise


class ScriptedPipeline(Pipeline):
    """The real pipeline with no state topic to read, whose `run` does what `behaviour` says."""

    def __init__(self, *args: Any, behaviour: Behaviour, **kwargs: Any) -> None:
        super().__init__(*args, state_reader=lambda _settings, _key: None, **kwargs)
        self.behaviour = behaviour
        self.running = asyncio.Event()
        self.ran_with: Backfill | str | None = "never ran"
        self.cancelled = False

    async def run(self, backfill: Backfill | None = None) -> None:
        self.ran_with = backfill
        self.running.set()
        try:
            await self.behaviour(self)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def until_stopped(pipeline: ScriptedPipeline) -> None:
    await pipeline.wait_stop_requested()


async def ignoring_stops(_pipeline: ScriptedPipeline) -> None:
    await asyncio.Event().wait()


def failing_with(error: BaseException) -> Behaviour:
    async def behaviour(_pipeline: ScriptedPipeline) -> None:
        await asyncio.sleep(0)
        raise error

    return behaviour


def scripted(clock: FakeClock, behaviour: Behaviour = until_stopped) -> ScriptedPipeline:
    made = settings()
    recorder = FakeRecorder()
    poller = Poller(FakeApi(0), made.source, made.poll, clock, recorder)
    encoder = SingleObjectEncoder()
    return ScriptedPipeline(
        made, poller, FakeSink(), encoder, clock, recorder=recorder, behaviour=behaviour
    )


class StepSink(FakeSink):
    """The producer step: `start` is the world's "producer" step; five messages queued."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.closed = 0

    async def start(self) -> None:
        self.world.enter("producer")
        if self.world.hang == "producer":
            await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed += 1

    def queue_depth(self) -> int:
        return 5


class World:
    """Start-up's outside world, on fakes. Each step ("encoder", "login", "topics",
    "producer") records that it ran and what `starting` said then, raises the errors listed
    for it (one per call), and never ends if it is the step that `hang` names."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runner: SourceRunner | None = None
        self.calls: list[str] = []
        self.seen: list[str | None] = []
        self.errors: dict[str, list[BaseException]] = {}
        self.hang: str | None = None
        self.release = threading.Event()
        self.threads_done = 0
        self.login_cancelled = False
        self.api_closed = 0
        self.sink = StepSink(self)
        self.sinks_made = 0
        self.behaviour: Behaviour = until_stopped
        self.pipelines: list[ScriptedPipeline] = []
        monkeypatch.setattr(runner_module, "build_encoder", self.build_encoder)
        monkeypatch.setattr(runner_module, "ensure_topics", self.ensure_topics)
        monkeypatch.setattr(runner_module, "TransactionalSink", self.make_sink)
        monkeypatch.setattr(runner_module, "Pipeline", self.make_pipeline)
        monkeypatch.setattr(VendorApiClient, "login", self.login)
        monkeypatch.setattr(VendorApiClient, "close", self.close_api)

    def source(self, made: Settings | None = None, clock: FakeClock | None = None) -> SourceRunner:
        self.runner = SourceRunner(made or settings(), clock or FakeClock())
        return self.runner

    def enter(self, step: str) -> None:
        assert self.runner is not None
        self.calls.append(step)
        self.seen.append(self.runner.starting)
        if self.errors.get(step):
            raise self.errors[step].pop(0)

    def on_thread(self, step: str) -> None:
        self.enter(step)
        if self.hang == step:
            self.release.wait(5)
            self.threads_done += 1

    def build_encoder(self, _settings: Settings) -> SingleObjectEncoder:
        self.on_thread("encoder")
        return SingleObjectEncoder()

    def ensure_topics(self, _settings: Settings) -> None:
        self.on_thread("topics")

    async def login(self) -> None:
        self.enter("login")
        if self.hang == "login":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.login_cancelled = True
                raise

    async def close_api(self) -> None:
        self.api_closed += 1

    def make_sink(self, _settings: Settings, *, recorder: Any) -> StepSink:
        self.sinks_made += 1
        return self.sink

    def make_pipeline(self, *args: Any, **kwargs: Any) -> ScriptedPipeline:
        made = ScriptedPipeline(*args, behaviour=self.behaviour, **kwargs)
        self.pipelines.append(made)
        return made


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    made = World(monkeypatch)
    yield made
    made.release.set()


async def started_up(source: SourceRunner, world: World) -> asyncio.Task[int]:
    """`source.run()` as a task, once its pipeline runs."""
    task = asyncio.create_task(source.run())
    await until(lambda: bool(world.pipelines) and world.pipelines[0].running.is_set())
    return task


async def stopped(source: SourceRunner, task: asyncio.Task[int]) -> int:
    source.request_stop()
    return await soon(task)


# --- what /readyz says of a source --------------------------------------------------------


def test_a_new_source_is_starting_with_nothing_failed_or_abandoned() -> None:
    source = SourceRunner(settings(), FakeClock())
    assert source.name == SOURCE
    assert source.not_ready_reason() == "starting"
    assert (source.pipeline, source.failure, source.start_error) == (None, None, None)
    assert source.abandoned is False


def test_the_start_up_step_under_way_is_the_reason() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.starting = "starting: the vendor API login"
    assert source.not_ready_reason() == "starting: the vendor API login"


def test_without_a_step_text_or_a_pipeline_the_reason_is_starting() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.starting = None
    assert source.not_ready_reason() == "starting"


def test_a_stop_before_the_pipeline_exists_reads_shutting_down() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.starting = "starting: Kafka (its topics)"
    source.request_stop()
    assert source.not_ready_reason() == "shutting down"


def test_a_failure_is_the_reason_even_while_stopping() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.failure = "appid not authorised"
    source.request_stop()
    assert source.not_ready_reason() == "appid not authorised"


def test_once_started_the_pipeline_gives_the_reason_even_after_a_stop() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.pipeline = scripted(FakeClock())
    source.starting = None
    source.pipeline.status.logged_in = source.pipeline.status.kafka_ready = True
    source.pipeline.status.state_loaded = True
    assert source.not_ready_reason() is None
    source.pipeline.status.brake = "brake: too many dead letters"
    source.request_stop()
    assert source.not_ready_reason() == "brake: too many dead letters"


def test_a_step_text_still_set_wins_over_the_pipeline() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.pipeline = scripted(FakeClock())
    source.starting = "starting: the Kafka producer and the checkpoint state"
    assert source.not_ready_reason() == "starting: the Kafka producer and the checkpoint state"


# --- stop and drop ----------------------------------------------------------------------


async def test_a_stop_wakes_its_waiters_and_reaches_the_pipeline() -> None:
    source = SourceRunner(settings(), FakeClock())
    source.pipeline = pipeline = scripted(FakeClock())
    source.starting = None
    source.request_stop()
    await soon(source.wait_stop_requested())
    await soon(pipeline.wait_stop_requested())
    assert source.not_ready_reason() == "shutting down", "the pipeline's own: it is stopping"


async def test_waiting_for_a_stop_waits_until_one_is_requested() -> None:
    source = SourceRunner(settings(), FakeClock())
    waiting = asyncio.ensure_future(source.wait_stop_requested())
    await asyncio.sleep(0)
    assert not waiting.done()
    source.drop()  # before any pipeline: only the stop
    await soon(waiting)


# --- supervising the pipeline -------------------------------------------------------------


async def test_a_clean_stop_ends_with_0_within_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.runner")
    clock = StillClock()
    backfill = Backfill(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    source = SourceRunner(settings(), clock, backfill)
    source.pipeline = pipeline = scripted(clock, until_stopped)
    supervising = asyncio.create_task(source._supervise(pipeline))
    await soon(pipeline.running.wait())
    assert source._pipeline_task is not None
    assert source._pipeline_task.get_name() == f"pipeline-{SOURCE}"
    assert await stopped(source, supervising) == 0
    assert pipeline.ran_with is backfill
    assert (source.failure, source.abandoned) == (None, False)
    assert await leftover_tasks() == set()
    assert "source unit: stopped cleanly" in caplog.messages


async def test_a_slow_stop_is_waited_for_under_the_bound_which_is_then_cancelled() -> None:
    clock = StillClock()
    source = SourceRunner(settings(), clock)

    async def slow(pipeline: ScriptedPipeline) -> None:
        await pipeline.wait_stop_requested()
        for _ in range(5):
            await asyncio.sleep(0)

    source.pipeline = pipeline = scripted(clock, slow)
    supervising = asyncio.create_task(source._supervise(pipeline))
    await soon(pipeline.running.wait())
    assert await stopped(source, supervising) == 0
    assert clock.sleeps == [SHUTDOWN_BOUND]
    assert await leftover_tasks() == set()
    assert clock.cancelled_sleeps == 1
    assert source.abandoned is False


async def test_a_stop_that_overruns_its_bound_abandons_the_pipeline_and_ends_with_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    source.pipeline = pipeline = scripted(clock, ignoring_stops)
    supervising = asyncio.create_task(source._supervise(pipeline))
    await soon(pipeline.running.wait())
    assert await stopped(source, supervising) == 0
    assert clock.sleeps == [SHUTDOWN_BOUND]
    assert source.abandoned is True
    assert source.failure is None
    await asyncio.sleep(0)
    assert pipeline.cancelled, "cancelled, though not waited for"
    assert any("did not finish within 12s" in m for m in caplog.messages)


async def test_a_dropped_source_cancels_its_pipeline_at_once_and_ends_with_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    source.pipeline = pipeline = scripted(clock, ignoring_stops)
    supervising = asyncio.create_task(source._supervise(pipeline))
    await soon(pipeline.running.wait())
    source.drop()
    assert await soon(supervising) == 0
    assert pipeline.cancelled
    assert (clock.sleeps, source.abandoned, source.failure) == ([], False, None)
    assert pipeline.status.stopping, "a drop is a stop too"
    assert any("dropped" in m for m in caplog.messages)


async def test_a_pipeline_error_ends_with_1_its_text_the_failure_and_up_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics.UP.labels(SOURCE).set(1)
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    source.pipeline = pipeline = scripted(clock, failing_with(ApiAuthError("ret 601:\n  denied")))
    assert await soon(source._supervise(pipeline)) == 1
    assert source.failure == "ret 601: denied"
    assert source.not_ready_reason() == "ret 601: denied"
    assert source.start_error is None
    assert up() == 0
    assert await leftover_tasks() == set(), "the wait for a stop is cancelled"
    assert "source unit stopped: ret 601:\n  denied" in caplog.messages


async def test_the_errors_of_a_group_nested_or_not_are_joined_into_the_failure() -> None:
    metrics.UP.labels(SOURCE).set(1)
    inner = ExceptionGroup("inner", [ApiAuthError("b"), RecordError("c", stage="encode")])
    group = ExceptionGroup("outer", [KafkaTransientError("a"), inner, KafkaError("d")])
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    pipeline = scripted(clock, failing_with(group))
    assert await soon(source._supervise(pipeline)) == 1
    assert source.failure == "a; b; c; d"
    assert up() == 0


async def test_a_group_with_an_unexpected_error_raises_the_unexpected_part() -> None:
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    bug = ValueError("a bug")
    group = ExceptionGroup("both", [KafkaError("a"), bug])
    pipeline = scripted(clock, failing_with(group))
    with pytest.raises(ExceptionGroup) as raised:
        await soon(source._supervise(pipeline))
    assert raised.value.exceptions == (bug,)
    assert source.failure is None


async def test_a_pipeline_that_ended_without_an_error_has_an_empty_list_of_errors() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    assert _connector_errors(task) == []


async def test_an_unexpected_error_of_the_pipeline_is_raised_as_it_is() -> None:
    clock = FakeClock()
    source = SourceRunner(settings(), clock)
    pipeline = scripted(clock, failing_with(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        await soon(source._supervise(pipeline))
    assert source.failure is None


# --- start-up -----------------------------------------------------------------------------


async def test_start_up_runs_its_steps_in_order_then_the_pipeline_until_stopped(
    world: World,
) -> None:
    source = world.source()
    task = await started_up(source, world)
    assert world.calls == ["encoder", "login", "topics", "producer"]
    assert world.seen == [
        "starting: the Avro schema",
        "starting: the vendor API login",
        "starting: Kafka (its topics)",
        "starting: the Kafka producer and the checkpoint state",
    ]
    assert source.starting is None
    assert source.pipeline is world.pipelines[0]
    assert source.not_ready_reason() == "not logged in to the vendor API", "the pipeline's"
    assert world.sinks_made == 1
    assert await stopped(source, task) == 0
    assert (world.sink.closed, world.api_closed) == (1, 1)
    assert (source.failure, source.start_error) == (None, None)


async def test_a_started_source_is_up_and_publishes_its_build_queue_and_start_time(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.runner")
    metrics.UP.labels(SOURCE).set(-1)
    before = sample("cdr_connector_source_start_seconds_sum") or 0.0
    clock = FakeClock()
    clock.advance(100)
    world.errors["login"] = [ApiTransientError("busy", retry_after=3.0)]
    source = world.source(clock=clock)
    task = await started_up(source, world)
    assert up() == 1
    assert sample("cdr_connector_producer_queue_messages") == 5
    schema = SingleObjectEncoder().schema_tag
    assert sample("cdr_connector_build_info", version=__version__, schema=schema) == 1
    took = sample("cdr_connector_source_start_seconds_sum") - before  # type: ignore[operator]
    assert took == pytest.approx(3.0), "from the runner's creation, not the clock's zero"
    assert f"cdr-connector {__version__} running source unit (started in 3.0 s)" in caplog.messages
    assert await stopped(source, task) == 0


async def test_a_failed_step_is_retried_after_a_growing_backoff_and_says_so(
    world: World, ceiling_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cdr_connector.runner")
    refused = ApiTransientError(f"HTTP 503\n   for key {ACCESS_KEY}")
    world.errors["login"] = [refused, ApiTransientError("HTTP 502")]
    clock = FakeClock()
    source = world.source(clock=clock)
    task = await started_up(source, world)
    assert world.calls == ["encoder", "login", "login", "login", "topics", "producer"]
    assert world.seen[1:5] == [
        "starting: the vendor API login",
        "starting: waiting for the vendor API login, which failed once (trying again): "
        "HTTP 503 for key ***",
        "starting: waiting for the vendor API login, which failed 2 times (trying again): HTTP 502",
        "starting: Kafka (its topics)",
    ]
    assert clock.sleeps == [1.0, 2.0]
    waits = [r for r in caplog.records if getattr(r, "event", None) == "startup_wait"]
    assert [(r.step, r.failures) for r in waits] == [  # type: ignore[attr-defined]
        ("the vendor API login", 1),
        ("the vendor API login", 2),
    ]
    assert await stopped(source, task) == 0


async def test_a_retry_after_is_waited_instead_of_the_backoff(
    world: World, ceiling_backoff: None
) -> None:
    world.errors["topics"] = [KafkaTransientError("broker away", retry_after=7.5)]
    clock = FakeClock()
    source = world.source(clock=clock)
    task = await started_up(source, world)
    assert clock.sleeps == [7.5]
    assert world.seen[3] == (
        "starting: waiting for Kafka (its topics), which failed once (trying again): broker away"
    )
    assert await stopped(source, task) == 0


async def test_with_a_schema_registry_the_first_step_is_named_after_it(world: World) -> None:
    world.errors["encoder"] = [ApiTransientError("registry down")]
    source = world.source(settings(registry="http://registry.invalid:8081"))
    task = await started_up(source, world)
    assert world.seen[:2] == [
        "starting: the schema registry",
        "starting: waiting for the schema registry, which failed once (trying again): "
        "registry down",
    ]
    assert await stopped(source, task) == 0


async def test_a_permanent_error_ends_start_up_with_1_and_its_redacted_text(
    world: World,
) -> None:
    metrics.UP.labels(SOURCE).set(1)
    refused = ApiAuthError(f"ret 601: appid refused for key {ACCESS_KEY}")
    world.errors["login"] = [refused]
    source = world.source()
    assert await soon(source.run()) == 1
    assert source.start_error is refused
    assert source.failure == "ret 601: appid refused for key ***"
    assert source.not_ready_reason() == source.failure
    assert up() == 0
    assert world.calls == ["encoder", "login"], "Kafka is not touched after refused credentials"
    assert (source.pipeline, source.starting) == (None, "starting: the vendor API login")
    assert world.api_closed == 1
    assert await leftover_tasks() == set()


async def test_any_connector_error_of_a_step_ends_start_up_with_1(world: World) -> None:
    odd = ApiContentError("neither retryable nor permanent")
    world.errors["producer"] = [odd]
    source = world.source()
    assert await soon(source.run()) == 1
    assert source.start_error is odd
    assert source.failure == "neither retryable nor permanent"
    assert (world.sink.closed, world.api_closed) == (1, 1)


async def test_an_unexpected_error_of_a_step_is_raised_after_closing(world: World) -> None:
    world.errors["topics"] = [ValueError("a bug")]
    source = world.source()
    with pytest.raises(ValueError, match="a bug"):
        await soon(source.run())
    assert (source.failure, source.start_error, world.api_closed) == (None, None, 1)


async def test_a_pipeline_error_after_start_up_ends_run_with_1_but_no_start_error(
    world: World,
) -> None:
    world.behaviour = failing_with(KafkaError("fenced"))
    source = world.source()
    assert await soon(source.run()) == 1
    assert (source.failure, source.start_error) == ("fenced", None)
    assert (world.sink.closed, world.api_closed) == (1, 1)


async def test_a_stop_during_a_step_on_the_loop_ends_start_up_at_once_with_0(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdr_connector.runner")
    world.hang = "login"
    source = world.source()
    task = asyncio.create_task(source.run())
    await until(lambda: "login" in world.calls)
    assert await stopped(source, task) == 0
    assert world.login_cancelled
    assert (source.abandoned, source.failure, source.start_error) == (False, None, None)
    assert source.not_ready_reason() == "shutting down"
    assert (world.api_closed, world.sinks_made) == (1, 0)
    assert await leftover_tasks() == set()
    assert "source unit: stopped during start-up" in caplog.messages


@pytest.mark.parametrize("step", ["encoder", "topics", "producer"])
async def test_a_stop_during_a_step_on_a_thread_abandons_it_and_closes_nothing(
    world: World, step: str
) -> None:
    world.hang = step
    source = world.source()
    task = asyncio.create_task(source.run())
    await until(lambda: step in world.calls)
    assert await stopped(source, task) == 0
    assert source.abandoned is True
    assert (world.api_closed, world.sink.closed, source.failure) == (0, 0, None)
    world.release.set()
    if step != "producer":
        await until(lambda: world.threads_done == 1)


async def test_a_stop_during_a_backoff_wait_ends_start_up_with_0(world: World) -> None:
    world.errors["topics"] = [KafkaTransientError("broker away")] * 3
    clock = StillClock()
    source = world.source(clock=clock)
    task = asyncio.create_task(source.run())
    await until(lambda: bool(clock.sleeps))
    assert await stopped(source, task) == 0
    assert world.calls == ["encoder", "login", "topics"]
    assert source.abandoned is False, "no thread was running"
    assert world.api_closed == 1
    assert clock.cancelled_sleeps == 1


async def test_waiting_for_a_step_says_true_once_it_is_done_and_false_on_a_stop(
    world: World,
) -> None:
    made = settings()
    steps = _StartUp(world.source(made), made)
    done = asyncio.ensure_future(asyncio.sleep(0))
    assert await soon(steps._until_stop(done)) is True
    endless = asyncio.ensure_future(asyncio.Event().wait())
    waiting = asyncio.ensure_future(steps._until_stop(endless))
    await asyncio.sleep(0)
    assert world.runner is not None
    world.runner.request_stop()
    assert await soon(waiting) is False
    await asyncio.sleep(0)
    assert endless.cancelled()
    await steps.close()


# --- closing what start-up made -----------------------------------------------------------


def blocking(release: threading.Event, ran: list[str], name: str) -> Callable[[Settings], None]:
    def step(_settings: Settings) -> None:
        release.wait(5)
        ran.append(name)

    return step


async def test_closing_after_an_abandoned_step_neither_waits_nor_runs_what_was_queued(
    world: World,
) -> None:
    made, release = settings(), threading.Event()
    ran: list[str] = []
    steps = _StartUp(world.source(made), made)
    first = asyncio.ensure_future(steps._in_thread(blocking(release, ran, "first"), made))
    second = asyncio.ensure_future(steps._in_thread(blocking(release, ran, "second"), made))
    await asyncio.sleep(0)
    assert world.runner is not None
    world.runner.abandoned = True
    await steps.close()
    assert ran == [], "close did not wait for the blocked thread; one thread, so none ran"
    release.set()
    await soon(first)
    assert ran == ["first"]
    with pytest.raises(asyncio.CancelledError):
        await soon(second)
    assert world.api_closed == 1


async def test_closing_after_start_up_waits_for_a_step_still_on_its_thread(
    world: World,
) -> None:
    made, release = settings(), threading.Event()
    ran: list[str] = []
    steps = _StartUp(world.source(made), made)
    running = asyncio.ensure_future(steps._in_thread(blocking(release, ran, "step"), made))
    await asyncio.sleep(0)
    threading.Timer(0.2, release.set).start()
    await steps.close()
    assert ran == ["step"]
    await soon(running)


class ClosingSink(FakeSink):
    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.error = error
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1
        if self.error is not None:
            raise self.error


class ClosingApi(FakeApi):
    def __init__(self) -> None:
        super().__init__(0)
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_a_sink_that_fails_to_close_is_logged_and_the_api_still_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink, api = ClosingSink(KafkaError("flush timed out")), ClosingApi()
    await _close_quietly(sink, api)  # type: ignore[arg-type]
    assert (sink.closed, api.closed) == (1, 1)
    assert "closing the Kafka producer: flush timed out" in caplog.messages


async def test_closing_skips_what_was_never_made() -> None:
    sink, api = ClosingSink(), ClosingApi()
    await _close_quietly(None, None)
    await _close_quietly(sink, None)  # type: ignore[arg-type]
    await _close_quietly(None, api)  # type: ignore[arg-type]
    assert (sink.closed, api.closed) == (1, 1)


# --- one line of an error -----------------------------------------------------------------


def test_one_line_redacts_secrets_and_collapses_whitespace() -> None:
    text = f"login\n\tfailed:   key={ACCESS_KEY} \r\n"
    assert _one_line(text, Redactor(ACCESS_KEY)) == "login failed: key=***"


def digits(length: int) -> str:
    return "".join(str(i % 10) for i in range(length))


def test_one_line_keeps_300_characters_whole() -> None:
    assert _one_line(digits(300), Redactor()) == digits(300)
    assert _one_line(digits(297) + "  \n  ab", Redactor()) == digits(297) + " ab"


def test_one_line_cuts_301_characters_to_300_ending_in_dots() -> None:
    cut = _one_line(digits(301), Redactor())
    assert cut == digits(297) + "..."
    assert len(cut) == 300
