"""Scenario 11: the vendor's address starts redirecting, mid-stream, to another host.

A front server stands at the vendor URL the connector knows and passes every request to the
simulator, until it starts answering 307 and 308 with a `Location` on another host (a plain
http one, as a hijacked or misconfigured front would). Following that redirect would post the
same form, `appid` and `accesskey` included, to the other host. The connector must follow
none: the other host receives no request at all, and the connector stops with a message that
names the `Location` (a person must fix `source.api_url`). Nothing it fetched is lost: once the
front passes requests again, a restart publishes every record exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from cdr_connector.simulator import running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import ACCESSKEY, Scene, finish, simulator_config
from tests.integration.harness import Topics, wait_for_records
from tests.unit.test_api_redirects import elsewhere

BACKLOG = 400
RATE = 30.0
STOP_TIMEOUT = 30.0


class Front:
    """The vendor's address: passes requests on to `upstream`, or redirects them to
    `elsewhere` once `redirecting` is set (307 and 308 in turn)."""

    def __init__(self, upstream: str, elsewhere: str) -> None:
        self.upstream = upstream
        self.elsewhere = elsewhere
        self.redirecting = False
        self.redirected = 0
        self._codes = itertools.cycle((307, 308))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.redirecting:
            self.redirected += 1
            status = next(self._codes)
            return web.Response(status=status, headers={"Location": self.elsewhere})
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "")}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream, data=body, headers=headers) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )


@asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_a_redirecting_vendor_gets_no_credential_and_loses_no_record(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=111, backlog=BACKLOG, rate=RATE)
    async with (
        running_simulator(config) as sim,
        elsewhere() as (elsewhere_address, received),
    ):
        front = Front(sim.url, f"http://{elsewhere_address}/api/")
        async with serving(front.handle) as front_url:
            scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
            first = scene.connector("redirected", CDR_SOURCE__API_URL=front_url)
            try:
                await first.wait_ready()
                await wait_for_records(kafka_bootstrap, topics.data, BACKLOG)
                front.redirecting = True
                code = await first.wait_exit(timeout=STOP_TIMEOUT)
                output = first.output()
            finally:
                first.kill()
            assert code != 0, f"the connector went on past a redirect:\n{output}"
            assert front.redirected >= 1
            assert received == [], "a request reached the other host"
            assert elsewhere_address in output
            assert ACCESSKEY not in output

            # The fix: the vendor's address serves again; a restart takes up where it stopped.
            front.redirecting = False
            second = scene.connector("after-fix", CDR_SOURCE__API_URL=front_url)
            try:
                await second.wait_ready()
                await asyncio.sleep(1.0)  # live traffic on top of what waited
                outcome, records = await finish(
                    scene,
                    second,
                    "11. a redirecting vendor",
                    started,
                    note=f"{front.redirected} redirect(s) refused, 0 requests elsewhere",
                )
            finally:
                second.kill()
    fault_report.add(outcome)
    outcome.assert_clean()
    assert received == []
    assert len(records) > BACKLOG
