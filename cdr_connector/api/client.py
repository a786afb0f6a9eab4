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

Egress: `source.proxy_url` when set (its credentials from the URL or
`source.proxy_credentials_file`); otherwise the proxy the environment names, resolved once
(HTTPS_PROXY / HTTP_PROXY / NO_PROXY).

Secrets: the access key and tokens travel only in request bodies, a password in
`source.api_url` only in `Authorization`, proxy credentials only in `Proxy-Authorization`.
Every error message leaving the client passes the client's `Redactor`
(cdr_connector/redaction.py), which knows every form of every secret, including one cut in
half by an excerpt; a third-party exception whose text holds a secret is not chained as the
cause. Metric labels come from fixed sets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import urljoin
from urllib.request import getproxies, proxy_bypass

import aiohttp
import orjson
from yarl import URL

from cdr_connector import __version__, metrics
from cdr_connector.api.models import BillPage, BillQuery, int_like
from cdr_connector.api.salvage import salvage
from cdr_connector.backoff import Backoff
from cdr_connector.bill import UnreadableBill
from cdr_connector.clock import Clock, SystemClock
from cdr_connector.config import PollSettings, SourceSettings
from cdr_connector.errors import (
    AnswerTooLargeError,
    ApiAuthError,
    ApiError,
    ApiRequestError,
    ApiResponseError,
    ApiTransientError,
    ConfigError,
    PermanentError,
    RetryableError,
    TokenExpiredError,
)
from cdr_connector.redaction import Redactor, without_userinfo

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

# The `service` label of the API metrics.
_METRIC_SERVICE = {LOGIN: "login", GET_BILL: "getbill", GET_RECORD_FILE: "recordfile"}
# A proxy's "too many requests" or "request timeout" passes by itself; other 4xx do not.
_RETRYABLE_HTTP_4XX = frozenset({408, 429})
_AUTH_HTTP_4XX = frozenset({401, 403})
_PROXY_AUTH_REQUIRED = 407
# Field names under which a GetRecodeFile result object may carry the address, in order.
RECORD_URL_KEYS = ("url", "fileurl", "file_url", "downloadurl", "download_url", "recordurl")
# Connections beyond `poll.concurrency`, so a login or a recording lookup never waits for a
# page request to finish.
_SPARE_CONNECTIONS = 2
# Server text quoted in an exception is cut here: enough to recognise an error page.
_SERVER_TEXT_LIMIT = 200

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


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    generation: int
    renew_at: float  # on the clock's monotonic scale


@dataclass(frozen=True, slots=True)
class _HttpAnswer:
    status: int
    body: bytes
    content_type: str
    retry_after: float | None


class _CountedError(Exception):
    """An API error and the `kind` it is counted under; unwrapped before it leaves the client."""

    def __init__(self, kind: str, error: ApiError) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error


@dataclass(frozen=True, slots=True)
class _Egress:
    """How requests leave: through which proxy, if any, and what a person fixes when the proxy
    refuses its credentials."""

    proxy: URL | None = field(repr=False)  # with its credentials, for aiohttp
    shown: str | None  # the proxy's address without credentials, for messages
    fix: str

    @classmethod
    def of(cls, source: SourceSettings) -> _Egress:
        if source.proxy_url is not None:
            proxy = URL(str(source.proxy_url))
            credentials = source.proxy_credentials
            if source.proxy_credentials_file is not None:
                fix = "fix the user:password in source.proxy_credentials_file"
            elif credentials is not None:
                fix = "fix the user:password in source.proxy_url"
            else:
                fix = "it wants credentials: set source.proxy_credentials_file"
            if credentials is not None:
                user, password = credentials
                proxy = proxy.with_user(user).with_password(password.get_secret_value())
            return cls(proxy, without_userinfo(str(source.proxy_url)), fix)
        api = URL(str(source.api_url))
        variable = f"{api.scheme.upper()}_PROXY"
        from_env = getproxies().get(api.scheme)
        if from_env and not (api.host and proxy_bypass(api.host)):
            fix = f"fix the user:password in the {variable} environment variable"
            # Resolved once, here, rather than by aiohttp's trust_env on every request (a
            # look-up in a thread each time, and ~/.netrc credentials sent to the vendor).
            return cls(URL(from_env), without_userinfo(from_env), fix)
        return cls(None, None, "set source.proxy_url and its credentials")


