"""The async client of the vendor API: login and token renewal, GetBill pages, retries, metrics.

Every service is one `POST` of a urlencoded form to `source.api_url`; every answer is the
envelope `{"ret", "data": {"status", "desc", "result", ...}, "msg"}`. How an answer is read:

- HTTP 3xx: no redirect is followed (a 307 or 308 would post the same form, access key
  included, to wherever `Location` points, plain http:// or another host included); a
  redirect is ApiRequestError naming the `Location` without its user:password part, since
  `source.api_url` must be set to the address that answers.
- HTTP 5xx, 408, 429: retryable (`Retry-After` in seconds is honoured, up to the backoff cap).
  Any other HTTP 4xx: permanent (401/403 as ApiAuthError, the rest as ApiRequestError). HTTP
  407, from the proxy itself or as its answer to CONNECT: ApiAuthError naming the proxy and
  the setting that holds its credentials.
- An answer larger than `source.max_answer_bytes`: AnswerTooLargeError, read no further and
  never retried (the same request brings the same answer); the poller asks for smaller pages.
- A body orjson rejects is read again by a tolerant parser (`salvage`): when only some bills
  are unreadable (invalid UTF-8, a lone surrogate, NaN, nesting too deep), the page is used,
  each such bill an `UnreadableBill` that is dead-lettered with its raw bytes. A content fault
  is not retried as if it were a transport fault.
- A body whose structure cannot be read even so (cut short, an HTML page, a PHP warning before
  the JSON), or JSON that is not the envelope: ApiResponseError, retryable: that is the
  transport's or a proxy's fault, not the vendor's data.
- `ret` 200 with `data.status` 0: success, `data.result` is the answer.
- `ret` 200 with `data.status` other than 0: the server understood the request and reports
  that the operation failed (`data.desc` says why). Asking again with the same parameters is
  expected to fail the same way, so it is permanent: ApiRequestError with the status and desc.
- `ret` 400: ApiRequestError with the server's message. `ret` 500: retryable. `ret` 600: the
  token is renewed and the request repeated. `ret` 601-604: ApiAuthError saying what to fix.
- Any other `ret`: retryable; the code is in the message, so a new vendor code shows up in
  the logs instead of stopping the connector.

The HTTP exchange itself (redirects refused, proxies, the size limit, timeouts) is the
`Transport`'s (cdr_connector/api/transport.py); the token's life cycle is the `TokenKeeper`'s
(cdr_connector/api/tokens.py).

Secrets: the access key and tokens travel only in request bodies, a password in
`source.api_url` only in `Authorization`, proxy credentials only in `Proxy-Authorization`.
Every error message leaving the client passes the client's `Redactor`
(cdr_connector/redaction.py), which knows every form of every secret, including one cut in
half by an excerpt; a third-party exception whose text holds a secret is not chained as the
cause. Metric labels come from fixed sets.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import urljoin

import aiohttp
import orjson

from cdr_connector import metrics
from cdr_connector.api.models import BillPage, BillQuery, int_like
from cdr_connector.api.salvage import salvage
from cdr_connector.api.tokens import TokenKeeper
from cdr_connector.api.transport import (
    RETRYABLE_HTTP_4XX,
    CountedError,
    HttpAnswer,
    Transport,
    body_excerpt,
    clean,
    default_session_factory,
)
from cdr_connector.backoff import Backoff
from cdr_connector.bill import UnreadableBill
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.config import PollSettings, SourceSettings
from cdr_connector.errors import (
    ApiAuthError,
    ApiError,
    ApiRequestError,
    ApiResponseError,
    ApiTransientError,
    PermanentError,
    RetryableError,
    TokenExpiredError,
)
from cdr_connector.recorder import Recorder
from cdr_connector.redaction import Redactor

log = logging.getLogger(__name__)

LOGIN = "App.Sip_Auth.Login"
GET_BILL = "App.Sip_Cdr.GetBill"
GET_RECORD_FILE = "App.Sip_Cdr.GetRecodeFile"  # sic: the vendor's spelling

RET_OK = 200
RET_BAD_REQUEST = 400
RET_SERVER_ERROR = 500
RET_TOKEN_INVALID = 600

# What a person has to do about each authorisation failure.
AUTH_FIXES = {
    601: "appid not authorised: check source.appid and source.accesskey",
    602: "authorisation expired: renew the vendor account",
    603: "module not authorised: ask the vendor to enable call records (Sip_Cdr) for this account",
    604: "access from this IP is not allowed: ask the vendor to allow the connector's egress IP",
}

# The `service` label of the API metrics (metrics.API_SERVICES lists the same set).
SERVICE_LABELS = {LOGIN: "login", GET_BILL: "getbill", GET_RECORD_FILE: "recordfile"}
_AUTH_HTTP_4XX = frozenset({401, 403})
# Field names under which a GetRecodeFile result object may carry the address, in order.
RECORD_URL_KEYS = ("url", "fileurl", "file_url", "downloadurl", "download_url", "recordurl")
# Connections beyond `poll.concurrency`, so a login or a recording lookup never waits for a
# page request to finish.
_SPARE_CONNECTIONS = 2

T = TypeVar("T")


class VendorApi(Protocol):
    """The vendor's call-record API as the connector uses it. Methods may run concurrently.

    Retried, with exponential backoff and full jitter between attempts, up to
    `poll.max_attempts` attempts in all: transport errors and timeouts, HTTP 5xx (and 408,
    429), `ret` 500, unknown `ret` codes, and bodies whose JSON structure cannot be read or that
    are not the documented envelope or page. Never retried as is, raised at once as
    ApiContentError: an answer over `source.max_answer_bytes` (AnswerTooLargeError). A page
    with unreadable bills is no error: they come as `UnreadableBill`s among the others. `ret`
    600 (token expired) renews the token and retries at once; it counts as an attempt. After
    the last attempt: ApiTransientError naming the service, the number of attempts and the
    last error, which is chained as the cause.

    Not retried, raised at once as PermanentError (a person must act; the message says what to
    change): ApiRequestError for `ret` 400, other HTTP 4xx, any HTTP 3xx (no redirect is
    followed) and `data.status` != 0; ApiAuthError for `ret` 601-604, HTTP 401 and 403, and a
    proxy's 407.

    No message carries a secret the client knows, in any form (`redactor`).

    Idempotency: login, GetRecodeFile and GetBill with syncflag 2 or 3 only read. GetBill with
    syncflag=1 does not: the server marks every record it returns as queried and never returns
    it to syncflag=1 again. An attempt that reached the server but whose answer was lost (a
    timeout, a dropped connection, a garbled body, a proxy's 5xx after the server answered) has
    consumed its records, and the retry brings the next ones. The client cannot tell that case
    from a request that never arrived, so it retries anyway; the connector's reconciliation
    sweeps (syncflag=2 over recent windows) publish the records such a lost answer held.
    """

    async def get_bills(self, query: BillQuery) -> BillPage:
        """One page of a GetBill listing; bills are passed on as the server sent them."""
        ...

    async def login(self) -> None:
        """Log in now, even with a valid token (for `check`); raises like any request."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


class VendorApiClient:
    """`VendorApi` over HTTP: one aiohttp session, created on first use and reused.

    Requests, their retries and the reading of answers are here; when to log in and which
    token a request carries is the `TokenKeeper`'s (cdr_connector/api/tokens.py), on the
    injected clock.
    """

    def __init__(
        self,
        source: SourceSettings,
        poll: PollSettings,
        *,
        clock: Clock | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        rng: random.Random | None = None,
        redactor: Redactor | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._source = source
        self._recorder: Recorder = recorder or metrics.PrometheusRecorder(source.name)
        self._zone = source.zone
        self._url = str(source.api_url)
        self._clock: Clock = clock or SystemClock()
        self._backoff = Backoff(poll.retry_initial_seconds, poll.retry_max_seconds, rng)
        self._max_attempts = poll.max_attempts
        session_factory = session_factory or default_session_factory(
            source, poll.concurrency + _SPARE_CONNECTIONS
        )
        self._redact = redactor if redactor is not None else Redactor.for_source(source)
        self._tokens = TokenKeeper(source, self._clock, self._request_token, self._recorder)
        self._transport = Transport(source, session_factory, self._redact)

    @property
    def redactor(self) -> Redactor:
        """Hides every secret this client knows, tokens included; for the pipeline's and
        `check`'s text."""
        return self._redact

    @property
    def source_name(self) -> str:
        """`source.name`: the `source` label of this client's metrics."""
        return self._source.name

    # --- the VendorApi contract ---------------------------------------------------------

    async def get_bills(self, query: BillQuery) -> BillPage:
        fields = query.as_form(self._zone)

        def read(result: Any, raw_size: int) -> BillPage:
            return BillPage.from_result(result, query, raw_size, redact=self._redact)

        return await self._call(GET_BILL, fields, read)

    async def login(self) -> None:
        await self._with_retries(LOGIN, self._tokens.renew)

    async def close(self) -> None:
        self._tokens.forget()
        await self._transport.close()

    async def get_record_file_url(self, filename: str) -> str:
        """The download address of a bill's recording (`recordfilename`) from GetRecodeFile.

        Accepted results: the address as a string, or an object carrying it under one of
        RECORD_URL_KEYS (the first non-empty one wins). A relative address is resolved
        against `source.api_url`. Anything else raises ApiResponseError (retried).
        """
        return await self._call(GET_RECORD_FILE, {"filename": filename}, self._record_url)

    # --- attempts and retries -----------------------------------------------------------

    async def _call(
        self, service: str, fields: Mapping[str, str], read: Callable[[Any, int], T]
    ) -> T:
        """A service that needs the token, with retries."""

        async def attempt() -> T:
            token = await self._tokens.valid()
            form = {**fields, "service": service, "token": token.value}
            try:
                return await self._request(service, form, read)
            except TokenExpiredError:
                self._tokens.reject(token)
                raise

        return await self._with_retries(service, attempt)

    async def _with_retries(self, service: str, attempt: Callable[[], Awaitable[T]]) -> T:
        last: ApiTransientError | None = None
        for number in range(1, self._max_attempts + 1):
            try:
                return await attempt()
            except ApiTransientError as exc:
                # A first 600 only needs the new token; a second in a row is a server fault.
                at_once = isinstance(exc, TokenExpiredError) and not isinstance(
                    last, TokenExpiredError
                )
                last = exc
            if number < self._max_attempts and not at_once:
                await self._pause(service, number, last)
        assert last is not None  # the loop ran at least once and did not return
        raise ApiTransientError(
            f"{service} failed after {self._max_attempts} attempt(s); last error: {last}"
        ) from last

    async def _pause(self, service: str, attempt: int, failure: ApiTransientError) -> None:
        if failure.retry_after is not None:
            delay = min(failure.retry_after, self._backoff.maximum)
        else:
            delay = self._backoff.delay(attempt)
        log.warning(
            "%s attempt %d of %d failed (%s); retrying in %.2f s",
            service,
            attempt,
            self._max_attempts,
            failure,
            delay,
        )
        await self._clock.sleep(delay)

    async def _request_token(self) -> str:
        """The login request; its token joins the secrets the redactor hides."""
        secret = self._source.accesskey.get_secret_value()
        form = {"service": LOGIN, "appid": self._source.appid, "accesskey": secret}
        value = await self._request(LOGIN, form, _token_from_result)
        self._redact.add_token(value)
        return value

    # --- one request --------------------------------------------------------------------

    async def _request(
        self, service: str, form: Mapping[str, str], read: Callable[[Any, int], T]
    ) -> T:
        """One HTTP exchange, its metrics, and the reading of its answer."""
        label = SERVICE_LABELS[service]
        started = self._clock.monotonic()
        outcome: str | None = None
        try:
            answer = await self._transport.post(service, form)
            result = _result_of(service, answer, self._redact, self._salvaged)
            value = _read_result(read, result, len(answer.body))
            outcome = "ok"
            return value
        except CountedError as failure:
            outcome = _outcome_of(failure.error)
            self._recorder.api_error(failure.kind)
            raise _redacted(failure.error, self._redact) from failure.__cause__
        finally:
            self._recorder.api_request(label, outcome, self._clock.monotonic() - started)

    def _salvaged(self, service: str, unreadable: int) -> None:
        self._recorder.api_error("salvaged")
        log.warning(
            "%s: the answer is not valid JSON as a whole; read bill by bill, %d bill(s) "
            "unreadable (dead-lettered with their raw bytes)",
            service,
            unreadable,
        )

    def _record_url(self, result: Any, raw_size: int) -> str:
        address = _address_in(result)
        if address is None:
            raise ApiResponseError(
                f"{GET_RECORD_FILE} answer: data.result must be an address or an object with "
                f"one of {', '.join(RECORD_URL_KEYS)}, got {_shape_of(result)}"
            )
        return urljoin(self._url, address)


# --- reading answers (pure) -------------------------------------------------------------


def _outcome_of(error: ApiError) -> str:
    if isinstance(error, RetryableError):
        return "retryable"
    return "permanent" if isinstance(error, PermanentError) else "content"


def _result_of(
    service: str,
    answer: HttpAnswer,
    redact: Redactor,
    salvaged: Callable[[str, int], None],
) -> Any:
    """`data.result` of a successful answer; otherwise a CountedError with its metric kind.
    `salvaged` hears of an answer that was read bill by bill, and of how many were unreadable.
    """
    if answer.status >= 500:
        error = ApiTransientError(
            f"{service}: HTTP {answer.status}: {body_excerpt(answer, redact)}",
            retry_after=answer.retry_after,
        )
        raise CountedError("http_5xx", error)
    if answer.status >= 400:
        raise CountedError("http_4xx", _http_4xx_error(service, answer, redact))
    try:
        # On the loop: a 1000-bill page (~450 KB) parses in about 1 ms with orjson.
        document = orjson.loads(answer.body)
    except orjson.JSONDecodeError as exc:
        document = salvage(answer.body)
        if document is not None:
            salvaged(service, _unreadable_bills(document))
            return _envelope_result(service, document, redact)
        error = ApiResponseError(
            f"{service}: the answer is not JSON (HTTP {answer.status}, {answer.content_type}, "
            f"{len(answer.body)} bytes: {body_excerpt(answer, redact)})"
        )
        raise CountedError("bad_json", error) from exc
    return _envelope_result(service, document, redact)


def _unreadable_bills(document: Any) -> int:
    data = document.get("data") if isinstance(document, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    bills = result.get("bills") if isinstance(result, dict) else None
    return sum(isinstance(b, UnreadableBill) for b in bills) if isinstance(bills, list) else 0


def _http_4xx_error(service: str, answer: HttpAnswer, redact: Redactor) -> ApiError:
    excerpt = body_excerpt(answer, redact)
    if answer.status in RETRYABLE_HTTP_4XX:
        message = f"{service}: HTTP {answer.status}: {excerpt}"
        return ApiTransientError(message, retry_after=answer.retry_after)
    if answer.status in _AUTH_HTTP_4XX:
        return ApiAuthError(
            f"{service}: HTTP {answer.status} (refused before reaching the API; check "
            f"source.api_url and any proxy or firewall in between): {excerpt}"
        )
    return ApiRequestError(f"{service}: HTTP {answer.status} (check source.api_url): {excerpt}")


def _envelope_result(service: str, document: Any, redact: Redactor) -> Any:
    if not isinstance(document, dict):
        _bad_envelope(f"{service}: the answer is a JSON {_shape_of(document)}, not an envelope")
    ret = int_like(document.get("ret"))
    if ret is None:
        _bad_envelope(f"{service}: the answer has no integer `ret` ({_shape_of(document)})")
    if ret != RET_OK:
        raise _ret_failure(service, ret, _server_message(document, redact))
    data = document.get("data")
    if not isinstance(data, dict):
        _bad_envelope(f"{service}: ret is 200 but `data` is {_shape_of(data)}, not an object")
    status = int_like(data.get("status"))
    if status is None:
        _bad_envelope(f"{service}: ret is 200 but `data.status` is not an integer")
    if status != 0:
        # Counted with ret 400: the server refused this request and will refuse it again.
        error = ApiRequestError(
            f"{service} failed: data.status is {status} ({_server_message(document, redact)})"
        )
        raise CountedError("ret_400", error)
    return data.get("result")


def _ret_failure(service: str, ret: int, message: str) -> CountedError:
    kind = metrics.api_error_kind_for_ret(ret)
    error: ApiError
    if ret == RET_BAD_REQUEST:
        error = ApiRequestError(f"{service} rejected as an illegal request (ret 400): {message}")
    elif ret == RET_SERVER_ERROR:
        error = ApiTransientError(f"{service}: server error (ret 500): {message}")
    elif ret == RET_TOKEN_INVALID:
        error = TokenExpiredError(f"{service}: token invalid or expired (ret 600): {message}")
    elif ret in AUTH_FIXES:
        error = ApiAuthError(f"{service}: {AUTH_FIXES[ret]} (ret {ret}: {message})")
    else:
        error = ApiTransientError(f"{service}: unexpected ret {ret}: {message}")
    return CountedError(kind, error)


def _bad_envelope(message: str) -> NoReturn:
    raise CountedError("bad_envelope", ApiResponseError(message))


def _read_result(read: Callable[[Any, int], T], result: Any, raw_size: int) -> T:
    try:
        return read(result, raw_size)
    except ApiResponseError as exc:
        raise CountedError("bad_envelope", exc) from None


def _token_from_result(result: Any, raw_size: int) -> str:
    token = result.get("token") if isinstance(result, dict) else None
    if not isinstance(token, str) or not token:
        # The result itself is never quoted: it is where a token would be.
        raise ApiResponseError(f"{LOGIN} answer: data.result has no token string")
    return token


def _address_in(result: Any) -> str | None:
    if isinstance(result, str):
        return result.strip() or None
    if isinstance(result, dict):
        for key in RECORD_URL_KEYS:
            value = result.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _server_message(document: Mapping[str, Any], redact: Redactor) -> str:
    """`msg`, or `data.desc` when `msg` is empty, as safe, short text."""
    data = document.get("data")
    desc = data.get("desc") if isinstance(data, dict) else None
    for text in (document.get("msg"), desc):
        if isinstance(text, str) and text.strip():
            return clean(text, redact)
    return "no message"


def _redacted(error: ApiError, redact: Redactor) -> ApiError:
    """`error`, any secret left in its message replaced: the last check before it leaves."""
    message = str(error)
    clean = redact(message)
    if clean != message:
        error.args = (clean,)
    return error


def _shape_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:10])
        return f"an object with keys [{keys}]"
    return type(value).__name__


# --- construction -----------------------------------------------------------------------
