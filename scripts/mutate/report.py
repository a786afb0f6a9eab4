"""The outcome of a mutation run: a table per module, and every survivor with its lines.

Score = (killed + timed out) / (killed + survived + timed out): the share of the mutants run
that the tests noticed. An endless loop counts as noticed (a test run that never ends fails
CI). Errors (pytest could not run at all) and mutants the time budget left unrun are shown,
but counted on neither side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scripts.mutate.operators import Mutant, apply
from scripts.mutate.runner import Outcome

_HEADER = (
    "| module | test files | mutants | tried | killed | survived | timed out | errors | score |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
)


@dataclass(frozen=True, slots=True)
class Result:
    mutant: Mutant
    outcome: Outcome | None  # None: not run, the time budget was spent
    seconds: float = 0.0


@dataclass(slots=True)
class Row:
    module: str
    test_files: int
    mutants: int = 0
    counts: dict[Outcome, int] = field(default_factory=dict)

    @property
    def killed(self) -> int:
        return self.counts.get("killed", 0)

    @property
    def survived(self) -> int:
        return self.counts.get("survived", 0)

    @property
    def timed_out(self) -> int:
        return self.counts.get("timed out", 0)

    @property
    def errors(self) -> int:
        return self.counts.get("error", 0)

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float | None:
        judged = self.killed + self.survived + self.timed_out
        return (self.killed + self.timed_out) / judged if judged else None

    def add(self, other: Row) -> None:
        self.mutants += other.mutants
        for outcome, count in other.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + count


def tally(tests: Mapping[str, Sequence[str]], results: Iterable[Result]) -> list[Row]:
    """One row per module (in the order of `tests`, module -> its test files), then the
    total, whose test files are the distinct ones."""
    rows = {module: Row(module, len(files)) for module, files in tests.items()}
    for result in results:
        row = rows[result.mutant.path]
        row.mutants += 1
        if result.outcome is not None:
            row.counts[result.outcome] = row.counts.get(result.outcome, 0) + 1
    total = Row("total", len({file for files in tests.values() for file in files}))
    for row in rows.values():
        total.add(row)
    return [*rows.values(), total]


def table(rows: Sequence[Row]) -> str:
    lines = list(_HEADER)
    for row in rows:
        cells = [row.module, row.test_files, row.mutants, row.tried, row.killed, row.survived]
        cells += [row.timed_out, row.errors, _percent(row.score)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _percent(score: float | None) -> str:
    return "—" if score is None else f"{score:.0%}"


def survivors(results: Iterable[Result], sources: Mapping[str, str]) -> str:
    """Every surviving mutant, by module and line, with the original and the mutated line."""
    found = sorted(
        (r.mutant for r in results if r.outcome == "survived"),
        key=lambda m: (m.path, m.start, m.operator, m.replacement),
    )
    parts: list[str] = []
    for path in dict.fromkeys(m.path for m in found):
        of_module = [m for m in found if m.path == path]
        parts.append(f"### {path} ({len(of_module)})\n")
        parts.extend(_survivor(m, sources[path]) for m in of_module)
    return "\n".join(parts) if parts else "None.\n"


def _survivor(mutant: Mutant, source: str) -> str:
    original, mutated = changed_lines(source, mutant)
    return (
        f"- line {mutant.line}, `{mutant.function}`: {mutant.operator}, {mutant.description}\n"
        f"  ```diff\n  - {original}\n  + {mutated}\n  ```\n"
    )


def changed_lines(source: str, mutant: Mutant) -> tuple[str, str]:
    """The mutant's first line before and after (stripped); `…` marks a statement cut short."""
    line = mutant.line - 1
    original = source.splitlines()[line].strip()
    if mutant.end[0] > mutant.start[0]:
        original += " …"
    return original, apply(source, mutant).splitlines()[line].strip()