class VendorApiClient:
    """`VendorApi` over HTTP: one aiohttp session, created on first use and reused.

    The token is renewed by the injected clock `token_lifetime_seconds -
    token_renew_before_seconds` after each login, and at once when the server answers 600.
    Either way exactly one login happens per expiry however many requests are in flight:
    logins are serialised by a lock, each token carries a generation number, and a request
    that got 600 drops its token only if no newer one has replaced it meanwhile.
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
    ) -> None:
        self._token_valid_for = _token_renewal_interval(source)
        self._source = source
        self._zone = source.zone
        self._url = str(source.api_url)
        self._clock: Clock = clock or SystemClock()
        self._backoff = Backoff(poll.retry_initial_seconds, poll.retry_max_seconds, rng)
        self._max_attempts = poll.max_attempts
        self._timeout = aiohttp.ClientTimeout(total=source.request_timeout_seconds)
        self._session_factory = session_factory or default_session_factory(
            source, poll.concurrency + _SPARE_CONNECTIONS
        )
        self._session: aiohttp.ClientSession | None = None
        self._login_lock = asyncio.Lock()
        self._token: _Token | None = None
        self._generation = 0
        self._redact = redactor if redactor is not None else Redactor.for_source(source)
        self._egress = _Egress.of(source)

    @property
    def redactor(self) -> Redactor:
        """Hides every secret this client knows, tokens included; for the pipeline's and
        `check`'s text."""
        return self._redact

    # --- the VendorApi contract ---------------------------------------------------------

    async def get_bills(self, query: BillQuery) -> BillPage:
        fields = query.as_form(self._zone)

        def read(result: Any, raw_size: int) -> BillPage:
            return BillPage.from_result(result, query, raw_size, redact=self._redact)

        return await self._call(GET_BILL, fields, read)

    async def login(self) -> None:
        await self._with_retries(LOGIN, self._forced_login)

    async def close(self) -> None:
        session, self._session = self._session, None
        self._token = None
        if session is not None and not session.closed:
            await session.close()

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
            token = await self._valid_token()
            form = {**fields, "service": service, "token": token.value}
            try:
                return await self._request(service, form, read)
            except TokenExpiredError:
                self._drop_token(token)
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

    # --- the token ----------------------------------------------------------------------

    async def _valid_token(self) -> _Token:
        token = self._token
        if token is not None and not self._due(token):
            return token
        async with self._login_lock:
            # Another request may have logged in while this one waited for the lock.
            token = self._token
            if token is None or self._due(token):
                token = await self._log_in()
            return token

    async def _forced_login(self) -> None:
        async with self._login_lock:
            await self._log_in()

    async def _log_in(self) -> _Token:
        """One login request; the caller holds the login lock."""
        # Counted from before the request, so never later than the server starts counting.
        issued_at = self._clock.monotonic()
        secret = self._source.accesskey.get_secret_value()
        form = {"service": LOGIN, "appid": self._source.appid, "accesskey": secret}
        value = await self._request(LOGIN, form, _token_from_result)
        self._redact.add_token(value)
        self._generation += 1
        token = _Token(value, self._generation, issued_at + self._token_valid_for)
        self._token = token
        metrics.TOKEN_RENEWALS.labels(self._source.name).inc()
        log.info(
            "logged in to the vendor API as appid %s (token %d, renewed in %.0f s)",
            self._source.appid,
            token.generation,
            self._token_valid_for,
        )
        return token

    def _due(self, token: _Token) -> bool:
        return self._clock.monotonic() >= token.renew_at

    def _drop_token(self, rejected: _Token) -> None:
        """Forget a token the server rejected, unless a newer one has replaced it already."""
        current = self._token
        if current is not None and current.generation == rejected.generation:
            log.info(
                "the vendor API rejected token %d as expired; logging in again", rejected.generation
            )
            self._token = None

    # --- one request --------------------------------------------------------------------

    async def _request(
        self, service: str, form: Mapping[str, str], read: Callable[[Any, int], T]
    ) -> T:
        """One HTTP exchange, its metrics, and the reading of its answer."""
        source, label = self._source.name, _METRIC_SERVICE[service]
        started = self._clock.monotonic()
        outcome: str | None = None
        try:
            answer = await self._post(service, form)
            result = _result_of(service, answer, self._redact, self._salvaged)
            value = _read_result(read, result, len(answer.body))
            outcome = "ok"
            return value
        except _CountedError as failure:
            outcome = _outcome_of(failure.error)
            metrics.API_ERRORS.labels(source, failure.kind).inc()
            raise _redacted(failure.error, self._redact) from failure.__cause__
        finally:
            metrics.API_REQUEST_DURATION.labels(source, label).observe(
                self._clock.monotonic() - started
            )
            if outcome is not None:  # a cancelled request has no outcome
                metrics.API_REQUESTS.labels(source, label, outcome).inc()

    def _salvaged(self, service: str, unreadable: int) -> None:
        metrics.API_ERRORS.labels(self._source.name, "salvaged").inc()
        log.warning(
            "%s: the answer is not valid JSON as a whole; read bill by bill, %d bill(s) "
            "unreadable (dead-lettered with their raw bytes)",
            service,
            unreadable,
        )

    async def _post(self, service: str, form: Mapping[str, str]) -> _HttpAnswer:
        session = self._session_in_use()
        try:
            async with session.post(
                self._url,
                data=form,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._egress.proxy,
            ) as response:
                self._refuse_redirect_or_proxy(service, response)
                body = await self._read_body(service, response)
                return _HttpAnswer(
                    response.status,
                    body,
                    response.content_type,
                    _retry_after(response.headers.get("Retry-After")),
                )
        # Before ClientError: aiohttp's ServerTimeoutError is both.
        except TimeoutError as exc:
            seconds = self._source.request_timeout_seconds
            error = ApiTransientError(f"{service}: no complete answer within {seconds:g} s")
            raise _CountedError("timeout", error) from exc
        except aiohttp.ClientHttpProxyError as exc:
            # Its request info holds the Proxy-Authorization header: never chained.
            failure, cause = self._proxy_refusal(service, exc.status), None
        except aiohttp.ClientError as exc:
            detail = _clean(str(exc), self._redact) or "connection failed"
            error = ApiTransientError(f"{service}: {type(exc).__name__}: {detail}")
            failure, cause = _CountedError("transport", error), _safe_cause(exc, self._redact)
        # Raised outside the handler, so that an exception not chained is not the context
        # either.
        raise failure from cause

    def _refuse_redirect_or_proxy(self, service: str, response: aiohttp.ClientResponse) -> None:
        """A redirect or the proxy's 407 ends the request before its body is read."""
        status = response.status
        if status == _PROXY_AUTH_REQUIRED:
            raise self._proxy_refusal(service, status)
        if 300 <= status < 400:
            location = response.headers.get("Location")
            if location is None:
                target = "no Location given"
            else:
                target = _clean(without_userinfo(_resolved(self._url, location)), self._redact)
            error = ApiRequestError(
                f"{service}: HTTP {status} redirect to {target}: not followed, as it would "
                f"send the access key there; set source.api_url to the address that answers"
            )
            raise _CountedError("redirect", error)

    def _proxy_refusal(self, service: str, status: int) -> _CountedError:
        """The proxy's own refusal: 407 (its credentials), or its answer to CONNECT."""
        proxy = f"the proxy {self._egress.shown}" if self._egress.shown else "a proxy"
        api = _clean(without_userinfo(self._url), self._redact)
        if status == _PROXY_AUTH_REQUIRED:
            error: ApiError = ApiAuthError(
                f"{service}: {proxy} refused the connector (HTTP 407 Proxy Authentication "
                f"Required): {self._egress.fix}"
            )
            return _CountedError("http_4xx", error)
        message = f"{service}: {proxy} refused to connect to {api} (HTTP {status})"
        if status >= 500 or status in _RETRYABLE_HTTP_4XX:
            kind = "http_5xx" if status >= 500 else "http_4xx"
            return _CountedError(kind, ApiTransientError(message))
        return _CountedError(
            "http_4xx",
            ApiRequestError(f"{message}: check that the proxy allows the vendor API's address"),
        )

    async def _read_body(self, service: str, response: aiohttp.ClientResponse) -> bytes:
        """The body, read while it arrives and refused once it exceeds the limit. The rest of
        an oversized answer is counted, not kept, so that the error can say how large it was.
        """
        limit = self._source.max_answer_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise _too_large(service, limit, f"it declares {declared} bytes (Content-Length)")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
        del chunks
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
        except TimeoutError:
            raise _too_large(service, limit, f"more than {size} bytes, still arriving") from None
        raise _too_large(service, limit, f"it was {size} bytes")

    def _session_in_use(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    def _record_url(self, result: Any, raw_size: int) -> str:
        address = _address_in(result)
        if address is None:
            raise ApiResponseError(
                f"{GET_RECORD_FILE} answer: data.result must be an address or an object with "
                f"one of {', '.join(RECORD_URL_KEYS)}, got {_shape_of(result)}"
            )
        return urljoin(self._url, address)


# --- reading answers (pure) -------------------------------------------------------------


def _too_large(service: str, limit: int, how_large: str) -> _CountedError:
    error = AnswerTooLargeError(
        f"{service}: the answer is larger than source.max_answer_bytes ({limit}): {how_large}"
    )
    return _CountedError("too_large", error)


def _outcome_of(error: ApiError) -> str:
    if isinstance(error, RetryableError):
        return "retryable"
    return "permanent" if isinstance(error, PermanentError) else "content"


def _result_of(
    service: str,
    answer: _HttpAnswer,
    redact: Redactor,
    salvaged: Callable[[str, int], None],
) -> Any:
    """`data.result` of a successful answer; otherwise a _CountedError with its metric kind.
    `salvaged` hears of an answer that was read bill by bill, and of how many were unreadable.
    """
    if answer.status >= 500:
        error = ApiTransientError(
            f"{service}: HTTP {answer.status}: {_body_excerpt(answer, redact)}",
            retry_after=answer.retry_after,
        )
        raise _CountedError("http_5xx", error)
    if answer.status >= 400:
        raise _CountedError("http_4xx", _http_4xx_error(service, answer, redact))
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
            f"{len(answer.body)} bytes: {_body_excerpt(answer, redact)})"
        )
        raise _CountedError("bad_json", error) from exc
    return _envelope_result(service, document, redact)


