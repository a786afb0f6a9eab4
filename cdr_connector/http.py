"""The operations listener: /metrics, /livez and /readyz.

/livez answers 200 whenever the event loop can run a handler: no dependency is checked, so a
broker outage never gets the pod restarted. /readyz answers 503 with a JSON reason until the
connector is logged in, has its producer and its state, and while it shuts down.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdr_connector.metrics import REGISTRY


def create_ops_app(not_ready_reason: Callable[[], str | None]) -> web.Application:
    async def metrics_handler(_request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        reason = not_ready_reason()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.Response(
            status=503,
            body=orjson.dumps({"status": "not ready", "reason": reason}),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


async def start_ops_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the listener; returns the runner (for cleanup) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
