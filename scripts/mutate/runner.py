"""Runs tests against mutants, in copies of the tree, never in the working tree itself.

Each worker slot owns a copy: the package as pure Python (no compiled `*.so`, which Python
would import instead of the mutated `.py` beside it), the tests, and links to the rest of
the tree (schemas, README, ...) that tests read. A mutant is written into the slot's copy,
its tests run there (`scripts/mutate/worker.py`, a forked pytest per run), and the original
source is written back before the slot takes the next mutant.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scripts.mutate.operators import Mutant, apply

Outcome = Literal["killed", "survived", "timed out", "error"]

WORKER = Path(__file__).with_name("worker.py")
COPIED = ("cdr_connector", "tests")
# Never linked into a copy: compiled builds of the package, and local caches and state.
_NOT_LINKED = ("build", "dist")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", ".hypothesis", ".pytest_cache")
# pytest's exit codes for "tests failed" and "interrupted" (a mutant that breaks an import
# fails collection); anything else (internal error, no tests, ...) is the tool's problem.
_KILLED_EXITS = (1, 2)


@dataclass(frozen=True, slots=True)
class Run:
    """One pytest run: its exit code (None for a signal), duration and whether it timed out."""

    exit: int | None
    seconds: float
    timed_out: bool

    @property
    def outcome(self) -> Outcome:
        if self.timed_out:
            return "timed out"
        if self.exit == 0:
            return "survived"
        if self.exit is None or self.exit in _KILLED_EXITS:
            return "killed"
        return "error"


def make_copy(tree: Path, copy: Path) -> None:
    """The package and tests copied (the package as pure Python), the rest linked."""
    copy.mkdir(parents=True)
    for entry in sorted(tree.iterdir()):
        name = entry.name
        if name.startswith(".") or name.endswith((".so", ".pyd", ".egg-info")):
            continue
        if name in COPIED:
            shutil.copytree(entry, copy / name, ignore=_IGNORED)
        elif entry.is_file():
            shutil.copy2(entry, copy / name)
        elif name not in _NOT_LINKED:
            (copy / name).symlink_to(entry)


class Worker:
    """A running `worker.py` on one copy: one request, one answer, at a time."""

    def __init__(self, copy: Path, environment: Mapping[str, str]) -> None:
        self.copy = copy
        environment = {
            **os.environ,
            **environment,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",  # the same set orders in every run of a mutant
            "CDR_CONNECTOR_PURE_PYTHON": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, str(WORKER), str(copy)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=copy,
        )

    def run(self, tests: Sequence[str], timeout: float) -> Run:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"tests": list(tests), "timeout": timeout}) + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the mutation worker on {self.copy} stopped")
        document = json.loads(answer)
        return Run(document["exit"], document["seconds"], document["timed_out"])

    def last_output(self) -> str:
        log = self.copy / "pytest.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def close(self) -> None:
        """After the last answer: the worker ends when its input does."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()

    def stop(self) -> None:
        """At once, the test run in progress included (the worker kills it on SIGTERM)."""
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


WorkerPool = queue.Queue[Worker]


@contextmanager
def workers(
    snapshot: Path, scratch: Path, count: int, environment: Mapping[str, str]
) -> Iterator[WorkerPool]:
    """`count` workers, each on its own copy of `snapshot` (made by `make_copy`) under
    `scratch`, as a pool to take from and give back to; stopped at once on an exception."""
    pool: WorkerPool = queue.Queue()
    started: list[Worker] = []
    try:
        for index in range(count):
            copy = scratch / f"copy{index}"
            shutil.copytree(snapshot, copy, symlinks=True)
            started.append(Worker(copy, environment))
            pool.put(started[-1])
        yield pool
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    for worker in started:
        worker.close()


def run_original(pool: WorkerPool, tests: Sequence[str], timeout: float) -> Run:
    """The tests on the unmutated copy: whether they pass, and how long they take."""
    worker = pool.get()
    try:
        run = worker.run(tests, timeout)
        if run.outcome != "survived":
            tail = "\n".join(worker.last_output().splitlines()[-15:])
            print(f"{' '.join(tests)} fails without a mutant:\n{tail}\n", file=sys.stderr)
        return run
    finally:
        pool.put(worker)


def run_mutant(
    pool: WorkerPool, mutant: Mutant, source: str, tests: Sequence[str], timeout: float
) -> Run:
    """The tests on the copy with `mutant` applied; the copy is restored afterwards."""
    worker = pool.get()
    target = (worker.copy / mutant.path).resolve()
    if not target.is_relative_to(worker.copy.resolve()):
        raise RuntimeError(f"{target} is outside the copy {worker.copy}")
    try:
        target.write_text(apply(source, mutant))
        return worker.run(tests, timeout)
    finally:
        target.write_text(source)
        pool.put(worker)


def run_all(
    jobs: Sequence[Callable[[], Run | None]], threads: int, progress: Callable[[int], None]
) -> list[Run | None]:
    """Every job, `threads` at a time, results in the order of `jobs`."""
    results: list[Run | None] = [None] * len(jobs)
    executor = ThreadPoolExecutor(max_workers=threads)
    try:
        futures = {executor.submit(job): index for index, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            progress(done)
    except BaseException:
        # Not waiting: the running jobs end when their workers are stopped.
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()
    return results


class Deadline:
    """The end of the time budget; jobs not started by then are not run."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self._end = self.started + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self._end

    def elapsed(self) -> float:
        return time.monotonic() - self.started
