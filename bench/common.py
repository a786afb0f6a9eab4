"""What every benchmark part shares: the broker, the simulator and connector processes, their
CPU and memory as /proc reports them, and the connector's /metrics.

Every process runs on its own: the simulator, the connector and the naive client are separate
interpreters, so one's CPU never counts as another's and neither shares an event loop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / ".out"
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "dev" / "kafka.sh"
APPID, ACCESSKEY = "bench", "bench-secret"
PAGE_SIZE = 1000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def source_root() -> Path:
    """Where the processes started here import `cdr_connector` from: a `git archive` of the
    revision under test (so edits in the working tree do not change a run half-way), or a
    patched copy; `bench` itself always comes from this checkout (PYTHONPATH)."""
    return Path(os.environ.get("BENCH_SOURCE_ROOT", str(REPO_ROOT)))


def use_revision(revision: str) -> str:
    """Export `cdr_connector/` (and the `schemas/` it links to) at `revision` under
    bench/.out/src/, build it as an install would (setup.py compiles the bill writer with
    mypyc, at revisions that have it) and run it from there; returns the commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    target = OUT_DIR / "src" / commit
    if not (target / "cdr_connector").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        try:
            archive = subprocess.run(
                ["git", "archive", commit, "cdr_connector", "schemas"],
                cwd=REPO_ROOT, capture_output=True, check=True,
            ).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
            _build_extensions(commit, target)
        except BaseException:
            # Half made, it would pass for built next time and run without its extensions.
            shutil.rmtree(target, ignore_errors=True)
            raise
    use_source(target)
    return commit


