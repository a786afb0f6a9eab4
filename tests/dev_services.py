"""Runs the dev services' scripts (deploy/dev/kafka.sh, deploy/dev/registry.sh) for fixtures."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def run_dev_script(script: Path, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`script command` with its output captured; raises OSError or TimeoutExpired."""
    return subprocess.run(
        ["bash", str(script), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def local_service(
    script: Path, *, what: str, start_timeout: float, stop_timeout: float, instead: str
) -> Iterator[str]:
    """The address `script start` prints last, while the service runs.

    A service that already runs is reused and left running; one started here is stopped on
    exit. Fails the test (never skips it) when the service cannot start; `instead` says how
    to name one that runs elsewhere.
    """
    try:
        status = run_dev_script(script, "status", timeout=30)
        if status.returncode == 0 and status.stdout.strip():
            yield status.stdout.strip().splitlines()[-1]
            return
        start = run_dev_script(script, "start", timeout=start_timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run {script}: {exc}", pytrace=False)
    if start.returncode != 0 or not start.stdout.strip():
        pytest.fail(
            f"no {what}: `{script} start` exited {start.returncode}\n{tail(start.stderr)}\n"
            f"({instead})",
            pytrace=False,
        )
    try:
        yield start.stdout.strip().splitlines()[-1]
    finally:
        stop = run_dev_script(script, "stop", timeout=stop_timeout)
        if stop.returncode != 0:
            # Teardown must not hide test results; the script's own output says why.
            print(f"`{script} stop` exited {stop.returncode}:\n{tail(stop.stderr)}")
