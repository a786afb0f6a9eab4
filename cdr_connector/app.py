"""The process: its sources, the operations listener, signals and the exit policy.

The operations listener comes first, so that /livez answers while the sources start and /readyz
says what each waits for. Then every source runs on its own (`runner.SourceRunner`: its own API
client, transactional producer and pipeline): all of them, or with `fleet.enabled` those the
replicas' consumer group assigns to this one (`fleet.Membership`). One source's failure (its
vendor down, its credentials refused, its brake) makes that source unready, in /readyz and the
`cdr_connector_source_ready` gauge, and never stops the others. The process ends when every
source it runs has ended: exit 0 after a stop or a finished backfill; with every source failed,
the first start-up error is raised (`__main__` gives it its exit status) or the exit status is
1. A port already in use for the listener is invalid settings (exit 2).

Shutdown (SIGTERM or SIGINT): every source stops fetching at once, commits the batches already
fetched and closes its producer, and the process exits 0, all within
`shutdown_timeout_seconds`.
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
from cdr_connector.avro import assert_compiled_fastavro
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.config import Settings
from cdr_connector.fleet import Membership
from cdr_connector.http import create_ops_app, start_ops_server
from cdr_connector.pipeline import Pipeline
from cdr_connector.runner import SourceRunner
from cdr_connector.scheduler import Backfill

log = logging.getLogger(__name__)


@dataclass
class Connector:
    """The running sources of one process, for tests that need to look inside."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    ops_port: int | None = None
    backfill: Backfill | None = None
    runners: dict[str, SourceRunner] = field(default_factory=dict)
    """The sources this process runs now, by name."""
    abandoned: bool = False
    """Set when a source's stop overran its bound or cut a thread's step short: the process
    must exit without waiting for that thread (see `run_connector`)."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _tasks: dict[str, asyncio.Task[int]] = field(default_factory=dict, init=False, repr=False)
    _sources: dict[str, Settings] = field(init=False, repr=False)
    """Each configured source's settings, by name: worked out once, not at every probe."""

    def __post_init__(self) -> None:
        self._sources = {each.source.name: each for each in self.settings.per_source()}

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline of the one source, when this process runs exactly one."""
        if len(self.runners) != 1:
            return None
        return next(iter(self.runners.values())).pipeline

    def not_ready_reason(self) -> str | None:
        """What /readyz says: each unready source's reason, named when there are several.

        A replica of a fleet is ready while it runs, whatever its sources: one broken account
        must not hold up a rollout (its readiness is `unready_sources` and the
        `cdr_connector_source_ready` gauge)."""
        if self._stop.is_set() and (not self.runners or self.settings.fleet.enabled):
            return "shutting down"
        unready = self.unready_sources()
        if not unready or self.settings.fleet.enabled:
            return None
        if len(self._sources) == 1:
            return next(iter(unready.values()))
        return "; ".join(f"source {name}: {reason}" for name, reason in sorted(unready.items()))

    def unready_sources(self) -> dict[str, str]:
        """The sources this process runs that are not ready, and why."""
        reasons = {name: runner.not_ready_reason() for name, runner in self.runners.items()}
        return {name: reason for name, reason in sorted(reasons.items()) if reason is not None}

    def request_stop(self) -> None:
        self._stop.set()
        for runner in self.runners.values():
            runner.request_stop()

    async def wait_stop_requested(self) -> None:
        await self._stop.wait()

    async def run(self) -> int:
        """Run until stopped by a signal or finished backfills (exit 0), or every source
        failed (exit 1, or the first start-up error raised)."""
        assert_compiled_fastavro()
        _tune_garbage_collection()
        report_writer_build()
        listener = await start_ops_server(
            create_ops_app(self.not_ready_reason, self.unready_sources), self.settings.http
        )
        self.ops_port = listener.port
        _install_signal_handlers(self)
        names = list(self._sources)
        log.info(
            "cdr-connector %s starting source(s) %s; /metrics, /livez and /readyz on port %d",
            __version__,
            ", ".join(names),
            self.ops_port,
        )
        try:
            if self.settings.fleet.enabled:
                return await self._run_as_member()
            return await self._run_all()
        finally:
            await listener.close()

    async def _run_all(self) -> int:
        """Every configured source, until each has ended."""
        for settings in self._sources.values():
            self.start_source(settings)
        codes = await asyncio.gather(*self._tasks.values())
        return self._exit_status(list(codes))

    async def _run_as_member(self) -> int:
        """The sources the group assigns to this replica, until a stop."""
        membership = Membership(
            self.settings, sorted(self._sources), self._assigned, self._revoked, self._lost
        )
        member = asyncio.create_task(membership.run(self._stop))
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({member, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not member.done():  # stopping: leaving the group stops the sources first
            bound = asyncio.ensure_future(self.clock.sleep(self.settings.shutdown_timeout_seconds))
            await asyncio.wait({member, bound}, return_when=asyncio.FIRST_COMPLETED)
            bound.cancel()
        stopped.cancel()
        if not member.done():
            log.error(
                "leaving the group did not finish within %.0fs; the sources it held are "
                "recovered by their next owner's start-up sweep",
                self.settings.shutdown_timeout_seconds,
            )
            self.abandoned = True
            return 0
        member.result()
        return 0

    async def _assigned(self, names: list[str]) -> None:
        if self._stop.is_set():
            return  # leaving: the group takes them back when this replica has left
        for name in names:
            if name not in self.runners:
                self.start_source(self._sources[name])

    async def _revoked(self, names: list[str]) -> None:
        """Stop these sources and wait for them (bounded): only then may another replica
        take them."""
        await self._let_go(names, at_once=False)

    async def _lost(self, names: list[str]) -> None:
        """Drop these sources: another replica may own them already."""
        await self._let_go(names, at_once=True)

    async def _let_go(self, names: list[str], *, at_once: bool) -> None:
        stopping = [self._tasks[name] for name in names if name in self._tasks]
        for name in names:
            if name in self.runners:
                if at_once:
                    self.runners[name].drop()
                else:
                    self.runners[name].request_stop()
        if stopping:
            await asyncio.wait(stopping)
        for name in names:
            self.runners.pop(name, None)
            self._tasks.pop(name, None)
            metrics.forget_source(name)

    def start_source(self, settings: Settings) -> SourceRunner:
        runner = SourceRunner(settings, self.clock, self.backfill)
        self.runners[runner.name] = runner
        self._tasks[runner.name] = asyncio.create_task(
            self._run_source(runner), name=f"source-{runner.name}"
        )
        metrics.SOURCE_READY.labels(runner.name).set_function(
            lambda: 0.0 if runner.not_ready_reason() else 1.0
        )
        return runner

    async def _run_source(self, runner: SourceRunner) -> int:
        try:
            return await runner.run()
        finally:
            self.abandoned = self.abandoned or runner.abandoned

    def _exit_status(self, codes: list[int]) -> int:
        if all(code == 0 for code in codes):
            if not self.abandoned:
                log.info("stopped cleanly")
            return 0
        if all(code != 0 for code in codes):
            for runner in self.runners.values():
                if runner.start_error is not None:
                    raise runner.start_error
        return 1


def report_writer_build() -> None:
    """Say at start-up whether the bill writer runs compiled: its CPU per record depends on it."""
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