def _unreadable_bills(document: Any) -> int:
    data = document.get("data") if isinstance(document, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    bills = result.get("bills") if isinstance(result, dict) else None
    return sum(isinstance(b, UnreadableBill) for b in bills) if isinstance(bills, list) else 0


def _http_4xx_error(service: str, answer: _HttpAnswer, redact: Redactor) -> ApiError:
    excerpt = _body_excerpt(answer, redact)
    if answer.status in _RETRYABLE_HTTP_4XX:
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
        raise _CountedError("ret_400", error)
    return data.get("result")


def _ret_failure(service: str, ret: int, message: str) -> _CountedError:
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
    return _CountedError(kind, error)


def _bad_envelope(message: str) -> NoReturn:
    raise _CountedError("bad_envelope", ApiResponseError(message))


def _read_result(read: Callable[[Any, int], T], result: Any, raw_size: int) -> T:
    try:
        return read(result, raw_size)
    except ApiResponseError as exc:
        raise _CountedError("bad_envelope", exc) from None


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
            return _clean(text, redact)
    return "no message"


def _body_excerpt(answer: _HttpAnswer, redact: Redactor) -> str:
    text = answer.body[: _SERVER_TEXT_LIMIT * 4].decode("utf-8", errors="replace")
    return _clean(text, redact) or "empty body"


def _clean(text: str, redact: Redactor) -> str:
    """One line of printable text cut to a readable length, with every secret replaced (one
    the cut, or an earlier one, went through included)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in redact(text)).split())
    return redact.cut(flat, _SERVER_TEXT_LIMIT)


def _redacted(error: ApiError, redact: Redactor) -> ApiError:
    """`error`, any secret left in its message replaced: the last check before it leaves."""
    message = str(error)
    clean = redact(message)
    if clean != message:
        error.args = (clean,)
    return error


def _safe_cause(exc: BaseException, redact: Redactor) -> BaseException | None:
    """`exc` to chain as the cause, or None when its text, or that of an exception it chains,
    holds a secret (a traceback would print it)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), repr(current)):
            if redact(text) != text:
                return None
        current = current.__cause__ or current.__context__
    return exc


