"""Mutation testing of the connector's core modules against the unit tests (`make mutate`).

    .venv/bin/python -m scripts.mutate                     # every core module, the defaults
    .venv/bin/python -m scripts.mutate --module poller --module api/client
    .venv/bin/python -m scripts.mutate --max-per-module 20 --budget-minutes 5

Every module of cdr_connector/ outside simulator/ is mutated (scripts/mutate/operators.py
lists the operators), a seeded sample of at most --max-per-module mutants spread over its
functions, and each mutant is run against the unit test files that judge the module
(scripts/mutate/selection.py says which; with --with-broker also a few integration files), in a
copy of the tree. A mutant whose tests still pass survived: some behaviour of that line is
checked by no unit test. The table and the survivors go to .mutate/report.md; the table is
also printed. Mutants run interleaved across modules, so a spent --budget-minutes leaves
every module partly measured rather than the last ones not at all.

Not part of `make test`: it is a measurement, as bench/ is, and takes about 25 minutes on
2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scripts.mutate import equivalents, report, runner, selection
from scripts.mutate.operators import Mutant, mutants_of
from scripts.mutate.sampling import round_robin, sample

TREE = Path(__file__).resolve().parents[2]
# Generous: the unmutated tests normally pass in seconds.
ORIGINAL_TIMEOUT_SECONDS = 180.0
# Added to the scaled baseline, so that a short run is not timed out by a busy machine.
TIMEOUT_SLACK_SECONDS = 5.0
PROGRESS_EVERY = 25
# The number of examples of the property tests (tests/unit/test_bill_properties.py), 10,000
# by default: a minute or more a run in pure Python, for every mutant of every module they
# import.
PROPERTY_EXAMPLES = "CDR_PROPERTY_EXAMPLES"
# Where the integration tests find the broker (tests/conftest.py reads it too).
BROKER_VARIABLE = "CDR_TEST_KAFKA_BOOTSTRAP"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run measures: the modules, their sources and tests, and the mutants chosen."""

    sources: dict[str, str]
    tests: dict[str, list[str]]
    chosen: dict[str, list[Mutant]]
    candidates: dict[str, int]
    equivalent: dict[str, list[tuple[Mutant, equivalents.Equivalent]]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.mutate",
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--budget-minutes", type=float, default=25.0, help="default: 25")
    parser.add_argument("--max-per-module", type=int, default=50, help="default: 50")
    parser.add_argument("--workers", type=int, default=2, help="parallel test runs; default: 2")
    parser.add_argument("--seed", default="21", help="of the sample; default: 21")
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=3.0,
        help="a mutant's tests time out after this many times the unmutated run, plus "
        f"{TIMEOUT_SLACK_SECONDS:g} s; default: 3",
    )
    parser.add_argument(
        "--property-examples",
        type=int,
        default=1000,
        help=f"examples of each property test (sets {PROPERTY_EXAMPLES}); default: 1000",
    )
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="only modules whose path contains this (repeatable); default: all",
    )
    parser.add_argument(
        "--with-broker",
        action="store_true",
        help="also run the integration test files named in selection.BROKER_TESTS for the "
        f"modules only a broker exercises (needs a broker at ${BROKER_VARIABLE})",
    )
    parser.add_argument("--out", type=Path, default=TREE / ".mutate", help="default: .mutate/")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.with_broker and not os.environ.get(BROKER_VARIABLE):
        parser.error(f"--with-broker needs {BROKER_VARIABLE}=HOST:PORT of a running broker")
    signal.signal(signal.SIGTERM, _interrupt)  # stop the workers and their runs, as Ctrl-C does
    deadline = runner.Deadline(args.budget_minutes * 60)
    with tempfile.TemporaryDirectory(prefix="cdr-mutate-") as scratch:
        snapshot = Path(scratch) / "snapshot"
        # The revision of the snapshot: the tree may be committed to while the run goes on.
        measured = _revision()
        runner.make_copy(TREE, snapshot)  # one consistent view, however the tree changes
        plan = make_plan(
            snapshot, args.module, args.max_per_module, args.seed, broker=args.with_broker
        )
        environment = {PROPERTY_EXAMPLES: str(args.property_examples)}
        with runner.workers(snapshot, Path(scratch), args.workers, environment) as pool:
            originals = _run_originals(pool, plan, args.workers, args.timeout_factor)
            results = _run_mutants(pool, plan, originals, args.workers, deadline)
    notes = originals.notes + _budget_note(results, originals.timeouts)
    notes += [
        f"{e.path}: the equivalent `{e.before}` -> `{e.after}` in `{e.function}` is listed "
        "in scripts/mutate/equivalents.py but no longer found"
        for e in equivalents.stale(plan.sources, plan.equivalent)
    ]
    rows = report.tally(originals.tests, results)
    _write_report(
        args,
        plan=plan,
        rows=rows,
        results=results,
        notes=notes,
        seconds=deadline.elapsed(),
        revision=measured,
    )
    print(report.table(rows))
    print(f"\nsurvivors and notes: {args.out / 'report.md'}")
    return 1 if originals.failed or rows[-1].errors else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def make_plan(
    root: Path, only: Sequence[str], cap: int, seed: str, *, broker: bool = False
) -> Plan:
    """The modules under `root` (those whose path contains one of `only`, if given), their
    unit tests and a sample of their mutants, the known equivalent ones left out."""
    modules = selection.core_modules(root)
    tests = selection.tests_by_module(root, modules)
    if broker:
        tests = selection.with_broker_tests(tests)
    chosen_modules = [m for m in modules if not only or any(part in m for part in only)]
    sources = {m: (root / m).read_text() for m in chosen_modules}
    every = {m: equivalents.split(mutants_of(sources[m], m), sources[m]) for m in chosen_modules}
    return Plan(
        sources=sources,
        tests={m: tests[m] for m in chosen_modules},
        chosen={m: sample(every[m].kept, cap, f"{seed}:{m}") for m in chosen_modules},
        candidates={m: len(every[m].kept) for m in chosen_modules},
        equivalent={m: every[m].excluded for m in chosen_modules},
    )


