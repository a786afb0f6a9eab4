"""Tokens issued by `App.Sip_Auth.Login`: valid for a fixed lifetime, revocable all at once."""

from __future__ import annotations

import secrets

from cdr_connector.simulator.clock import Clock


class TokenRegistry:
    def __init__(self, clock: Clock, ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        token = secrets.token_hex(16)
        self._expiry[token] = self._clock.time() + self._ttl
        return token

    def is_valid(self, token: str) -> bool:
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if self._clock.time() >= expiry:
            del self._expiry[token]
            return False
        return True

    def revoke_all(self) -> int:
        """Invalidate every issued token; returns how many were still held."""
        count = len(self._expiry)
        self._expiry.clear()
        return count
