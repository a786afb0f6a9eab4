"""`/admin/`: switch faults, inject and generate records, and see what the simulator did.
Plain JSON in and out; errors are HTTP 400 with `{"error": "..."}`. Faults never touch these.

Poison by name, so that a test gets exactly the malformed bills it wants rather than waiting
for `poison_rate` to draw them:
- `GET /admin/poison` answers `{"kinds": ["id_as_string", ...]}`, every kind of poison.py in
  SHAPE order.
- `POST /admin/poison` takes `{"kind": "<name>", "count": n}` (`count` 1..MAX_GENERATE, 1 if
  absent) or a non-empty list of such objects, and makes that many generated calls visible
  now, each served malformed that way, exactly as `poison_rate` would serve it. It answers
  `{"ids": [...], "kinds": [...]}`: the ids they took, in order, and each one's kind.

`GET /admin/records` lists every record with its kind (`poison`) and, when poisoned, the id it
was made with (`poison_id`); see `RecordStore.listing`.

Every endpoint but `GET /admin/poison` acts on the account `?account=<appid>` names (HTTP 404
naming the accounts when none has that appid), or on the only one. Without `?account`, a
simulator of several accounts answers for all of them where that means something: `stats`
with totals and each account's stats under `accounts`, `faults` with each account's settings
under `accounts` (a POST changes them all), `pause`, `resume` and `revoke-tokens` for every
account. The endpoints about one account's records (`records`, `inject`, `generate`, `poison`)
refuse it with HTTP 400 naming the accounts: ids are per account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from cdr_connector.simulator.fleet import FLEET
from cdr_connector.simulator.poison import KIND_NAMES, SHAPES
from cdr_connector.simulator.state import SimulatorState

MAX_GENERATE = 100_000  # per call, to keep the event loop responsive (about 0.5 s)
MAX_RECORDS_PAGE = 10_000

routes = web.RouteTableDef()


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _bad_request(message: str) -> web.HTTPBadRequest:
    text = orjson.dumps({"error": message}).decode()
    return web.HTTPBadRequest(text=text, content_type="application/json")


def _named(request: web.Request) -> SimulatorState | None:
    """The account `?account=<appid>` names, None without it; HTTP 404 if no account has
    that appid."""
    appid = request.query.get("account")
    if appid is None:
        return None
    fleet = request.app[FLEET]
    account = fleet.accounts.get(appid)
    if account is None:
        text = orjson.dumps({"error": f"no account {appid!r}: the accounts are {fleet.describe()}"})
        raise web.HTTPNotFound(text=text.decode(), content_type="application/json")
    return account


def _selected(request: web.Request) -> SimulatorState | None:
    """The account named, or the only one; None for every account of several."""
    named = _named(request)
    return request.app[FLEET].sole if named is None else named


def _every(request: web.Request) -> list[SimulatorState]:
    selected = _selected(request)
    return list(request.app[FLEET].accounts.values()) if selected is None else [selected]


def _one(request: web.Request) -> SimulatorState:
    """The account an endpoint about one account's records acts on; HTTP 400 naming the
    accounts when there are several and the query names none."""
    selected = _selected(request)
    if selected is None:
        accounts = request.app[FLEET].describe()
        raise _bad_request(f"name the account: ?account=<appid>, one of {accounts}")
    return selected


def _for_each(request: web.Request, answer: Callable[[SimulatorState], Any]) -> web.Response:
    """`answer` of the selected account, or of each under `accounts` by appid."""
    selected = _selected(request)
    if selected is not None:
        return _json(answer(selected))
    accounts = request.app[FLEET].accounts
    return _json({"accounts": {appid: answer(account) for appid, account in accounts.items()}})


def _faults(account: SimulatorState) -> dict[str, Any]:
    return account.faults.config.as_dict()


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise _bad_request(f"the body is not JSON: {exc}") from exc


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and low <= int(text) <= high):
        raise _bad_request(f"{name} must be an integer in {low}..{high}, got {text!r}")
    return int(text)


@routes.get("/admin/faults")
async def get_faults(request: web.Request) -> web.Response:
    return _for_each(request, _faults)


@routes.post("/admin/faults")
async def update_faults(request: web.Request) -> web.Response:
    """Partial update: `{"drop_rate": 0.1, "racing": true}`; unknown keys are refused, and
    then no account's faults change."""
    changes = await _body(request)
    if not isinstance(changes, dict):
        raise _bad_request("the body must be a JSON object of fault settings")
    accounts = _every(request)
    try:
        for account in accounts:
            account.faults.config.updated(changes)
    except (ValueError, TypeError) as exc:
        raise _bad_request(str(exc)) from exc
    for account in accounts:
        account.faults.update(changes)
    return _for_each(request, _faults)