@dataclass(frozen=True, slots=True)
class Originals:
    """What the unmutated runs decided: the test files each module is measured with, its
    timeout, and why some modules or files are left out."""

    tests: dict[str, list[str]]
    timeouts: dict[str, float]
    notes: list[str]
    failed: bool


def _run_originals(pool: runner.WorkerPool, plan: Plan, threads: int, factor: float) -> Originals:
    """Every unit test file involved, unmutated and on its own. One that fails (a test being
    written, say) is left out of every module's tests, since it would kill every mutant; a
    module's timeout is scaled from the time of the files it keeps."""
    files = sorted({f for m, fs in plan.tests.items() if plan.chosen[m] for f in fs})
    jobs: list[Callable[[], runner.Run | None]] = [
        partial(runner.run_original, pool, [file], ORIGINAL_TIMEOUT_SECONDS) for file in files
    ]
    runs = dict(zip(files, runner.run_all(jobs, threads, lambda done: None), strict=True))
    seconds = {f: run.seconds for f, run in runs.items() if run and run.outcome == "survived"}
    notes = [f"{f}: left out, it fails without a mutant" for f in files if f not in seconds]
    tests = {m: [f for f in fs if f in seconds] for m, fs in plan.tests.items()}
    timeouts: dict[str, float] = {}
    for module, kept in tests.items():
        if not plan.tests[module]:
            notes.append(f"{module}: not run, no unit test file imports it")
        elif not plan.chosen[module]:
            notes.append(f"{module}: nothing to mutate")
        elif not kept:
            notes.append(f"{module}: not run, every unit test file importing it fails")
        else:
            timeouts[module] = factor * sum(seconds[f] for f in kept) + TIMEOUT_SLACK_SECONDS
            print(
                f"{module}: {len(plan.chosen[module])} of {plan.candidates[module]} mutants, "
                f"{len(kept)} test file(s), {timeouts[module]:.0f} s timeout",
                file=sys.stderr,
            )
    return Originals(tests, timeouts, notes, failed=len(seconds) < len(files))