def _build_extensions(commit: str, target: Path) -> None:
    has_setup = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}:setup.py"],
        cwd=REPO_ROOT, capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    if not has_setup:
        return
    setup = subprocess.run(
        ["git", "show", f"{commit}:setup.py"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    (target / "setup.py").write_bytes(setup)
    built = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=target, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        output = (built.stdout + built.stderr)[-3000:]
        raise RuntimeError(f"building the extensions of {commit} failed:\n{output}")


def use_worktree() -> str:
    """Copy the working tree's `cdr_connector/` (with its extensions as built in place, and
    the `schemas/` it links to) under bench/.out/src/ and run it from there, for code not
    committed yet: later edits of the tree cannot change a run half-way. Returns a label."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = OUT_DIR / "src" / f"worktree-{stamp}"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(
        REPO_ROOT / "cdr_connector", target / "cdr_connector", symlinks=True, ignore=ignore
    )
    shutil.copytree(REPO_ROOT / "schemas", target / "schemas")
    for native in REPO_ROOT.glob("cdr_connector_native__mypyc*.so"):
        shutil.copy2(native, target / native.name)
    use_source(target)
    return f"the working tree on {head}, copied at {stamp} UTC"


def use_source(root: Path) -> None:
    os.environ["BENCH_SOURCE_ROOT"] = str(root)
    os.environ["PYTHONPATH"] = str(REPO_ROOT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> float:
    """The 1-minute load average, recorded with every figure (2 cores: above 2 is busy)."""
    return os.getloadavg()[0]


# --- the broker ---------------------------------------------------------------------------------


@dataclass
class Broker:
    bootstrap: str
    started_here: bool
    env: dict[str, str]

    def stop(self) -> None:
        if self.started_here:
            subprocess.run([str(KAFKA_SCRIPT), "stop"], env=self.env, check=False)


def own_broker_pid(bootstrap: str) -> int | None:
    """The pid of the broker in bench/.out/kafka if it runs and is the one at `bootstrap`
    (not another named by --bootstrap)."""
    run_dir = OUT_DIR / "kafka"
    try:
        address = (run_dir / "broker.addr").read_text().strip()
        pid = int((run_dir / "broker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if address == bootstrap and Path(f"/proc/{pid}").exists() else None


def start_broker(port: int, bootstrap: str | None) -> Broker:
    """A broker of our own (run directory under bench/.out), unless `bootstrap` names one."""
    env = {**os.environ, "KAFKA_RUN_DIR": str(OUT_DIR / "kafka"), "KAFKA_PORT": str(port)}
    if bootstrap:
        return Broker(bootstrap, False, env)
    running = subprocess.run(
        [str(KAFKA_SCRIPT), "status"], env=env, capture_output=True, text=True, check=False
    )
    if running.returncode == 0:
        return Broker(running.stdout.strip().splitlines()[-1], False, env)
    started = subprocess.run(
        [str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True, check=True
    )
    return Broker(started.stdout.strip().splitlines()[-1], True, env)


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Drop a run's topics, so that many runs do not fill the broker's disk."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except Exception as exc:
                print(f"bench: deleting a topic failed: {exc}", file=sys.stderr)


# --- /proc ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of all threads of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU so far of each live thread of `pid`, by thread name with its digits
    dropped (librdkafka's `rdk:broker1` and `rdk:broker2` add up as `rdk:broker`)."""
    totals: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile (ESRCH)
            continue
        name = text[text.index("(") + 1 : text.rindex(")")].rstrip("0123456789_")
        fields = text.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB: resident now and its peak."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


# --- the simulator -------------------------------------------------------------------------------


@dataclass
class Simulator:
    process: subprocess.Popen[bytes]
    url: str
    preload_seconds: float

    @property
    def admin_url(self) -> str:
        return f"{self.url}admin/"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin_url}stats", timeout=10) as response:
            stats: dict[str, Any] = orjson.loads(response.read())
        return stats

    def unqueried(self) -> int:
        return int(self.stats()["records"]["unqueried"])


@contextmanager
def simulator(
    name: str, *, backlog: int, rate: float = 0.0, latency_ms: float = 0.0, accounts: int = 1
) -> Iterator[Simulator]:
    """The simulator's CLI in its own process, its backlog preloaded; stopped on exit.

    The backlog's calls end within the hour before start-up, well inside the connector's
    lookback, so every one of them is in the live window. With `accounts` above 1 it serves
    that many vendor accounts (`account_credentials`), `backlog` and `rate` applying to each.
    """
    log_path = OUT_DIR / "logs" / f"{name}.simulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # Only when asked for: revisions from before `--accounts` are measured too.
        several = ["--accounts", str(accounts)] if accounts != 1 else []
        process = subprocess.Popen(
            [
                sys.executable, "-m", "cdr_connector.simulator.cli",
                "--port", "0", "--appid", APPID, "--accesskey", ACCESSKEY,
                "--backlog", str(backlog), "--backlog-span", "3600",
                "--rate", str(rate), "--latency-ms", str(latency_ms), *several,
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=source_root(),
        )  # fmt: skip
    try:
        url, preload = _wait_listening(process, log_path)
        yield Simulator(process, url, preload)
    finally:
        stop_process(process)


def account_credentials(index: int, accounts: int) -> tuple[str, str]:
    """(appid, accesskey) of account `index` (1..`accounts`) of the simulator: suffixed with
    the index when it serves several, its own when it serves one."""
    if accounts == 1:
        return APPID, ACCESSKEY
    return f"{APPID}-{index}", f"{ACCESSKEY}-{index}"


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path) -> tuple[str, float]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        preload = re.search(r"backlog of \d+ records in ([\d.]+) s", text)
        if listening := re.search(r"listening on (\S+)", text):
            return listening[1], float(preload[1]) if preload else 0.0
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited:\n{text}")
        time.sleep(0.1)
    raise RuntimeError("the simulator did not start within 300 s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# --- the connector -------------------------------------------------------------------------------


def connector_env(
    bootstrap: str, api_url: str, source: str, http_port: int, **extra: str
) -> dict[str, str]:
    """The shared settings of a connector against the simulator (connecting.py), on topics
    named after `source` (one per run), logging warnings only (a benchmark reads /metrics,
    not the log). Imported here, not at the top: processes started from a revision under
    test import this module with that revision's `cdr_connector`."""
    from cdr_connector.simulator.connecting import Topics
    from cdr_connector.simulator.connecting import connector_env as shared

    return shared(
        bootstrap,
        api_url,
        Topics.named(source),
        source=source,
        http_port=http_port,
        appid=APPID,
        accesskey=ACCESSKEY,
        **({"CDR_LOG__LEVEL": "WARNING"} | extra),
    )


class Connector:
    """`python -m cdr_connector run` as a child process, its log under bench/.out/logs;
    `module` bench.untransacted runs it with transactions switched off."""

    def __init__(self, name: str, env: dict[str, str], module: str = "cdr_connector") -> None:
        self.port = int(env["CDR_HTTP__PORT"])
        self.source = env.get("CDR_SOURCE__NAME", "")  # none with several sources (CDR_SOURCES)
        self.log_path = OUT_DIR / "logs" / f"{name}.connector.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=source_root(),
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text: str = r.read().decode()
        return text

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, summed over labels: `name` or `name{le=...}` for buckets."""
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(self._scrape()):
            for sample in family.samples:
                key = sample.name
                if "le" in sample.labels:
                    key = f"{key}{{le={sample.labels['le']}}}"
                samples[key] = samples.get(key, 0.0) + sample.value
        return samples

    def by_source(self) -> dict[str, dict[str, float]]:
        """Sample name -> source -> value, summed over any other labels, of the samples that
        have a `source` label (a connector of several sources)."""
        samples: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(self._scrape()):
            for sample in family.samples:
                source = sample.labels.get("source")
                if source is not None:
                    of_name = samples.setdefault(sample.name, {})
                    of_name[source] = of_name.get(source, 0.0) + sample.value
        return samples

    def produced(self) -> float:
        return self.metrics().get("cdr_connector_records_produced_total", 0.0)

    def wait_metrics(self, timeout: float = 120.0) -> None:
        """Until /metrics answers: start-up (login, topics) is done and the pipeline runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the connector's /metrics did not answer within {timeout} s")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the connector exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> int:
        return stop_process(self.process)


def run_json(module: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run `python -m module args` and return the JSON object its last stdout line holds."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=source_root(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result
