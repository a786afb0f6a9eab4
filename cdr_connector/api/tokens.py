"""The vendor API token's life cycle: when to log in, which token a request uses, and when a
token the server rejected is dropped.

The token is renewed by the clock `token_lifetime_seconds - token_renew_before_seconds` after
each login, and at once when the server answers 600. Either way exactly one login happens per
expiry however many requests are in flight: logins are serialised by a lock, each token
carries a generation number, and a request that got 600 drops its token only if no newer one
has replaced it meanwhile.

The login request itself (its form, its retries, the reading of its answer) belongs to the
client, which hands the keeper a `LogIn` callable; the keeper knows no HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cdr_connector.clock import Clock
from cdr_connector.config import SourceSettings
from cdr_connector.errors import ConfigError
from cdr_connector.recorder import Recorder

log = logging.getLogger(__name__)

LogIn = Callable[[], Awaitable[str]]
"""One login request to the vendor, answering the new token's value."""


@dataclass(frozen=True, slots=True)
class Token:
    """A token as the server issued it; its value never shows in a repr."""

    value: str = field(repr=False)
    generation: int
    renew_at: float  # on the clock's monotonic scale


class TokenKeeper:
    """Hands out a valid token, logging in when there is none or when it is due for renewal.

    Methods may run concurrently; `valid` and `renew` log in at most once at a time.
    Errors of the login request are raised as the `LogIn` callable raised them.
    """

    def __init__(
        self, source: SourceSettings, clock: Clock, log_in: LogIn, recorder: Recorder
    ) -> None:
        self._valid_for = renewal_interval(source)
        self._recorder = recorder
        self._appid = source.appid
        self._clock = clock
        self._log_in_request = log_in
        self._lock = asyncio.Lock()
        self._token: Token | None = None
        self._generation = 0

    @property
    def current(self) -> Token | None:
        """The token requests use now, or None before the first login or after a rejection."""
        return self._token

    async def valid(self) -> Token:
        """The current token, or a new one when there is none or it is due for renewal."""
        token = self._token
        if token is not None and not self._due(token):
            return token
        async with self._lock:
            # Another request may have logged in while this one waited for the lock.
            token = self._token
            if token is None or self._due(token):
                token = await self._log_in()
            return token

    async def renew(self) -> Token:
        """Log in now, even with a valid token."""
        async with self._lock:
            return await self._log_in()

    def reject(self, rejected: Token) -> None:
        """Forget a token the server rejected, unless a newer one has replaced it already."""
        current = self._token
        if current is not None and current.generation == rejected.generation:
            log.info(
                "the vendor API rejected token %d as expired; logging in again", rejected.generation
            )
            self._token = None

    def forget(self) -> None:
        """Drop the token, so that the next request logs in (after the client is closed)."""
        self._token = None

    async def _log_in(self) -> Token:
        """One login; the caller holds the lock."""
        # Counted from before the request, so never later than the server starts counting.
        issued_at = self._clock.monotonic()
        value = await self._log_in_request()
        self._generation += 1
        token = Token(value, self._generation, issued_at + self._valid_for)
        self._token = token
        self._recorder.token_renewed()
        log.info(
            "logged in to the vendor API as appid %s (token %d, renewed in %.0f s)",
            self._appid,
            token.generation,
            self._valid_for,
        )
        return token

    def _due(self, token: Token) -> bool:
        return self._clock.monotonic() >= token.renew_at


def renewal_interval(source: SourceSettings) -> float:
    """Seconds from a login to the renewal of its token; refused when not positive."""
    interval = source.token_lifetime_seconds - source.token_renew_before_seconds
    if interval <= 0:
        raise ConfigError(
            "source.token_renew_before_seconds must be less than source.token_lifetime_seconds, "
            "or every request would log in again"
        )
    return interval