@routes.post("/admin/revoke-tokens")
async def revoke_tokens(request: web.Request) -> web.Response:
    return _json({"revoked": sum(account.tokens.revoke_all() for account in _every(request))})


@routes.post("/admin/inject")
async def inject(request: web.Request) -> web.Response:
    """A raw bill object, or a list of them, served as given; answers the ids they took."""
    payload = await _body(request)
    bills = payload if isinstance(payload, list) else [payload]
    if not bills or not all(isinstance(bill, dict) for bill in bills):
        raise _bad_request("the body must be a bill object or a non-empty list of them")
    store = _one(request).store
    return _json({"ids": [store.inject(bill) for bill in bills]})


@routes.post("/admin/generate")
async def generate(request: web.Request) -> web.Response:
    """`{"count": N}`: N more calls visible now, the same ones for the same seed."""
    payload = await _body(request)
    count = payload.get("count") if isinstance(payload, dict) else None
    if not (type(count) is int and 1 <= count <= MAX_GENERATE):
        raise _bad_request(f"count must be an integer in 1..{MAX_GENERATE}")
    ids = _one(request).generate(count)
    return _json({"first_id": ids.start, "last_id": ids.stop - 1, "count": len(ids)})


@routes.get("/admin/poison")
async def poison_kinds(request: web.Request) -> web.Response:
    return _json({"kinds": list(KIND_NAMES)})


@routes.post("/admin/poison")
async def poison(request: web.Request) -> web.Response:
    """Generated calls served malformed by name (see the module's docstring)."""
    payload = await _body(request)
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise _bad_request("the body must be a poison request or a non-empty list of them")
    wanted = [_poison_request(item) for item in items]
    if sum(count for _, count in wanted) > MAX_GENERATE:
        raise _bad_request(f"count must add up to at most {MAX_GENERATE}")
    state = _one(request)
    ids: list[int] = []
    kinds: list[str] = []
    for shape, count in wanted:
        ids.extend(state.generate_poison(shape, count))
        kinds.extend([KIND_NAMES[shape - 1]] * count)
    return _json({"ids": ids, "kinds": kinds})


def _poison_request(item: Any) -> tuple[int, int]:
    """`{"kind": name, "count": n}` -> (the kind's SHAPE, n), or HTTP 400 naming the fault."""
    if not isinstance(item, dict):
        raise _bad_request('a poison request is an object: {"kind": "<name>", "count": n}')
    unknown = sorted(set(item) - {"kind", "count"})
    if unknown:
        raise _bad_request(f"unknown keys in a poison request: {unknown}")
    kind = item.get("kind")
    shape = SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        raise _bad_request(f"kind must be one of {list(KIND_NAMES)}, got {kind!r}")
    count = item.get("count", 1)
    if not (type(count) is int and 1 <= count <= MAX_GENERATE):
        raise _bad_request(f"count must be an integer in 1..{MAX_GENERATE}, got {count!r}")
    return shape, count


@routes.get("/admin/stats")
async def stats(request: web.Request) -> web.Response:
    named = _named(request)
    return _json(request.app[FLEET].stats() if named is None else named.stats())


@routes.get("/admin/records")
async def records(request: web.Request) -> web.Response:
    """Every visible record as GetBill renders it, whether queried or not, with its poison
    kind (`RecordStore.listing`): `?after_id=0&limit=1000`; follow `next_after_id` until
    `records` is empty."""
    after_id = _int_param(request, "after_id", 0, 0, 10**18)
    limit = _int_param(request, "limit", 1000, 1, MAX_RECORDS_PAGE)
    store = _one(request).store
    bills = store.listing(after_id, limit)
    next_after_id = after_id + len(bills)
    return _json({"records": bills, "next_after_id": next_after_id, "visible": len(store)})


@routes.post("/admin/pause")
async def pause(request: web.Request) -> web.Response:
    for account in _every(request):
        account.pause()
    return _json({"paused": True})


@routes.post("/admin/resume")
async def resume(request: web.Request) -> web.Response:
    for account in _every(request):
        account.resume()
    return _json({"paused": False})
