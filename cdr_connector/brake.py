"""The brake: when to stop reading new records with syncflag=1.

Every syncflag=1 read marks its records as read at the vendor. When the connector cannot
publish what it reads (a vendor format change dead-letters nearly every bill; a bug makes
every transaction fail), reading on would move every new record out of the unqueried set and
into the dead-letter topic, or nowhere. Stopping the live reads leaves them with the vendor,
where a restart after the fix finds them (compare arroyo's `DlqLimit`).

Two conditions engage it, and only a restart releases it (the cause needs a person):
- more than `dead_letter_ratio` of the last `window_bills` bills converted were
  dead-lettered (duplicates dropped are not counted);
- `max_commit_failures` transactions in a row failed with an unexpected error.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from cdr_connector.config import BrakeSettings

BrakeKind = Literal["dead_letters", "commit_failures"]


class Brake:
    """Counts outcomes and says whether, and why, live reads must stop. Not thread-safe: the
    committer alone feeds it."""

    def __init__(self, settings: BrakeSettings) -> None:
        self._settings = settings
        self._recent: deque[bool] = deque(maxlen=settings.window_bills)
        """True for a dead letter, False for a record, newest last."""
        self._commit_failures = 0
        self.kind: BrakeKind | None = None
        self.reason: str | None = None

    @property
    def engaged(self) -> bool:
        return self.kind is not None

    def observe(self, records: int, dead_letters: int) -> bool:
        """Count a committed batch's outcomes; True when this engaged the brake."""
        self._commit_failures = 0
        window = self._settings.window_bills
        recent = self._recent
        # Only the last `window` outcomes matter; a batch's order among them does not.
        recent.extend([False] * min(records, window))
        recent.extend([True] * min(dead_letters, window))
        dead = sum(recent)
        if dead <= self._settings.dead_letter_ratio * window:
            return False
        return self._engage(
            "dead_letters",
            f"{dead} of the last {len(recent)} bills were dead-lettered (more than "
            f"brake.dead_letter_ratio {self._settings.dead_letter_ratio:g} of "
            f"brake.window_bills {window}): the vendor's format may have changed",
        )

    def commit_failed(self, error: BaseException) -> bool:
        """Count a transaction that failed unexpectedly; True when this engaged the brake."""
        self._commit_failures += 1
        if self._commit_failures < self._settings.max_commit_failures:
            return False
        return self._engage(
            "commit_failures",
            f"{self._commit_failures} transactions in a row failed unexpectedly "
            f"(brake.max_commit_failures), the last with {type(error).__name__}: {error}",
        )

    def _engage(self, kind: BrakeKind, reason: str) -> bool:
        if not self._settings.enabled or self.engaged:
            return False
        self.kind = kind
        self.reason = (
            f"live reads stopped by the brake: {reason}. Fetched records are still "
            "committed and the rest stay with the vendor; fix the cause and restart"
        )
        return True