def _resolved(base: str, location: str) -> str:
    """A `Location` as the absolute address it points to, otherwise as the server wrote it
    (not re-encoded, so that the redactor sees what the server sent)."""
    try:
        return urljoin(base, location)
    except ValueError:
        return location


def _shape_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:10])
        return f"an object with keys [{keys}]"
    return type(value).__name__


def _retry_after(header: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (the backoff applies instead)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())


# --- construction -----------------------------------------------------------------------


def _token_renewal_interval(source: SourceSettings) -> float:
    interval = source.token_lifetime_seconds - source.token_renew_before_seconds
    if interval <= 0:
        raise ConfigError(
            "source.token_renew_before_seconds must be less than source.token_lifetime_seconds, "
            "or every request would log in again"
        )
    return interval


def tls_option(source: SourceSettings) -> ssl.SSLContext | bool:
    """The `ssl` argument for aiohttp: True verifies against the system's CAs; an SSLContext
    verifies against `source.ca_file` only; False (`verify_tls = false`) verifies nothing and
    ignores `ca_file`."""
    if not source.verify_tls:
        if URL(str(source.api_url)).scheme == "https":
            log.warning(
                "TLS certificates of %s are NOT verified (source.verify_tls is false)",
                _display_url(source),
            )
        return False
    if source.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(source.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"source.ca_file {str(source.ca_file)!r} cannot be loaded as PEM certificates: {exc}"
        ) from exc


