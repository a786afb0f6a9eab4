"""The answer every service gives: `{"ret", "data": {"status", "desc", "result", "reqtime",
"rsptime"}, "msg"}`, sent with HTTP 200 whatever `ret` says, as the real server does."""

from __future__ import annotations

from typing import Any

import orjson

RET_OK = 200
RET_BAD_REQUEST = 400
RET_SERVER_ERROR = 500
RET_TOKEN_INVALID = 600
RET_NOT_AUTHORISED = 601


class ServiceError(Exception):
    """Ends a request with a `ret` other than 200; `message` becomes `msg` and `data.desc`."""

    def __init__(self, ret: int, message: str) -> None:
        super().__init__(message)
        self.ret = ret
        self.message = message


class BadRequestError(ServiceError):
    """`ret` 400; the message names the parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(RET_BAD_REQUEST, message)


def encode(
    ret: int, *, desc: str, result: Any = None, msg: str = "", reqtime: int, rsptime: int
) -> bytes:
    data = {
        "status": 0 if ret == RET_OK else 1,
        "desc": desc,
        "result": result,
        "reqtime": reqtime,
        "rsptime": rsptime,
    }
    return orjson.dumps({"ret": ret, "data": data, "msg": msg})
