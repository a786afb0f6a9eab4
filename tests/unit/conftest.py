"""Fixtures the unit tests share."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def ceiling_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backoff made during the test waits its longest, initial * 2 ** (failures in a
    row - 1), instead of a random share of it: a test can then tell the third failure in a
    row from the first (`backoff.Backoff` draws from the `random.Random` it is given)."""

    class Ceiling(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    monkeypatch.setattr(random, "Random", Ceiling)
