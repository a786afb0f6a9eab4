"""Wires the parts together, supervises the pipeline, and turns signals into a bounded shutdown.

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
import signal
import sys
from dataclasses import dataclass, field

from cdr_connector import __version__, bill_writer, metrics
from cdr_connector.api import VendorApiClient
from cdr_connector.avro import RecordEncoder, assert_compiled_fastavro, build_encoder
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.config import Settings
from cdr_connector.errors import CdrConnectorError
from cdr_connector.http import create_ops_app, start_ops_server
from cdr_connector.kafka_sink import TransactionalSink, ensure_topics
from cdr_connector.pipeline import Backfill, Pipeline
from cdr_connector.poller import Poller

log = logging.getLogger(__name__)


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
    """Set when shutdown overran its bound: the producer thread may still be blocked, so the
    process must exit without waiting for it (see `__main__`)."""

    async def run(self) -> int:
        """Run until stopped by a signal or a finished backfill (exit 0), or a permanent error
        (exit 1)."""
        settings = self.settings
        source = settings.source.name
        assert_compiled_fastavro()
        _tune_garbage_collection()
        _report_writer_build()
        encoder = self.encoder = await asyncio.to_thread(build_encoder, settings)
        metrics.init_source(source, version=__version__, schema=encoder.schema_tag)
        api = VendorApiClient(settings.source, settings.poll, clock=self.clock)
        try:
            # Fail fast at start: an unreachable or refusing vendor API is an error and a
            # non-zero exit (after the client's retries), not a loop of warnings. Later
            # outages are retried for as long as they last.
            await api.login()
            await asyncio.to_thread(ensure_topics, settings)
        except BaseException:
            await api.close()
            raise
        sink = TransactionalSink(settings)
        pipeline = Pipeline(
            settings,
            Poller(api, settings.source, settings.poll, self.clock),
            sink,
            encoder,
            self.clock,
        )
        self.pipeline = pipeline
        metrics.PRODUCER_QUEUE_DEPTH.labels(source).set_function(sink.queue_depth)
        metrics.UP.labels(source).set(1)
        runner, self.ops_port = await start_ops_server(
            create_ops_app(pipeline.status.not_ready_reason), settings.http.host, settings.http.port
        )
        _install_signal_handlers(pipeline)
        self.started.set()
        log.info(
            "cdr-connector %s running source %s; metrics on port %d",
            __version__,
            source,
            self.ops_port,
        )
        try:
            return await self._supervise(pipeline)
        finally:
            if not self.abandoned:
                await _close_quietly(sink, api)
            await runner.cleanup()

    async def _supervise(self, pipeline: Pipeline) -> int:
        task = asyncio.create_task(pipeline.run(self.backfill), name="pipeline")
        stop_requested = asyncio.create_task(pipeline.wait_stop_requested())
        await asyncio.wait({task, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=self.settings.shutdown_timeout_seconds)
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


def _install_signal_handlers(pipeline: Pipeline) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, pipeline, signum)


def _on_signal(pipeline: Pipeline, signum: int) -> None:
    log.info("received %s: stopping", signal.Signals(signum).name)
    pipeline.request_stop()


async def _close_quietly(sink: TransactionalSink, api: VendorApiClient) -> None:
    try:
        await sink.close()
    except CdrConnectorError as exc:
        log.warning("closing the Kafka producer: %s", exc)
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
