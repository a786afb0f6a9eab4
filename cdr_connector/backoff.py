"""How long to wait before trying again: exponential backoff with full jitter.

The n-th retry waits a uniformly random time between 0 and `min(maximum, initial * 2**(n-1))`.
The randomness matters more than the exponent: requests that failed together (every page of
a round when the server restarts, or every replica of the connector) would otherwise come
back together and knock the recovering server over again. Full jitter spreads them over the
whole interval, which keeps the total load lowest for a given time to recover.
"""

from __future__ import annotations

import random

# 2**64 times any sensible initial delay is far past any cap; stopping the exponent there keeps
# the arithmetic finite however long a caller keeps counting failures.
_MAX_EXPONENT = 64


class Backoff:
    """A pure backoff policy: no state between calls except the random source.

    `attempt` counts failures so far, starting at 1: `delay(1)` is the pause after the first
    failure. Pass a seeded `random.Random` to make delays reproducible in tests.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0:
            raise ValueError(f"initial delay must be > 0 seconds, got {initial}")
        if maximum < initial:
            raise ValueError(f"maximum delay {maximum} must not be below the initial {initial}")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """The longest pause after failure number `attempt`."""
        if attempt < 1:
            raise ValueError(f"attempt counts failures from 1, got {attempt}")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        return min(self.maximum, self.initial * 2.0**exponent)

    def delay(self, attempt: int) -> float:
        """A random pause in [0, ceiling(attempt)]."""
        return self._rng.uniform(0.0, self.ceiling(attempt))
