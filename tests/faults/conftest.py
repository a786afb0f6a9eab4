"""The fault-injection suite's summary: every scenario adds its row to a session-wide report,
printed as a table at the end of the run. With CDR_FAULTS_WRITE_SUMMARY=1 the table also
replaces the one in docs/fault-injection.md (between its summary markers)."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.faults.private_broker import PrivateBroker
from tests.faults.scenarios import LONG, Outcome
from tests.integration.harness import Topics

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_FILE = REPO_ROOT / "docs" / "fault-injection.md"
WRITE_ENV = "CDR_FAULTS_WRITE_SUMMARY"
BEGIN_MARK = "<!-- fault-summary:begin -->"
END_MARK = "<!-- fault-summary:end -->"
COLUMNS = (
    "scenario",
    "records made",
    "committed",
    "lost",
    "duplicated",
    "out of order",
    "recovered by sweep",
    "dead letters",
    "seconds",
)


class FaultReport:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def rows(self) -> list[tuple[str, ...]]:
        ordered = sorted(self.outcomes, key=_scenario_order)
        return [
            (
                o.scenario + (f" ({o.note})" if o.note else ""),
                str(o.made),
                str(o.committed),
                str(o.lost),
                str(o.duplicated),
                str(o.out_of_order),
                str(o.recovered),
                str(o.dead_letters),
                f"{o.seconds:.0f}",
            )
            for o in ordered
        ]

    def plain_table(self) -> list[str]:
        rows = [COLUMNS, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return lines

    def markdown_table(self) -> str:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines)


def _scenario_order(outcome: Outcome) -> tuple[int, str]:
    """By the scenario's number ("10. ..." after "9. ..."), then by name."""
    number, _, _ = outcome.scenario.partition(".")
    return (int(number) if number.isdigit() else 0, outcome.scenario)


_REPORT = pytest.StashKey[FaultReport]()


@pytest.fixture(scope="session")
def fault_report(request: pytest.FixtureRequest) -> FaultReport:
    report = request.config.stash.get(_REPORT, None)
    if report is None:
        report = request.config.stash[_REPORT] = FaultReport()
    return report


@pytest.fixture
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path_factory.mktemp("kafka-run"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics(unique_topic: Callable[[str], str]) -> Topics:
    return Topics(unique_topic("faults"), unique_topic("faults-dlq"), unique_topic("faults-state"))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.outcomes:
        return
    terminalreporter.section("fault-injection summary")
    for line in report.plain_table():
        terminalreporter.write_line(line)
    if os.environ.get(WRITE_ENV, "").strip() == "1":
        _write_summary(report, exitstatus)
        terminalreporter.write_line(f"summary written to {SUMMARY_FILE.relative_to(REPO_ROOT)}")


def _write_summary(report: FaultReport, exitstatus: int) -> None:
    text = SUMMARY_FILE.read_text(encoding="utf-8")
    begin, end = text.index(BEGIN_MARK), text.index(END_MARK)
    variant = "long variant (CDR_FAULTS_LONG=1)" if LONG else "default run"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    result = "passed" if exitstatus == 0 else f"pytest exit status {exitstatus}"
    block = (
        f"{BEGIN_MARK}\n"
        f"Run of {stamp}, {variant}, {os.cpu_count()} CPUs, Python {platform.python_version()}: "
        f"{result}.\n\n{report.markdown_table()}\n"
    )
    SUMMARY_FILE.write_text(text[:begin] + block + text[end:], encoding="utf-8")
