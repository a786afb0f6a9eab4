"""The API's services, each a function of the account the request speaks for and its form
fields; failures are raised as `ServiceError` and turned into envelopes by server.py. The
account is None when the request named none the simulator serves (fleet.py): the credentials
or token it carries are then refused like any others."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cdr_connector.simulator import query
from cdr_connector.simulator.envelope import (
    RET_NOT_AUTHORISED,
    RET_TOKEN_INVALID,
    BadRequestError,
    ServiceError,
)
from cdr_connector.simulator.poison import INFLATED_TOTALITEMS
from cdr_connector.simulator.state import SimulatorState

LOGIN = "App.Sip_Auth.Login"
GET_BILL = "App.Sip_Cdr.GetBill"
GET_RECORD_FILE = "App.Sip_Cdr.GetRecodeFile"  # sic, as the vendor spells it
# The services fault knobs act on.
FAULTY = frozenset((LOGIN, GET_BILL))
RECORDINGS_PATH = "recordings/"

Form = Mapping[str, str]


@dataclass(frozen=True)
class Answer:
    desc: str
    result: Any


async def login(state: SimulatorState | None, form: Form, base_url: str) -> Answer:
    appid = query.require(form, "appid")
    accesskey = query.require(form, "accesskey")
    if state is None or not _is_own(state, appid, accesskey):
        raise ServiceError(RET_NOT_AUTHORISED, "appid not authorised")
    result = {
        "companycode": "1",
        "companyname": state.config.companyname,
        "token": state.tokens.issue(),
        "authtime": state.local_time.format(int(state.clock.time())),
        "authmodel": "",
    }
    return Answer("login success", result)


def _is_own(state: SimulatorState, appid: str, accesskey: str) -> bool:
    """Both compared in constant time, and both always, as a real server should."""
    config = state.config
    authorised = secrets.compare_digest(appid.encode(), config.appid.encode())
    authorised &= secrets.compare_digest(accesskey.encode(), config.accesskey.encode())
    return authorised


def _check_token(state: SimulatorState | None, form: Form) -> SimulatorState:
    """The account whose token the request carries, or ret 600."""
    token = query.require(form, "token")
    if state is None or not state.tokens.is_valid(token):
        raise ServiceError(RET_TOKEN_INVALID, "token invalid or expired, log in again")
    return state


async def get_bill(account: SimulatorState | None, form: Form, base_url: str) -> Answer:
    state = _check_token(account, form)
    bill_query = query.bill_query(form, state.local_time)
    store = state.store
    selection = store.select(bill_query)
    if bill_query.syncflag == 1:
        faults = state.faults
        if faults.config.racing:
            # Another request can select the same records before these are marked.
            faults.count("racing")
            await asyncio.sleep(faults.config.race_delay_ms / 1000)
        store.mark(selection.positions)
    # A page holding an `inflated_totalitems` bill reports an absurd total (poison.py).
    total = INFLATED_TOTALITEMS if store.inflates(selection.positions) else selection.total
    result = {
        "totalitems": total,
        "currentpage": bill_query.page,
        "itemsperpage": bill_query.per_page,
        "bills": store.render(selection.positions),
    }
    return Answer("get success", result)


async def get_record_file(account: SimulatorState | None, form: Form, base_url: str) -> Answer:
    state = _check_token(account, form)
    filename = query.require(form, "filename")
    if not state.store.has_recording(filename):
        raise BadRequestError(f"illegal request: filename {filename!r} is not a known recording")
    url = f"{base_url}{RECORDINGS_PATH}{quote(filename)}"
    return Answer("get success", {"filename": filename, "url": url})


Service = Callable[[SimulatorState | None, Form, str], Awaitable[Answer]]
SERVICES: dict[str, Service] = {
    LOGIN: login,
    GET_BILL: get_bill,
    GET_RECORD_FILE: get_record_file,
}