def _run_mutants(
    pool: runner.WorkerPool,
    plan: Plan,
    originals: Originals,
    threads: int,
    deadline: runner.Deadline,
) -> list[report.Result]:
    """Every chosen mutant, interleaved across modules, until the deadline; each survivor is
    printed when it is found."""
    timeouts = originals.timeouts
    order = round_robin([plan.chosen[m] for m in plan.chosen if m in timeouts])
    skipped = [mutant for m in plan.chosen if m not in timeouts for mutant in plan.chosen[m]]

    def job(mutant: Mutant) -> runner.Run | None:
        if deadline.passed():
            return None
        source, tests = plan.sources[mutant.path], originals.tests[mutant.path]
        run = runner.run_mutant(pool, mutant, source, tests, timeouts[mutant.path])
        if run.outcome == "survived":  # as it happens: a long run's survivors are work to do
            before, after = report.changed_lines(source, mutant)
            print(
                f"survived: {mutant.path}:{mutant.line} {mutant.function}: {before} -> {after}",
                file=sys.stderr,
            )
        return run

    def progress(done: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == len(order):
            minutes = deadline.elapsed() / 60
            print(f"{done}/{len(order)} mutants, {minutes:.1f} min", file=sys.stderr)

    jobs = [partial(job, mutant) for mutant in order]
    runs = runner.run_all(jobs, threads, progress)
    results = [_result(mutant, run) for mutant, run in zip(order, runs, strict=True)]
    return results + [report.Result(mutant, None) for mutant in skipped]


def _result(mutant: Mutant, run: runner.Run | None) -> report.Result:
    if run is None:
        return report.Result(mutant, None)
    return report.Result(mutant, run.outcome, run.seconds)


def _budget_note(results: Sequence[report.Result], timeouts: Mapping[str, float]) -> list[str]:
    unrun = sum(1 for r in results if r.outcome is None and r.mutant.path in timeouts)
    return [f"{unrun} mutant(s) not run: the time budget was spent"] if unrun else []


def _write_report(
    args: argparse.Namespace,
    *,
    plan: Plan,
    rows: Sequence[report.Row],
    results: Sequence[report.Result],
    notes: Sequence[str],
    seconds: float,
    revision: str,
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Mutation testing of cdr_connector against tests/unit\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M')}, tree at {revision}: at most "
        f"{args.max_per_module} mutants a module (seed {args.seed}; "
        f"{sum(plan.candidates.values())} candidates in all), property tests with "
        f"{args.property_examples} examples, {args.workers} workers, {seconds / 60:.1f} min "
        f"(budget {args.budget_minutes:g}). Score: (killed + timed out) / (killed + survived "
        f"+ timed out). Known equivalent mutants are left out before sampling "
        f"({sum(len(pairs) for pairs in plan.equivalent.values())} here, listed at the end).\n"
    )
    body = [header, report.table(rows), ""]
    body += [f"- {line}" for line in notes]
    body += ["", "## Survivors", "", report.survivors(results, plan.sources)]
    body += ["", "## Equivalent mutants, left out", "", _equivalents(plan)]
    (args.out / "report.md").write_text("\n".join(body))


def _equivalents(plan: Plan) -> str:
    """Every mutant left out as equivalent, with the reason (scripts/mutate/equivalents.py)."""
    lines = [
        f"- {mutant.path} line {mutant.line}, `{entry.function}`: `{entry.before}` -> "
        f"`{entry.after}`: {entry.reason}"
        for pairs in plan.equivalent.values()
        for mutant, entry in pairs
    ]
    return "\n".join(lines) + "\n" if lines else "None.\n"


def _revision() -> str:
    described = subprocess.run(
        ["git", "--no-optional-locks", "describe", "--always", "--dirty"],
        cwd=TREE,
        capture_output=True,
        text=True,
        check=False,
    )
    return described.stdout.strip() or "an unknown revision"


if __name__ == "__main__":
    sys.exit(main())
