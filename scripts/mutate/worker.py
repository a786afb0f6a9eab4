"""Runs pytest on one copy of the tree, once per request, each run in a fresh forked process.

    python scripts/mutate/worker.py COPY_ROOT

Started once per worker slot by the mutation run; reads one JSON request a line on stdin
(`{"tests": [...], "timeout": seconds}`) and answers one JSON line on stdout (`{"exit": code
or null, "seconds": ..., "timed_out": bool}`). It imports pytest, its plugins and every
third-party module the package and its unit tests import once, up front; each run is a fork
of that state, so a mutant costs its tests and not ~0.7 s of imports. The package itself is
never imported here: each child imports it afresh from COPY_ROOT, mutated or not.

Self-contained (it is run by path, not as part of the `scripts` package) and single-threaded,
so forking it is safe. A child that outlives its timeout is killed with its whole process
group (it calls setsid), which is how an endless loop becomes "timed out".
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

PACKAGE = "cdr_connector"
OWN_TOP_LEVEL = {PACKAGE, "tests", "scripts"}
LOG_NAME = "pytest.log"  # the last run's output, in COPY_ROOT, for a baseline that fails
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header"]
EXIT_WRONG_PACKAGE = 97
EXIT_CRASHED = 98
POLL_SECONDS = 0.02


def main() -> None:
    # Stopped by the mutation run (or anyone) with SIGTERM: `_wait` still kills the run.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    root = Path(sys.argv[1]).resolve()
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
        sys.path.pop(0)  # this directory's modules must not shadow anything a test imports
    sys.dont_write_bytecode = True  # a mutant written in the same second must not hit a .pyc
    os.chdir(root)
    preload(root)
    for line in sys.stdin:
        request = json.loads(line)
        answer = run_isolated(root, list(request["tests"]), float(request["timeout"]))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _exit_on_signal(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def preload(root: Path) -> None:
    """Imports what every run would import anyway: pytest's plugins and the dependencies."""
    for entry in importlib.metadata.entry_points(group="pytest11"):
        with contextlib.suppress(Exception):
            entry.load()
    for name in sorted(_third_party_imports(root)):
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _third_party_imports(root: Path) -> set[str]:
    sources = [*(root / PACKAGE).rglob("*.py"), *(root / "tests" / "unit").glob("*.py")]
    sources.append(root / "tests" / "conftest.py")
    names: set[str] = set()
    for source in sources:
        with contextlib.suppress(OSError, SyntaxError, ValueError):
            names |= _imports_of(ast.parse(source.read_bytes()))
    return {name for name in names if name.split(".")[0] not in OWN_TOP_LEVEL}


def _imports_of(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def run_isolated(root: Path, tests: list[str], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(root, tests)
    exit_code, timed_out = _wait(pid, started + timeout)
    return {"exit": exit_code, "seconds": time.monotonic() - started, "timed_out": timed_out}


def _child(root: Path, tests: list[str]) -> NoReturn:
    code = EXIT_CRASHED
    try:
        os.setsid()
        _redirect_output(root / LOG_NAME)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.path.insert(0, str(root))
        _report_the_first_failing_example()
        code = EXIT_WRONG_PACKAGE if not _package_is_the_copy(root) else _pytest(tests)
    finally:
        os._exit(code)


def _pytest(tests: list[str]) -> int:
    return int(pytest.main([*PYTEST_ARGS, *tests]))


def _report_the_first_failing_example() -> None:
    """Hypothesis without shrinking and without its example database: a mutant is killed by
    the first example that fails (shrinking it to the simplest one can take minutes, and
    says nothing more here), and no run replays examples another mutant's run saved."""
    try:
        hypothesis = importlib.import_module("hypothesis")
    except ImportError:
        return
    phases = [hypothesis.Phase.explicit, hypothesis.Phase.generate]
    hypothesis.settings.register_profile("mutate", database=None, deadline=None, phases=phases)
    hypothesis.settings.load_profile("mutate")


def _redirect_output(log: Path) -> None:
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)


def _package_is_the_copy(root: Path) -> bool:
    """The package must come from the copy (pure Python, maybe mutated), never from the
    working tree with its compiled extensions."""
    spec = importlib.util.find_spec(PACKAGE)
    return spec is not None and spec.origin is not None and Path(spec.origin).is_relative_to(root)


def _wait(pid: int, deadline: float) -> tuple[int | None, bool]:
    """(exit code, or None if a signal ended it; whether it was killed for its timeout).

    The child is reaped only after its process group is killed, so the group id cannot have
    been reused by then."""
    timed_out = False
    try:
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(POLL_SECONDS)
    finally:
        _kill_group(pid)  # the run on a timeout or an interrupt, and whatever it left behind
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (None if timed_out or code < 0 else code), timed_out


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
