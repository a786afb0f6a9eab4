"""The HTTP server: one POST endpoint for every API service (any path), `/admin/`, and
`/recordings/` for the files GetRecodeFile points at. Each API request is answered as the
account it names (fleet.py), with that account's faults."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import AsyncIterator
from functools import cache

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cdr_connector.simulator import admin, background
from cdr_connector.simulator.clock import Clock, SystemClock
from cdr_connector.simulator.config import SimulatorConfig
from cdr_connector.simulator.envelope import (
    RET_OK,
    RET_SERVER_ERROR,
    BadRequestError,
    ServiceError,
    encode,
)
from cdr_connector.simulator.faults import Fault
from cdr_connector.simulator.fleet import FLEET, Fleet
from cdr_connector.simulator.services import FAULTY, RECORDINGS_PATH, SERVICES, Form
from cdr_connector.simulator.state import SimulatorState

log = logging.getLogger(__name__)


def create_app(config: SimulatorConfig, *, clock: Clock | None = None) -> web.Application:
    """The simulator as an aiohttp application. The backlog is preloaded, and the background
    tasks started, when the application starts up (before a runner's site listens)."""
    app = web.Application()
    app[FLEET] = Fleet(config, clock or SystemClock())
    app.router.add_routes(admin.routes)
    app.router.add_get(f"/{RECORDINGS_PATH}{{filename:.+}}", _recording)
    app.router.add_post("/{path:.*}", _api)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    fleet = app[FLEET]
    accounts = list(fleet.accounts.values())
    if fleet.config.backlog:
        began = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, _preload, accounts)
        log.info(
            "simulator preloaded a backlog of %d records in %.1f s",
            sum(len(account.store) for account in accounts),
            time.perf_counter() - began,
        )
    tasks = [asyncio.create_task(background.competing_reader(a)) for a in accounts]
    if fleet.config.rate > 0:
        tasks.extend(asyncio.create_task(background.live_generation(a)) for a in accounts)
    for task in tasks:
        task.add_done_callback(_log_crash)
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _preload(accounts: list[SimulatorState]) -> None:
    for account in accounts:
        account.preload()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator background task %s failed", task.get_name(), exc_info=task.exception())


async def _api(request: web.Request) -> web.StreamResponse:
    fleet = request.app[FLEET]
    form, form_error = await _read_form(request)
    service = form.get("service", "")
    label = service if service in SERVICES else "unknown"
    account = fleet.account_of(service, form)
    requests = fleet.strangers if account is None else account.requests
    fault: Fault | None = None
    if account is not None and service in FAULTY and form_error is None:
        fault = await _pick_fault(account)
        if fault in ("drop", "http_5xx"):
            return _unanswered(request, account, label, fault)
    if fault == "ret_500":
        body, ret = (
            _failure(fleet, ServiceError(RET_SERVER_ERROR, "server error")),
            RET_SERVER_ERROR,
        )
    elif form_error is not None:
        body, ret = _failure(fleet, form_error), form_error.ret
    else:
        base_url = f"{request.scheme}://{request.host}/"
        body, ret = await _answer(fleet, account, service, form, base_url)
    if account is not None and fault is not None:
        body = await _after_answer(account, fault, body)
    requests[label, fault or f"ret_{ret}"] += 1
    return web.Response(body=body, content_type="application/json")


async def _pick_fault(account: SimulatorState) -> Fault | None:
    """Wait out the configured latency, then draw this request's fault."""
    delay = account.faults.latency()
    if delay:
        await asyncio.sleep(delay)
    return account.faults.draw()


def _unanswered(
    request: web.Request, account: SimulatorState, label: str, fault: Fault
) -> web.Response:
    """The faults that strike before the request is processed and give no envelope."""
    if fault == "drop":
        account.requests[label, fault] += 1
        return _drop(request)
    status = account.faults.http_status()
    account.requests[label, f"http_{status}"] += 1
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(status=status, text=_ERROR_PAGE, content_type="text/html", headers=headers)


async def _after_answer(account: SimulatorState, fault: Fault, body: bytes) -> bytes:
    """The faults that strike once the request was processed: a late or a broken answer."""
    if fault == "slow":
        await asyncio.sleep(account.faults.config.slow_seconds)
    if fault == "bad_json":
        return account.faults.mangle(body)
    return body


def _drop(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.close()
    # Writing this to the closed transport fails, which aiohttp takes quietly.
    return web.Response()


async def _read_form(request: web.Request) -> tuple[Form, BadRequestError | None]:
    """The form's text fields (the first of repeated ones), or why it is not a form."""
    try:
        fields = await request.post()
    except (ValueError, LookupError, HttpProcessingError) as exc:
        return {}, BadRequestError(f"illegal request: the body is not form data ({exc})")
    form: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(value, str):
            return form, BadRequestError(f"illegal request: {name} must be a text field")
        form.setdefault(name, value)
    return form, None


async def _answer(
    fleet: Fleet, account: SimulatorState | None, service: str, form: Form, base_url: str
) -> tuple[bytes, int]:
    reqtime = int(fleet.clock.time())
    try:
        handler = SERVICES.get(service)
        if handler is None:
            named = f"unknown service {service!r}" if service else "service is required"
            raise BadRequestError(f"illegal request: {named}")
        answer = await handler(account, form, base_url)
    except ServiceError as failure:
        return _failure(fleet, failure, reqtime), failure.ret
    except Exception:
        # A bug, never bad input: the tests assert that no bad request gets here.
        log.exception("simulator failed on service %r", service)
        if account is None:
            fleet.stranger_errors += 1
        else:
            account.unexpected_errors += 1
        crash = ServiceError(RET_SERVER_ERROR, "server error")
        return _failure(fleet, crash, reqtime), RET_SERVER_ERROR
    now = int(fleet.clock.time())
    body = encode(RET_OK, desc=answer.desc, result=answer.result, reqtime=reqtime, rsptime=now)
    return body, RET_OK


def _failure(fleet: Fleet, failure: ServiceError, reqtime: int | None = None) -> bytes:
    now = int(fleet.clock.time())
    return encode(
        failure.ret,
        desc=failure.message,
        msg=failure.message,
        reqtime=now if reqtime is None else reqtime,
        rsptime=now,
    )


async def _recording(request: web.Request) -> web.Response:
    filename = request.match_info["filename"]
    accounts = request.app[FLEET].accounts.values()
    if not any(account.store.has_recording(filename) for account in accounts):
        raise web.HTTPNotFound()
    return web.Response(body=_silence(), content_type="audio/wav")


@cache
def _silence() -> bytes:
    """One second of 8 kHz silence: the same tiny file stands for every recording."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(16_000))
    return buffer.getvalue()


_ERROR_PAGE = (
    "<html><head><title>Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
)
