"""One HTTP exchange with the vendor: a form posted to `source.api_url`, its answer read
within its limits. What the answer means (the envelope, `ret` codes, retries, tokens) is the
client's (cdr_connector/api/client.py); this module knows HTTP only.

- HTTP 3xx: no redirect is followed (a 307 or 308 would post the same form, access key
  included, to wherever `Location` points, plain http:// or another host included); a
  redirect is ApiRequestError naming the `Location` without its user:password part.
- HTTP 407, from the proxy itself or as its answer to CONNECT: ApiAuthError naming the proxy
  and the setting that holds its credentials; the proxy's other refusals of CONNECT by status.
- An answer larger than `source.max_answer_bytes`: AnswerTooLargeError, read no further.
- Timeouts and transport failures: ApiTransientError.

Egress: `source.proxy_url` when set (its credentials from the URL or
`source.proxy_credentials_file`); otherwise the proxy the environment names, resolved once
(HTTPS_PROXY / HTTP_PROXY / NO_PROXY). A third-party exception whose text holds a secret is not
chained as the cause.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin
from urllib.request import getproxies, proxy_bypass

import aiohttp
from yarl import URL

from cdr_connector import __version__
from cdr_connector.config import SourceSettings
from cdr_connector.errors import (
    AnswerTooLargeError,
    ApiAuthError,
    ApiError,
    ApiRequestError,
    ApiTransientError,
    ConfigError,
)
from cdr_connector.redaction import Redactor, without_userinfo

log = logging.getLogger(__name__)

# A proxy's "too many requests" or "request timeout" passes by itself; other 4xx do not.
RETRYABLE_HTTP_4XX = frozenset({408, 429})
_PROXY_AUTH_REQUIRED = 407
# Server text quoted in an exception is cut here: enough to recognise an error page.
_SERVER_TEXT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An answer as HTTP delivered it, before anything reads its body as JSON."""

    status: int
    body: bytes
    content_type: str
    retry_after: float | None  # Retry-After in seconds, when the server gave one


class CountedError(Exception):
    """An API error and the `kind` it is counted under; unwrapped before it leaves the client."""

    def __init__(self, kind: str, error: ApiError) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error


@dataclass(frozen=True, slots=True)
class Egress:
    """How requests leave: through which proxy, if any, and what a person fixes when the proxy
    refuses its credentials."""

    proxy: URL | None = field(repr=False)  # with its credentials, for aiohttp
    shown: str | None  # the proxy's address without credentials, for messages
    fix: str

    @classmethod
    def of(cls, source: SourceSettings) -> Egress:
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


class Transport:
    """Posts forms to the vendor over one aiohttp session, created on first use and reused.

    `post` answers every HTTP status it does not refuse itself (redirects, the proxy's
    refusals, oversized answers), so that the caller reads 4xx and 5xx bodies; its failures
    are CountedErrors, their `kind` the client's metric label.
    """

    def __init__(
        self,
        source: SourceSettings,
        session_factory: Callable[[], aiohttp.ClientSession],
        redact: Redactor,
    ) -> None:
        self._source = source
        self._url = str(source.api_url)
        self._timeout = aiohttp.ClientTimeout(total=source.request_timeout_seconds)
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._redact = redact
        self._egress = Egress.of(source)

    async def close(self) -> None:
        """Close the session; the next `post` opens a new one. Idempotent."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def post(self, service: str, form: Mapping[str, str]) -> HttpAnswer:
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
                return HttpAnswer(
                    response.status,
                    body,
                    response.content_type,
                    _retry_after(response.headers.get("Retry-After")),
                )
        # Before ClientError: aiohttp's ServerTimeoutError is both.
        except TimeoutError as exc:
            seconds = self._source.request_timeout_seconds
            error = ApiTransientError(f"{service}: no complete answer within {seconds:g} s")
            raise CountedError("timeout", error) from exc
        except aiohttp.ClientHttpProxyError as exc:
            # Its request info holds the Proxy-Authorization header: never chained.
            failure, cause = self._proxy_refusal(service, exc.status), None
        except aiohttp.ClientError as exc:
            detail = clean(str(exc), self._redact) or "connection failed"
            error = ApiTransientError(f"{service}: {type(exc).__name__}: {detail}")
            failure, cause = CountedError("transport", error), _safe_cause(exc, self._redact)
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
                target = clean(without_userinfo(_resolved(self._url, location)), self._redact)
            error = ApiRequestError(
                f"{service}: HTTP {status} redirect to {target}: not followed, as it would "
                f"send the access key there; set source.api_url to the address that answers"
            )
            raise CountedError("redirect", error)

    def _proxy_refusal(self, service: str, status: int) -> CountedError:
        """The proxy's own refusal: 407 (its credentials), or its answer to CONNECT."""
        proxy = f"the proxy {self._egress.shown}" if self._egress.shown else "a proxy"
        api = clean(without_userinfo(self._url), self._redact)
        if status == _PROXY_AUTH_REQUIRED:
            error: ApiError = ApiAuthError(
                f"{service}: {proxy} refused the connector (HTTP 407 Proxy Authentication "
                f"Required): {self._egress.fix}"
            )
            return CountedError("http_4xx", error)
        message = f"{service}: {proxy} refused to connect to {api} (HTTP {status})"
        if status >= 500 or status in RETRYABLE_HTTP_4XX:
            kind = "http_5xx" if status >= 500 else "http_4xx"
            return CountedError(kind, ApiTransientError(message))
        return CountedError(
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


def _too_large(service: str, limit: int, how_large: str) -> CountedError:
    error = AnswerTooLargeError(
        f"{service}: the answer is larger than source.max_answer_bytes ({limit}): {how_large}"
    )
    return CountedError("too_large", error)


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


def _retry_after(header: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (the backoff applies instead)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())


def clean(text: str, redact: Redactor) -> str:
    """One line of printable text cut to a readable length, with every secret replaced (one
    the cut, or an earlier one, went through included)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in redact(text)).split())
    return redact.cut(flat, _SERVER_TEXT_LIMIT)


def body_excerpt(answer: HttpAnswer, redact: Redactor) -> str:
    text = answer.body[: _SERVER_TEXT_LIMIT * 4].decode("utf-8", errors="replace")
    return clean(text, redact) or "empty body"


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
