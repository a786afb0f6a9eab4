"""One source's life: its start-up steps, its pipeline, and a bounded stop.

Start-up, in order, each step retried with backoff for as long as it fails with a
RetryableError (the reason, its last error redacted, is what /readyz says for this source):
  1. the Avro encoder (with a schema registry: registering or looking up the schema);
  2. the vendor API login;
  3. Kafka: the topics exist (or are created);
  4. the Kafka producer (fencing older instances) and the checkpoint state (`Pipeline.start`).
A PermanentError (refused credentials, a fenced producer) ends this source with its message;
the process (app.py) decides what that means for the others. A stop during start-up ends it at
once: nothing was fetched yet.

Stopping: the pipeline stops fetching at once, the batches already fetched are committed, the
producer is closed, all within `shutdown_timeout_seconds`. Past that bound the pipeline is
cancelled and any open transaction is aborted: the records it held were fetched with syncflag=1,
and the start-up sweep of the source's next run (here or on another replica) publishes them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cdr_connector import __version__, metrics
from cdr_connector.api import VendorApiClient
from cdr_connector.avro import build_encoder
from cdr_connector.backoff import Backoff
from cdr_connector.clock import Clock
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError, RetryableError
from cdr_connector.kafka_sink import TransactionalSink
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.redaction import Redactor
from cdr_connector.scheduler import Backfill
from cdr_connector.topics import ensure_topics

log = logging.getLogger(__name__)
T = TypeVar("T")

# An error quoted in /readyz is cut here: enough to recognise it, short enough for a probe.
_REASON_ERROR_LIMIT = 300


class _StoppedStartingError(Exception):
    """A stop arrived while a start-up step was under way or waiting."""


class SourceRunner:
    """Runs one source until it is stopped, its backfill is done, or it fails."""

    def __init__(self, settings: Settings, clock: Clock, backfill: Backfill | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.backfill = backfill
        self.pipeline: Pipeline | None = None
        self.starting: str | None = "starting"
        """What start-up is doing or waiting for; None once it is done."""
        self.failure: str | None = None
        """Why the source stopped on an error, once it has."""
        self.abandoned = False
        """Set when stopping overran its bound, or a stop cut a start-up step short that runs
        on a thread: that thread may still be blocked (in librdkafka, on the network), so the
        process must exit without waiting for it (see `app.run_connector`)."""
        self.start_error: CdrConnectorError | None = None
        """The error that ended start-up, if one did (the process may raise it)."""
        self._stop = asyncio.Event()
        self._redactor = Redactor()
        self._pipeline_task: asyncio.Task[None] | None = None
        self.created = clock.monotonic()
        """When this source was given to this process (`metrics.SOURCE_START`)."""

    @property
    def name(self) -> str:
        return self.settings.source.name

    def not_ready_reason(self) -> str | None:
        """What /readyz says of this source: its failure, the start-up step, or the
        pipeline's own reason."""
        if self.failure is not None:
            return self.failure
        if self._stop.is_set() and self.pipeline is None:
            return "shutting down"
        if self.starting is not None or self.pipeline is None:
            return self.starting or "starting"
        return self.pipeline.status.not_ready_reason()

    def request_stop(self) -> None:
        self._stop.set()
        if self.pipeline is not None:
            self.pipeline.request_stop()

    async def wait_stop_requested(self) -> None:
        await self._stop.wait()

    async def run(self) -> int:
        """0 once stopped or its backfill is done; 1 after an error that needs a person."""
        steps = _StartUp(self, self.settings)
        self._redactor = steps.api.redactor
        try:
            try:
                pipeline = await steps.run()
            except _StoppedStartingError:
                log.info("source %s: stopped during start-up", self.name)
                return 0
            except CdrConnectorError as exc:
                self.start_error = exc
                self._failed([exc])
                return 1
            return await self._supervise(pipeline)
        finally:
            if not self.abandoned:
                await steps.close()

    def drop(self) -> None:
        """Stop at once, committing nothing more: another replica owns this source now (its
        producer fenced this one's), so what this one fetched is that one's sweep's."""
        self.request_stop()
        if self._pipeline_task is not None:
            self._pipeline_task.cancel()

    async def _supervise(self, pipeline: Pipeline) -> int:
        task = asyncio.create_task(pipeline.run(self.backfill), name=f"pipeline-{self.name}")
        self._pipeline_task = task
        stop_requested = asyncio.create_task(pipeline.wait_stop_requested())
        await asyncio.wait({task, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            bound = asyncio.ensure_future(self.clock.sleep(self.settings.shutdown_timeout_seconds))
            await asyncio.wait({task, bound}, return_when=asyncio.FIRST_COMPLETED)
            bound.cancel()
            if not task.done():
                task.cancel()  # not awaited: it may be stuck behind the blocked producer thread
                log.error(
                    "source %s: shutdown did not finish within %.0fs; open work is abandoned "
                    "and will be recovered by the next start-up sweep",
                    self.name,
                    self.settings.shutdown_timeout_seconds,
                )
                self.abandoned = True
                return 0
        stop_requested.cancel()
        if task.cancelled():
            log.warning("source %s: dropped, its open work left to its new owner", self.name)
            return 0
        errors = _connector_errors(task)
        if errors:
            self._failed(errors)
            return 1
        log.info("source %s: stopped cleanly", self.name)
        return 0

    def _failed(self, errors: list[CdrConnectorError]) -> None:
        for error in errors:
            log.error("source %s stopped: %s", self.name, error)
        self.failure = "; ".join(_one_line(str(error), self._redactor) for error in errors)
        metrics.UP.labels(self.name).set(0)


def _connector_errors(task: asyncio.Task[None]) -> list[CdrConnectorError]:
    """The errors a finished pipeline task ended with; anything unexpected is re-raised."""
    error = task.exception()
    if error is None:
        return []
    if isinstance(error, CdrConnectorError):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split(CdrConnectorError)
        if rest is not None:
            raise rest
        return list(_leaves(matched)) if matched is not None else []
    raise error


def _leaves(group: BaseExceptionGroup[CdrConnectorError]) -> list[CdrConnectorError]:
    found: list[CdrConnectorError] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found.extend(_leaves(error))
        else:
            found.append(error)
    return found


class _StartUp:
    """The start-up steps of `SourceRunner.run` (see the module docstring) and what they
    made."""

    def __init__(self, connector: SourceRunner, settings: Settings) -> None:
        # Made first: it knows every secret of the settings (and the tokens it will get), and
        # the errors quoted in /readyz and the log go through its redactor.
        self.recorder = metrics.PrometheusRecorder(settings.source.name)
        self.api = VendorApiClient(
            settings.source, settings.poll, clock=connector.clock, recorder=self.recorder
        )
        self.sink: TransactionalSink | None = None
        self._connector = connector
        self._settings = settings
        self._backoff = Backoff(
            settings.poll.retry_initial_seconds, settings.poll.retry_max_seconds, random.Random()
        )
        # Blocking steps run here rather than on the loop's default executor, which
        # asyncio.run waits for at exit: a signal must not wait for a Kafka timeout.
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="start-up")

    async def run(self) -> Pipeline:
        connector, settings = self._connector, self._settings
        encoder = await self._step(
            "the schema registry" if settings.avro.schema_registry_url else "the Avro schema",
            lambda: self._in_thread(build_encoder, settings),
            on_thread=True,
        )
        source = settings.source.name
        metrics.init_source(source, version=__version__, schema=encoder.schema_tag)
        api = self.api
        # Logging in takes no record from the vendor; it goes first so that refused
        # credentials end the process before anything touches Kafka.
        await self._step("the vendor API login", api.login)
        await self._step(
            "Kafka (its topics)", lambda: self._in_thread(ensure_topics, settings), on_thread=True
        )
        recorder = self.recorder
        sink = self.sink = TransactionalSink(settings, recorder=recorder)
        poller = Poller(api, settings.source, settings.poll, connector.clock, recorder)
        pipeline = Pipeline(
            settings,
            poller,
            sink,
            encoder,
            connector.clock,
            recorder=recorder,
            redactor=api.redactor,
        )
        await self._step(
            "the Kafka producer and the checkpoint state", pipeline.start, on_thread=True
        )
        connector.pipeline = pipeline
        connector.starting = None
        metrics.PRODUCER_QUEUE_DEPTH.labels(source).set_function(sink.queue_depth)
        metrics.UP.labels(source).set(1)
        took = connector.clock.monotonic() - connector.created
        metrics.SOURCE_START.labels(source).observe(took)
        log.info(
            "cdr-connector %s running source %s (started in %.1f s)", __version__, source, took
        )
        return pipeline

    async def close(self) -> None:
        """Close what start-up made; a step's thread cut short is not waited for."""
        await _close_quietly(self.sink, self.api)
        self._threads.shutdown(wait=not self._connector.abandoned, cancel_futures=True)

    async def _step(
        self, name: str, action: Callable[[], Awaitable[T]], *, on_thread: bool = False
    ) -> T:
        """`action` until it succeeds, with backoff after each RetryableError; anything else
        is raised. Raises _StoppedStartingError when a signal arrives meanwhile."""
        connector = self._connector
        connector.starting = f"starting: {name}"
        failures = 0
        while True:
            attempt = asyncio.ensure_future(action())
            if not await self._until_stop(attempt):
                connector.abandoned = on_thread
                raise _StoppedStartingError
            try:
                return attempt.result()
            except RetryableError as exc:
                failures += 1
                error = _one_line(str(exc), self.api.redactor)
                delay = exc.retry_after or self._backoff.delay(failures)
                times = "once" if failures == 1 else f"{failures} times"
                connector.starting = (
                    f"starting: waiting for {name}, which failed {times} (trying again): {error}"
                )
                log.warning(
                    "start-up: %s failed (%s); trying again in %.1f s",
                    name,
                    error,
                    delay,
                    extra={"event": "startup_wait", "step": name, "failures": failures},
                )
            if not await self._until_stop(asyncio.ensure_future(connector.clock.sleep(delay))):
                raise _StoppedStartingError

    async def _until_stop(self, work: asyncio.Future[T]) -> bool:
        """Wait for `work` or a stop, whichever comes first; False (and `work` cancelled) on a
        stop."""
        stop = asyncio.ensure_future(self._connector.wait_stop_requested())
        either: set[asyncio.Future[Any]] = {work, stop}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work.done():
            return True
        work.cancel()
        return False

    async def _in_thread(self, fn: Callable[[Settings], T], settings: Settings) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, fn, settings)


def _one_line(text: str, redact: Redactor) -> str:
    """`text` with every secret replaced, on one line, cut to `_REASON_ERROR_LIMIT`."""
    flat = " ".join(redact(text).split())
    if len(flat) <= _REASON_ERROR_LIMIT:
        return flat
    return flat[: _REASON_ERROR_LIMIT - 3] + "..."


async def _close_quietly(sink: TransactionalSink | None, api: VendorApiClient | None) -> None:
    if sink is not None:
        try:
            await sink.close()
        except CdrConnectorError as exc:
            log.warning("closing the Kafka producer: %s", exc)
    if api is not None:
        await api.close()
