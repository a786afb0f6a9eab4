"""Which mutants of a module are run: a seeded sample, spread over every function.

A plain random sample of a module's mutants favours its longest functions; a short function
with a single tested-or-not comparison would often get no mutant at all. So the sample takes
mutants from each function in turn (in source order), one per function per round, each
function's own order shuffled with the seed. Any prefix of the result is spread the same
way, which is what a time budget cuts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

from scripts.mutate.operators import Mutant

T = TypeVar("T")


def sample(mutants: Sequence[Mutant], cap: int, seed: str) -> list[Mutant]:
    """At most `cap` of `mutants`, the same ones for the same seed and source."""
    rng = random.Random(seed)
    by_function: dict[str, list[Mutant]] = {}
    for mutant in mutants:
        by_function.setdefault(mutant.function, []).append(mutant)
    for group in by_function.values():
        rng.shuffle(group)
    return round_robin(by_function.values())[: max(cap, 0)]


def round_robin(groups: Iterable[Sequence[T]]) -> list[T]:
    """The first item of every group, then the second of every group, and so on."""
    lists = [list(group) for group in groups]
    longest = max((len(group) for group in lists), default=0)
    return [group[index] for index in range(longest) for group in lists if index < len(group)]
