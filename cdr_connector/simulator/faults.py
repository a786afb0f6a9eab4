"""Fault decisions for API requests, from a seeded random source (see `FaultConfig` for what
each knob does and when it strikes)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from cdr_connector.simulator.config import FaultConfig

Fault = Literal["http_5xx", "ret_500", "drop", "slow", "bad_json"]
_RATES: tuple[tuple[Fault, str], ...] = (
    ("http_5xx", "http_5xx_rate"),
    ("ret_500", "ret_500_rate"),
    ("drop", "drop_rate"),
    ("slow", "slow_rate"),
    ("bad_json", "bad_json_rate"),
)
_PHP_WARNING = (
    b"<br />\n<b>Warning</b>:  mysqli_query(): MySQL server has gone away in "
    b"<b>/var/www/api/Sip/Cdr.php</b> on line <b>212</b><br />\n"
)
_HTML_ERROR = b"<html><head><title>Error</title></head><body><h1>Service Error</h1></body></html>"


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._config = config
        self._rng = random.Random(f"{seed}/faults")
        self._changed = asyncio.Event()
        self.injected: Counter[str] = Counter()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def update(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Apply a partial update (ValueError if invalid) and wake whoever waits on it."""
        self._config = self._config.updated(changes)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self._config

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def latency(self) -> float:
        """Seconds to delay this request by."""
        config = self._config
        jitter = self._rng.uniform(0, config.jitter_ms) if config.jitter_ms else 0.0
        return (config.latency_ms + jitter) / 1000

    def draw(self) -> Fault | None:
        """At most one fault for this request. If the rates add up to more than 1, the kinds
        listed first in `_RATES` win."""
        point = self._rng.random()
        for fault, rate_name in _RATES:
            rate: float = getattr(self._config, rate_name)
            if point < rate:
                self.injected[fault] += 1
                return fault
            point -= rate
        return None

    def http_status(self) -> int:
        return self._rng.choice((502, 503))

    def mangle(self, body: bytes) -> bytes:
        """A body that is not the JSON it should be: cut short, or wrapped in PHP or HTML noise."""
        variant = self._rng.randrange(3)
        if variant == 0:
            return body[: self._rng.randrange(1, max(2, len(body) - 1))]
        if variant == 1:
            return _PHP_WARNING + body
        return _HTML_ERROR

    def count(self, kind: str) -> None:
        self.injected[kind] += 1
