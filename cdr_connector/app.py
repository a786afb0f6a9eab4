"""Wires the parts together, supervises the pipeline, and turns signals into a bounded shutdown.

Start-up: the operations listener comes first, so that /livez answers while the rest starts and
/readyz says what start-up waits for. Then, in order, each step retried with backoff for as long
as it fails with a RetryableError (the reason, its last error redacted, is what /readyz says):
  1. the Avro encoder (with a schema registry: registering the schema);
  2. the vendor API login;
  3. Kafka: the topics exist (or are created);
  4. the Kafka producer (fencing older instances) and the checkpoint state (`Pipeline.start`).
A PermanentError (refused credentials, invalid settings, a fenced producer) ends the process
with its message and the exit status of `__main__`; a port already in use for the listener is
invalid settings (exit 2). A signal during start-up stops it at once (exit 0): nothing was
fetched yet.

Shutdown (SIGTERM or SIGINT): the pipeline stops fetching at once, the batches already fetched
are committed, the producer is closed, and the process exits 0 — all within
`shutdown_timeout_seconds`. Past that bound the pipeline is cancelled and any open transaction is
aborted: the records it held were fetched with syncflag=1, and the start-up sweep of the next run
publishes them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cdr_connector import __version__, bill_writer, metrics
from cdr_connector.api import VendorApiClient
from cdr_connector.avro import RecordEncoder, assert_compiled_fastavro, build_encoder
from cdr_connector.backoff import Backoff
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError, RetryableError
from cdr_connector.http import create_ops_app, start_ops_server
from cdr_connector.kafka_sink import TransactionalSink, ensure_topics
from cdr_connector.pipeline import Pipeline
from cdr_connector.poller import Poller
from cdr_connector.redaction import Redactor
from cdr_connector.scheduler import Backfill

log = logging.getLogger(__name__)
T = TypeVar("T")

# An error quoted in /readyz is cut here: enough to recognise it, short enough for a probe.
_REASON_ERROR_LIMIT = 300


class _StoppedStartingError(Exception):
    """A signal arrived while a start-up step was under way or waiting."""


@dataclass
class Connector:
    """The running parts of one source, for tests that need to look inside."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    pipeline: Pipeline | None = None
    encoder: RecordEncoder | None = None
    ops_port: int | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    backfill: Backfill | None = None
    abandoned: bool = False
    """Set when shutdown overran its bound, or a signal cut a start-up step short that runs on
    a thread: that thread may still be blocked (in librdkafka, on the network), so the process
    must exit without waiting for it (see `run_connector`)."""
    starting: str | None = field(default="starting", init=False)
    """What start-up is doing or waiting for; None once it is done."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def not_ready_reason(self) -> str | None:
        """What /readyz says: the start-up step, then the pipeline's own reason."""
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
        """Run until stopped by a signal or a finished backfill (exit 0), or a permanent error
        (exit 1, or the exception raised during start-up)."""
        settings = self.settings
        assert_compiled_fastavro()
        _tune_garbage_collection()
        _report_writer_build()
        listener = await start_ops_server(create_ops_app(self.not_ready_reason), settings.http)
        self.ops_port = listener.port
        _install_signal_handlers(self)
        log.info(
            "cdr-connector %s starting source %s; /metrics, /livez and /readyz on port %d",
            __version__,
            settings.source.name,
            self.ops_port,
        )
        try:
            return await self._start_and_supervise()
        finally:
            await listener.close()

    async def _start_and_supervise(self) -> int:
        steps = _StartUp(self, self.settings)
        try:
            try:
                pipeline = await steps.run()
            except _StoppedStartingError:
                log.info("stopped during start-up")
                return 0
            return await self._supervise(pipeline)
        finally:
            if not self.abandoned:
                await steps.close()

    async def _supervise(self, pipeline: Pipeline) -> int:
        task = asyncio.create_task(pipeline.run(self.backfill), name="pipeline")
        stop_requested = asyncio.create_task(pipeline.wait_stop_requested())
        await asyncio.wait({task, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            bound = asyncio.ensure_future(self.clock.sleep(self.settings.shutdown_timeout_seconds))
            await asyncio.wait({task, bound}, return_when=asyncio.FIRST_COMPLETED)
            bound.cancel()
            if not task.done():
                task.cancel()  # not awaited: it may be stuck behind the blocked producer thread
                log.error(
                    "shutdown did not finish within %.0fs; open work is abandoned and will "
                    "be recovered by the next start-up sweep",
                    self.settings.shutdown_timeout_seconds,
                )
                self.abandoned = True
                return 0
        stop_requested.cancel()
        errors = _connector_errors(task)
        if errors:
            for error in errors:
                log.error("stopped: %s", error)
            metrics.UP.labels(self.settings.source.name).set(0)
            return 1
        log.info("stopped cleanly")
        return 0


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


def _report_writer_build() -> None:
    if bill_writer.is_compiled():
        log.info("bill writer and batch writer: compiled (mypyc)")
    else:
        log.warning(
            "bill writer and batch writer: running from Python source, which takes about half "
            "as much CPU again as their mypyc build; install cdr-connector where a C compiler "
            "is available to compile them"
        )


def _tune_garbage_collection() -> None:
    """A round keeps thousands of bills, records and messages alive until its commit, which
    makes the default thresholds run full collections often; raising them measured +14%
    throughput (bench/README.md). Objects of start-up are frozen out of every collection."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _install_signal_handlers(connector: Connector) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, connector, signum)


def _on_signal(connector: Connector, signum: int) -> None:
    log.info("received %s: stopping", signal.Signals(signum).name)
    connector.request_stop()


class _StartUp:
    """The start-up steps of `Connector.run` (see the module docstring) and what they made."""

    def __init__(self, connector: Connector, settings: Settings) -> None:
        # Made first: it knows every secret of the settings (and the tokens it will get), and
        # the errors quoted in /readyz and the log go through its redactor.
        self.api = VendorApiClient(settings.source, settings.poll, clock=connector.clock)
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
        connector.encoder = encoder
        source = settings.source.name
        metrics.init_source(source, version=__version__, schema=encoder.schema_tag)
        api = self.api
        # Logging in takes no record from the vendor; it goes first so that refused
        # credentials end the process before anything touches Kafka.
        await self._step("the vendor API login", api.login)
        await self._step(
            "Kafka (its topics)", lambda: self._in_thread(ensure_topics, settings), on_thread=True
        )
        sink = self.sink = TransactionalSink(settings)
        recorder = metrics.PrometheusRecorder(source)
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
        connector.started.set()
        log.info("cdr-connector %s running source %s", __version__, source)
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


def run_connector(settings: Settings, backfill: Backfill | None = None) -> int:
    """Run the connector in a new event loop; never outlive the shutdown bound."""
    connector = Connector(settings, backfill=backfill)
    code = asyncio.run(connector.run())
    if connector.abandoned:
        # The producer's thread may be blocked in librdkafka for a while yet; the interpreter
        # would wait for it at exit. Nothing is lost: the open transaction was never committed.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code
