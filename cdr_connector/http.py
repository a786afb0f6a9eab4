"""The operations listener: /metrics, /livez and /readyz.

/livez answers 200 whenever the event loop can run a handler: no dependency is checked, so a
broker outage never gets the pod restarted. /readyz answers 503 with a JSON reason until the
connector has started (and says which start-up step it waits for, and why), and while it shuts
down. /metrics is prometheus_client's own aiohttp exposition of the project's registry: the
Prometheus text format, or OpenMetrics when the `Accept` header asks for it, gzip-compressed when
`Accept-Encoding` allows.

Clients that connect and then send little or nothing must not take the listener down: each open
connection holds a file descriptor, and a process out of descriptors can accept no probe at all.
`_ConnectionGuard` sits between the listening socket and aiohttp:

- a connection whose request headers are not complete `header_timeout_seconds` after it was
  accepted is closed (aborted: its descriptor is freed at once). Between the requests of a
  kept-alive connection, aiohttp's keep-alive timeout, set to the same value, does the same;
- at most `max_connections` are open. A new connection beyond that closes the oldest one still
  waiting for its request headers, if that one has had `EVICTION_GRACE_SECONDS` to send them;
  otherwise the new connection is closed at once. A probe sends its request as soon as it
  connects, so slow clients that hold their connections keep it out for a second at most, and
  a burst of new connections cannot close it before its request was read;
- connections closed for either reason, and the event loop's "socket.accept() out of system
  resource" errors (repeated up to a hundred times a second while the process is out of
  descriptors), are logged at most once per `_LOG_INTERVAL_SECONDS`, with how many were left out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from cdr_connector.config import HttpSettings
from cdr_connector.errors import ConfigError
from cdr_connector.metrics import REGISTRY

log = logging.getLogger(__name__)

# One line per minute at most for each kind of trouble the listener reports; the line says how
# many were left out.
_LOG_INTERVAL_SECONDS = 60.0
# The event loop's message when accept() fails for lack of descriptors, memory or buffers.
_ACCEPT_ERROR = "socket.accept() out of system resource"
# Requests to these endpoints are a request line and a few short headers; aiohttp's defaults
# (8190-byte lines, 128 headers) would let each slow connection hold about 1 MiB.
_MAX_LINE_BYTES = 4096
_MAX_HEADERS = 32
# In-flight handlers get this long at shutdown: every handler here answers at once, and a client
# that never reads its answer must not hold the process past its shutdown bound.
_SHUTDOWN_GRACE_SECONDS = 1.0
_END_OF_HEADERS = b"\r\n\r\n"
# A connection waiting for its request headers is closed to make room for a new one only after
# this long: the event loop accepts up to a hundred connections before it reads from any, and
# a probe's request, sent as it connects, must be read before newer connections can push it out.
EVICTION_GRACE_SECONDS = 1.0


def create_ops_app(
    not_ready_reason: Callable[[], str | None],
    unready_sources: Callable[[], dict[str, str]] | None = None,
) -> web.Application:
    """`unready_sources`: sources that are not ready while the process is (a replica of a
    fleet stays ready, so that one broken account holds up no rollout); a ready answer names
    them."""

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        reason = not_ready_reason()
        if reason is None:
            sources = unready_sources() if unready_sources is not None else {}
            if sources:
                return web.json_response({"status": "ready", "unready_sources": sources})
            return web.json_response({"status": "ready"})
        return web.Response(
            status=503,
            body=orjson.dumps({"status": "not ready", "reason": reason}),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(REGISTRY))
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


class OpsListener:
    """The running listener: where it listens, and how to stop it."""

    def __init__(self, runner: web.AppRunner, port: int, accept_errors: _AcceptErrorLog) -> None:
        self._runner = runner
        self._accept_errors = accept_errors
        self.port = port

    async def close(self) -> None:
        self._accept_errors.uninstall()
        await self._runner.cleanup()


async def start_ops_server(
    app: web.Application,
    settings: HttpSettings,
    *,
    eviction_grace: float = EVICTION_GRACE_SECONDS,
) -> OpsListener:
    """Listen on `settings.host:settings.port` (port 0: any free port, see `OpsListener.port`).
    `eviction_grace`: how long a connection waiting for its headers is safe from being pushed
    out by a new one (capped by `settings.header_timeout_seconds`).

    Raises ConfigError when the address cannot be taken (in use, not local, not permitted).
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_GRACE_SECONDS,
        keepalive_timeout=settings.header_timeout_seconds,
        max_line_size=_MAX_LINE_BYTES,
        max_field_size=_MAX_LINE_BYTES,
        max_headers=_MAX_HEADERS,
    )
    await runner.setup()
    site = _GuardedSite(runner, settings, eviction_grace)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"http.host/http.port: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}; stop whatever uses that address or choose another "
            "http.port"
        ) from exc
    accept_errors = _AcceptErrorLog(asyncio.get_running_loop())
    accept_errors.install()
    return OpsListener(runner, site.port, accept_errors)