def default_session_factory(
    source: SourceSettings, connections: int
) -> Callable[[], aiohttp.ClientSession]:
    """Sessions with a bounded connection pool and the TLS settings of `source`. The proxy
    (`source.proxy_url`, or the environment's proxy variables, resolved once) is passed with
    each request by the client; the session itself trusts nothing from the environment.

    The CA file is read here, once, when the client is built, and not on the event loop's
    first request; a plain http:// vendor URL is warned about here, once.
    """
    tls = tls_option(source)
    warn_if_clear_text(source)
    headers = {"User-Agent": f"cdr-connector/{__version__}"}

    def create() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=connections, ssl=tls)
        return aiohttp.ClientSession(connector=connector, headers=headers)

    return create


def warn_if_clear_text(source: SourceSettings) -> None:
    """A plain http:// vendor URL carries the access key and tokens in clear text: say so,
    unless it is a loopback address reached without a configured proxy (nothing then crosses
    a network)."""
    url = URL(str(source.api_url))
    if url.scheme != "http" or (_is_loopback(url.host) and source.proxy_url is None):
        return
    log.warning(
        "source.api_url %s is plain http://: the access key and the tokens travel in clear "
        "text to it, readable and reusable by anyone on the way; use https://",
        _display_url(source),
    )


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _display_url(source: SourceSettings) -> str:
    """The API address without any user:password part."""
    return without_userinfo(str(source.api_url))
