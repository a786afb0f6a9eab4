"""Running the simulator on a real socket: for tests (`running_simulator`) and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from cdr_connector.simulator.clock import Clock
from cdr_connector.simulator.config import SimulatorConfig
from cdr_connector.simulator.fleet import FLEET, Fleet
from cdr_connector.simulator.server import create_app
from cdr_connector.simulator.state import SimulatorState

# Requests still in flight at shutdown (a `slow` fault sleeps 30 s) are cancelled after this.
SHUTDOWN_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class RunningSimulator:
    url: str  # the API's base URL, e.g. "http://127.0.0.1:PORT/"
    admin_url: str  # e.g. "http://127.0.0.1:PORT/admin/"
    port: int
    fleet: Fleet  # direct access for tests; use it from the event loop only

    @property
    def state(self) -> SimulatorState:
        """The account of a one-account simulator (LookupError if it serves several)."""
        return self.fleet.only()


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig, *, clock: Clock | None = None
) -> AsyncIterator[RunningSimulator]:
    """Start the simulator (preloading its backlog first), yield where it listens, stop it."""
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1])
        url = f"http://{config.host}:{port}/"
        yield RunningSimulator(url, f"{url}admin/", port, app[FLEET])
    finally:
        await runner.cleanup()