class _GuardedSite(web.BaseSite):
    """aiohttp's TCPSite with `_ConnectionGuard` as the listening socket's protocol factory."""

    def __init__(
        self, runner: web.AppRunner, settings: HttpSettings, eviction_grace: float
    ) -> None:
        super().__init__(runner)
        self._settings = settings
        self._eviction_grace = eviction_grace
        self._guard: _ConnectionGuard | None = None
        self.port = settings.port

    @property
    def name(self) -> str:
        return f"http://{self._settings.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        handlers = self._runner.server
        assert handlers is not None  # runner.setup() made it
        loop = asyncio.get_running_loop()
        self._guard = _ConnectionGuard(
            handlers,
            loop,
            max_connections=self._settings.max_connections,
            header_timeout=self._settings.header_timeout_seconds,
            eviction_grace=self._eviction_grace,
        )
        server = await loop.create_server(
            self._guard, self._settings.host, self._settings.port, backlog=self._backlog
        )
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await super().stop()
        if self._guard is not None:
            self._guard.close()


class _ConnectionGuard:
    """The protocol factory of the listening socket; see the module docstring.

    Connections are counted from the moment they are accepted (the factory call), not from
    `connection_made`: the event loop accepts up to a hundred connections in one turn before
    any of them is made.
    """

    def __init__(
        self,
        server: web.Server,
        loop: asyncio.AbstractEventLoop,
        *,
        max_connections: int,
        header_timeout: float,
        eviction_grace: float,
    ) -> None:
        self._server = server
        self._loop = loop
        self._max_connections = max_connections
        self._header_timeout = header_timeout
        self._eviction_grace = min(eviction_grace, header_timeout)
        # Both in order of acceptance: the first of `_awaiting_headers` is the oldest.
        self._open: dict[_GuardedConnection, None] = {}
        self._awaiting_headers: dict[_GuardedConnection, None] = {}
        self._slow = ThrottledLog(
            loop,
            "ops listener: closed a connection that sent no complete request within %g s "
            "(http.header_timeout_seconds), or to make room for a new one beyond %d open "
            "(http.max_connections)",
        )
        self._refused = ThrottledLog(
            loop,
            "ops listener: closed a new connection at once: %d connections are open "
            "(http.max_connections), each busy with a request or connected within the last "
            "second",
        )

    def __call__(self) -> asyncio.Protocol:
        now = self._loop.time()
        if len(self._open) >= self._max_connections:
            oldest = next(iter(self._awaiting_headers), None)
            if oldest is None or now - oldest.accepted_at < self._eviction_grace:
                self._refused.event(self._max_connections)
                return _Refused()
            oldest.drop()
        connection = _GuardedConnection(self, self._server(), accepted_at=now)
        self._open[connection] = None
        self._awaiting_headers[connection] = None
        connection.deadline = self._loop.call_at(now + self._header_timeout, connection.expire)
        return connection

    def headers_complete(self, connection: _GuardedConnection) -> None:
        self._awaiting_headers.pop(connection, None)

    def release(self, connection: _GuardedConnection, *, slow: bool = False) -> None:
        """Forget `connection` (again: harmless); `slow` when the guard closed it."""
        was_open = connection in self._open
        self._open.pop(connection, None)
        self._awaiting_headers.pop(connection, None)
        if was_open and slow:
            self._slow.event(self._header_timeout, self._max_connections)

    def close(self) -> None:
        """Stop the pending log lines. The connections are aiohttp's to close (its server
        shuts every one down): none of them was slow, the listener is going."""
        self._slow.close()
        self._refused.close()


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's request handler behind a watch for the end of the first request's headers.

    Every event of the transport is passed on unchanged; the handler never sees a connection
    that was dropped before it was made.
    """

    def __init__(
        self, guard: _ConnectionGuard, handler: web.RequestHandler, *, accepted_at: float
    ) -> None:
        self.accepted_at = accepted_at
        self._guard = guard
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._handler_connected = False
        self._dropped = False
        self._tail = b""  # the last bytes received, to find a CRLF CRLF split between reads
        self._awaiting_headers = True
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self._dropped:
            transport.abort()
            return
        self._handler_connected = True
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._awaiting_headers = False
                self._cancel_deadline()
                self._guard.headers_complete(self)
            else:
                self._tail = seen[-(len(_END_OF_HEADERS) - 1) :]
        self._handler.data_received(data)

    def eof_received(self) -> None:
        self._handler.eof_received()  # aiohttp closes on EOF: returning None says so

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._guard.release(self)
        if self._handler_connected:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def expire(self) -> None:
        """The header timeout passed."""
        self.deadline = None
        if self._awaiting_headers:
            self.drop()

    def drop(self) -> None:
        """Abort the connection, counting it as slow; its descriptor is freed at once."""
        self._dropped = True
        self._cancel_deadline()
        self._guard.release(self, slow=True)
        if self._transport is not None:
            self._transport.abort()

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class ThrottledLog:
    """A warning at most once per interval. The first event is logged at once; the events
    after it within the interval are counted and reported in one line when it ends, with the
    details of the last one."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, message: str, interval: float | None = None
    ) -> None:
        """`interval`: `_LOG_INTERVAL_SECONDS` unless given."""
        self._loop = loop
        self._message = message
        self._interval = _LOG_INTERVAL_SECONDS if interval is None else interval
        self._quiet_until = 0.0
        self._left_out = 0
        self._last_args: tuple[object, ...] = ()
        self._report: asyncio.TimerHandle | None = None

    def event(self, *args: object) -> None:
        """One occurrence; `args` fill the message's placeholders."""
        now = self._loop.time()
        if self._report is None and now >= self._quiet_until:
            log.warning(self._message, *args)
            self._quiet_until = now + self._interval
            return
        self._left_out += 1
        self._last_args = args
        if self._report is None:
            self._report = self._loop.call_at(self._quiet_until, self._report_left_out)

    def close(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._report = None

    def _report_left_out(self) -> None:
        self._report = None
        count, self._left_out = self._left_out, 0
        log.warning(
            self._message + "; %d more times in the last %g s",
            *self._last_args,
            count,
            self._interval,
        )
        self._quiet_until = self._loop.time() + self._interval


class _AcceptErrorLog:
    """The event loop's exception handler while the listener runs: the accept errors of a
    process out of descriptors go through a `ThrottledLog`, anything else to the handler that
    was there before."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None
        self._installed = False
        self._throttled = ThrottledLog(
            loop,
            "ops listener: cannot accept connections: %s (the process has run out of file "
            "descriptors or memory; http.max_connections bounds the listener's own share)",
        )

    def install(self) -> None:
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._handle)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            self._loop.set_exception_handler(self._previous)
            self._installed = False
        self._throttled.close()

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_ERROR:
            self._throttled.event(context.get("exception") or _ACCEPT_ERROR)
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)
