"""A small HTTP forward proxy on 127.0.0.1 for tests: CONNECT tunnels (https targets) and
absolute-form requests (http targets), an optional Basic `Proxy-Authorization` check, and a
record of every request that reached it.

One request per client connection: the answer to an absolute-form request is relayed with
`Connection: close`, so a client opens a new connection for its next request and every
request passes the credential check and is recorded.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from yarl import URL

_HEAD_END = b"\r\n\r\n"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade"}
)


@dataclass(frozen=True)
class Passed:
    """A request that reached the proxy: its method, target and whether it was let through."""

    method: str
    target: str
    proxy_authorization: str | None
    allowed: bool


@dataclass
class ForwardProxy:
    credentials: tuple[str, str] | None = None
    url: str = ""
    seen: list[Passed] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    def allowed(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return header == f"Basic {expected}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        try:
            head = await reader.readuntil(_HEAD_END)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = [tuple(line.split(":", 1)) for line in header_lines if ":" in line]
        auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
        allowed = self.allowed(auth)
        self.seen.append(Passed(method, target, auth, allowed))
        try:
            if not allowed:
                await _refuse(writer)
            elif method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, headers, reader, writer)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            pass  # only the proxy's shutdown cancels a handler: the tunnel just ends
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _pipe_both(reader, writer, up_reader, up_writer)

    async def _forward(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = URL(target)
        assert url.is_absolute(), f"a forward proxy gets absolute-form targets, got {target}"
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length)
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        lines = [f"{method} {url.raw_path_qs} HTTP/1.1", *(f"{k}:{v}" for k, v in kept)]
        lines.append("Connection: close")
        up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await up_writer.drain()
        answer = await up_reader.read()
        up_writer.close()
        head, _, rest = answer.partition(_HEAD_END)
        status_line, *answer_headers = head.decode("latin-1").split("\r\n")
        kept_answer = [h for h in answer_headers if h.split(":", 1)[0].lower() != "connection"]
        relayed = "\r\n".join([status_line, *kept_answer, "Connection: close"])
        writer.write(relayed.encode("latin-1") + _HEAD_END + rest)
        await writer.drain()


async def _refuse(writer: asyncio.StreamWriter) -> None:
    body = b"<html><body>407 Proxy Authentication Required</body></html>"
    writer.write(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="tests"\r\n'
        b"Content-Type: text/html\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    await writer.drain()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        with suppress(OSError, RuntimeError):
            sink.write_eof()

    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        up_writer.close()


@asynccontextmanager
async def forward_proxy(
    credentials: tuple[str, str] | None = None,
) -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy(credentials)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        for handler in list(proxy.handlers):  # open tunnels end with the test
            handler.cancel()
        await asyncio.gather(*proxy.handlers)
