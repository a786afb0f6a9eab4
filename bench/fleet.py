"""Fleet benchmarks: how long a killed replica's sources stay unserved, and what one process
of many sources costs while idle.

    .venv/bin/python -m bench.fleet --bootstrap 127.0.0.1:19092          # both (~11 min)
    .venv/bin/python -m bench.fleet --parts takeover --session-timeouts 6 --kills 10
    .venv/bin/python -m bench.fleet --parts idle --source-counts 1,10,50
    .venv/bin/python -m bench.fleet --readme-only     # the README's table from --results

takeover  two replicas (`fleet.enabled`) share a few sources of one simulator of as many
          accounts, each with live traffic. Each round waits until every source is ready on
          exactly one replica, the two own as many within one, and every owner has committed
          since; then SIGKILLs the older replica and reads the survivor's /metrics every
          0.1 s. A source is taken over when the survivor's
          cdr_connector_records_produced_total{source} rises: its takeover time is the
          survivor's cdr_connector_last_commit_timestamp_seconds{source} then, minus the
          wall-clock time of the kill. The time its cdr_connector_source_ready series first
          appears (the group assigned it; the source is starting) splits it into the group's
          part and the source's start-up. A new replica then replaces the killed one.
idle      one process (fleet off, unless --idle-fleet) with 1, 10 or 50 sources, each with
          its own account of a fresh simulator (--idle-backlog records each, no live
          traffic). Once every source is ready and the backlogs are committed, the process's
          CPU (all threads, /proc) and RSS are read over --idle-seconds.

Every process runs on its own (simulator, replicas); topics, the consumer group and the
coordination topic are named after the run (`bench-fleet-<time>-...`) and the topics are
deleted at the end. The broker is bench's own (bench/.out/kafka, port 29092) unless
--bootstrap names one. Raw figures go to bench/.out/fleet.json; the table between the
`bench:fleet` markers of bench/README.md is rewritten from them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    OUT_DIR,
    Connector,
    account_credentials,
    connector_env,
    cpu_seconds,
    delete_topics,
    free_port,
    load_average,
    memory_kb,
    simulator,
    start_broker,
    thread_cpu_seconds,
    use_revision,
    use_source,
    use_worktree,
)

READY = "cdr_connector_source_ready"
LAST_COMMIT = "cdr_connector_last_commit_timestamp_seconds"
PRODUCED = "cdr_connector_records_produced_total"
SCRAPE_SECONDS = 0.1
"""How often the survivor's /metrics is read after a kill: the resolution of the
assignment times (commit times are the connector's own timestamps)."""
SETTLE_TIMEOUT = 240.0
"""Bound on waiting for the replicas to share the sources and commit, between kills."""
TAKEOVER_BACKLOG = 100
"""Records preloaded per account before the replicas start, so that every source commits
at once; the live traffic (--rate) keeps each one committing every cycle afterwards."""


def run_prefix(part: str) -> str:
    return f"bench-fleet-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{part}"


def source_names(prefix: str, count: int) -> list[str]:
    """Names that sort in account order; `prefix` keeps each run's transactional ids apart."""
    return [f"{prefix}-{index:02d}" for index in range(1, count + 1)]


def sources_env(
    bootstrap: str, api_url: str, prefix: str, names: list[str], **extra: str
) -> dict[str, str]:
    """A connector running `names` as `[[sources]]` (CDR_SOURCES): source i reads account i."""
    env = connector_env(bootstrap, api_url, prefix, free_port(), **extra)
    env = {key: value for key, value in env.items() if not key.startswith("CDR_SOURCE__")}
    entries = []
    for index, name in enumerate(names, start=1):
        appid, accesskey = account_credentials(index, len(names))
        entries.append({"name": name, "api_url": api_url, "appid": appid, "accesskey": accesskey})
    env["CDR_SOURCES"] = orjson.dumps(entries).decode()
    return env


def fleet_settings(prefix: str, session_timeout: float) -> dict[str, str]:
    return {
        "CDR_FLEET__ENABLED": "true",
        "CDR_FLEET__GROUP_ID": f"{prefix}.group",
        "CDR_FLEET__COORDINATION_TOPIC": f"{prefix}.sources",
        "CDR_FLEET__SESSION_TIMEOUT_SECONDS": f"{session_timeout:g}",
    }


def ready_sources(replica: Connector) -> set[str]:
    return {name for name, value in replica.by_source().get(READY, {}).items() if value == 1}


# --- takeover ------------------------------------------------------------------------------------


@dataclass
class Takeover:
    """One source of a killed replica: seconds from the kill until the survivor was seen
    starting it (`assigned_s`) and until its first commit of records there (`commit_s`)."""

    kill: int
    source: str
    assigned_s: float
    commit_s: float
    load: float


def takeover(
    bootstrap: str, *, session_timeout: float, kills: int, sources: int, rate: float
) -> dict[str, Any]:
    prefix = run_prefix(f"takeover{session_timeout:g}s")
    names = source_names(prefix, sources)
    started = 0

    with simulator(prefix, backlog=TAKEOVER_BACKLOG, rate=rate, accounts=sources) as sim:

        def start_replica() -> Connector:
            nonlocal started
            started += 1
            env = sources_env(
                bootstrap, sim.url, prefix, names, **fleet_settings(prefix, session_timeout)
            )
            return Connector(f"{prefix}-replica{started}", env)

        replicas = [start_replica(), start_replica()]
        results: list[Takeover] = []
        try:
            for kill in range(1, kills + 1):
                results += _kill_one(replicas, names, kill, session_timeout)
                replicas.append(start_replica())
                print(
                    f"bench.fleet: kill {kill}/{kills}: {_brief_kill(results, kill)}",
                    file=sys.stderr,
                )
        finally:
            for replica in replicas:
                replica.stop()
    delete_topics(bootstrap, prefix)
    return _takeover_figure(results, session_timeout, sources, rate)


def _kill_one(
    replicas: list[Connector], names: list[str], kill: int, session_timeout: float
) -> list[Takeover]:
    """SIGKILL the older replica once the sources are settled; what the survivor took over."""
    owners = wait_settled(replicas, names)
    victim, survivor = replicas
    lost = sorted(name for name, owner in owners.items() if owner is victim)
    baseline = survivor.by_source().get(PRODUCED, {})
    load = load_average()
    killed_at = time.time()
    victim.process.kill()
    victim.process.wait()
    replicas.remove(victim)
    timeout = 3 * session_timeout + 60
    assigned, committed = wait_taken_over(survivor, lost, killed_at, baseline, timeout)
    return [Takeover(kill, name, assigned[name], committed[name], load) for name in lost]


def wait_settled(replicas: list[Connector], names: list[str]) -> dict[str, Connector]:
    """Until every source is ready on exactly one replica, the replicas own as many within
    one, and each source's owner has committed since that sharing was first seen."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    seen: dict[str, int] | None = None
    since = 0.0
    while time.monotonic() < deadline:
        for replica in replicas:
            replica.check_alive()
        try:
            owners = _owners(replicas, names)
        except OSError:  # a replica's listener is not up yet
            owners = None
        if owners is None:
            seen = None
        elif seen != {name: id(owner) for name, owner in owners.items()}:
            seen, since = {name: id(owner) for name, owner in owners.items()}, time.time()
        elif all(_committed_since(owner, name, since) for name, owner in owners.items()):
            return owners
        time.sleep(0.5)
    raise RuntimeError(
        f"the replicas did not share {len(names)} sources and commit within {SETTLE_TIMEOUT} s; "
        f"see {', '.join(str(replica.log_path) for replica in replicas)}"
    )


def _owners(replicas: list[Connector], names: list[str]) -> dict[str, Connector] | None:
    """Source -> the replica it is ready on, when the sharing is complete and balanced."""
    owners: dict[str, Connector] = {}
    counts = []
    for replica in replicas:
        ready = ready_sources(replica)
        if ready & set(owners):
            return None
        owners.update(dict.fromkeys(ready, replica))
        counts.append(len(ready))
    if set(owners) != set(names) or max(counts) - min(counts) > 1:
        return None
    return owners


def _committed_since(replica: Connector, name: str, since: float) -> bool:
    return replica.by_source().get(LAST_COMMIT, {}).get(name, 0.0) > since


def wait_taken_over(
    survivor: Connector,
    lost: list[str],
    killed_at: float,
    baseline: dict[str, float],
    timeout: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds from the kill until each lost source was seen starting on the survivor, and
    until its first commit of records there (its own commit timestamp)."""
    assigned: dict[str, float] = {}
    committed: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(committed) < len(lost):
        if time.monotonic() > deadline:
            missing = sorted(set(lost) - set(committed))
            raise RuntimeError(
                f"{', '.join(missing)} not committed by the survivor within {timeout:.0f} s of "
                f"the kill; see {survivor.log_path}"
            )
        survivor.check_alive()
        samples = survivor.by_source()
        seen_at = time.time()
        for name in lost:
            if name not in assigned and name in samples.get(READY, {}):
                assigned[name] = seen_at - killed_at
            produced = samples.get(PRODUCED, {}).get(name, 0.0)
            last_commit = samples.get(LAST_COMMIT, {}).get(name, 0.0)
            # Records this replica committed since the kill: its count rose, and its last
            # commit is later than the kill (not a count left from an earlier ownership).
            rose = produced > baseline.get(name, 0.0)
            if name not in committed and rose and last_commit > killed_at:
                committed[name] = last_commit - killed_at
                assigned.setdefault(name, committed[name])
        time.sleep(SCRAPE_SECONDS)
    return assigned, committed


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _takeover_figure(
    results: list[Takeover], session_timeout: float, sources: int, rate: float
) -> dict[str, Any]:
    commits = [r.commit_s for r in results]
    assigned = [r.assigned_s for r in results]
    startup = [r.commit_s - r.assigned_s for r in results]
    per_kill = [
        max(r.commit_s for r in results if r.kill == kill) for kill in {r.kill for r in results}
    ]
    loads = [r.load for r in results]
    return {
        "session_timeout_s": session_timeout,
        "sources": sources,
        "rate_per_source": rate,
        "kills": len(per_kill),
        "samples": len(commits),
        "p50_s": statistics.median(commits),
        "p99_s": quantile(commits, 0.99),
        "max_s": max(commits),
        "assigned_p50_s": statistics.median(assigned),
        "assigned_p99_s": quantile(assigned, 0.99),
        "startup_p50_s": statistics.median(startup),
        "startup_p99_s": quantile(startup, 0.99),
        "whole_kill_p50_s": statistics.median(per_kill),
        "load_min": min(loads),
        "load_max": max(loads),
        "takeovers": [asdict(r) for r in results],
    }


def _brief_kill(results: list[Takeover], kill: int) -> str:
    mine = [r for r in results if r.kill == kill]
    return (
        ", ".join(
            f"{r.source.rsplit('-', 1)[1]} seen {r.assigned_s:.1f} s, committed {r.commit_s:.1f} s"
            for r in mine
        )
        + f" (load {mine[0].load:.2f})"
    )


# --- idle ----------------------------------------------------------------------------------------


def idle(
    bootstrap: str, *, count: int, backlog: int, seconds: float, fleet: bool
) -> dict[str, Any]:
    prefix = run_prefix(f"idle{count}")
    names = source_names(prefix, count)
    extra = fleet_settings(prefix, 10.0) if fleet else {}
    with simulator(prefix, backlog=backlog, rate=0.0, accounts=count) as sim:
        connector = Connector(prefix, sources_env(bootstrap, sim.url, prefix, names, **extra))
        try:
            ready_s = wait_drained(connector, names, count * backlog)
            figure = watch_idle(connector, seconds)
        finally:
            connector.stop()
    delete_topics(bootstrap, prefix)
    return {
        "sources": count,
        "backlog_per_source": backlog,
        "fleet": fleet,
        "ready_s": ready_s,
    } | figure


def wait_drained(
    connector: Connector, names: list[str], records: int, timeout: float = 600
) -> float:
    """Until every source is ready and all `records` are committed; seconds from start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connector.check_alive()
        try:
            samples = connector.by_source()
        except OSError:  # the listener is not up yet
            time.sleep(0.2)
            continue
        ready = {name for name, value in samples.get(READY, {}).items() if value == 1}
        if ready >= set(names) and sum(samples.get(PRODUCED, {}).values()) >= records:
            return time.monotonic() - connector.started
        time.sleep(0.5)
    raise RuntimeError(
        f"{len(names)} sources did not drain {records} records within {timeout} s; "
        f"see {connector.log_path}"
    )


def watch_idle(connector: Connector, seconds: float, every: float = 5.0) -> dict[str, Any]:
    """CPU and RSS of the idle connector over `seconds`, RSS read every `every` seconds."""
    pid = connector.pid
    load_start = load_average()
    threads_before = thread_cpu_seconds(pid)
    cpu_before, began = cpu_seconds(pid), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - began < seconds:
        connector.check_alive()
        rss.append(memory_kb(pid)[0])
        time.sleep(min(every, max(0.0, seconds - (time.monotonic() - began))))
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(pid) - cpu_before
    threads = {
        name: (total - threads_before.get(name, 0.0)) / elapsed
        for name, total in thread_cpu_seconds(pid).items()
    }
    now_rss, peak = memory_kb(pid)
    return {
        "seconds": elapsed,
        "cpu_share": cpu / elapsed,
        "cpu_share_by_thread": {k: v for k, v in sorted(threads.items()) if v > 0},
        "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "rss_mb": now_rss / 1024,
        "rss_mean_mb": statistics.fmean(rss) / 1024,
        "peak_rss_mb": peak / 1024,
        "load_start": load_start,
        "load_end": load_average(),
    }


def per_extra_source(figures: list[dict[str, Any]]) -> list[tuple[int, int, float]]:
    """(from, to, MB of RSS per source added) between the smallest count and each other."""
    by_count = sorted(figures, key=lambda f: int(f["sources"]))
    base = by_count[0]
    return [
        (
            int(base["sources"]),
            int(f["sources"]),
            (f["rss_mb"] - base["rss_mb"]) / (f["sources"] - base["sources"]),
        )
        for f in by_count[1:]
    ]


# --- the README's table --------------------------------------------------------------------------

BEGIN, END = "<!-- bench:fleet:begin -->", "<!-- bench:fleet:end -->"
TAKEOVER_MARGIN_S = 5.0
"""The target: p99 takeover under the session timeout plus this."""
RSS_PER_SOURCE_MB = 30.0
IDLE_CPU_SHARE = 0.01
"""The targets: under this much RSS per extra source; 10 idle sources under this share."""


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _load(*loads: float) -> str:
    low, high = min(loads), max(loads)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def _when(part: dict[str, Any]) -> str:
    return f"{part['started']} to {part['finished']}, on {part['source']}"


def takeover_table(part: dict[str, Any]) -> list[str]:
    rows = [
        f"Takeover, measured {_when(part)}:",
        "",
        "| session timeout | kills (sources moved) | takeover p50 | p99 | max | group part "
        "p50 / p99 | source start-up p50 / p99 | p99 < timeout + 5 s | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in part["figures"]:
        target = f["session_timeout_s"] + TAKEOVER_MARGIN_S
        rows.append(
            f"| {f['session_timeout_s']:g} s | {f['kills']} ({f['samples']}) | {f['p50_s']:.1f} s "
            f"| {f['p99_s']:.1f} s | {f['max_s']:.1f} s "
            f"| {f['assigned_p50_s']:.1f} / {f['assigned_p99_s']:.1f} s "
            f"| {f['startup_p50_s']:.1f} / {f['startup_p99_s']:.1f} s "
            f"| {_verdict(f['p99_s'] < target)} ({target:g} s) "
            f"| {_load(f['load_min'], f['load_max'])} |"
        )
    return rows


def idle_table(part: dict[str, Any]) -> list[str]:
    figures = part["figures"]
    fleet = "on (one replica owning them all)" if figures[0]["fleet"] else "off"
    rows = [
        f"Idle, measured {_when(part)}; fleet {fleet}:",
        "",
        "| sources | RSS after the idle minute | peak RSS | idle CPU, share of one core | "
        "threads | ready and drained after | load (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(figures, key=lambda f: int(f["sources"])):
        rows.append(
            f"| {f['sources']} | {f['rss_mb']:.0f} MB | {f['peak_rss_mb']:.0f} MB "
            f"| {f['cpu_share'] * 100:.2f}% | {f['threads']} | {f['ready_s']:.0f} s "
            f"| {_load(f['load_start'], f['load_end'])} |"
        )
    rows.append("")
    for low, high, mb in per_extra_source(figures):
        rows.append(
            f"- RSS per extra source, {low} -> {high} sources: {mb:.1f} MB "
            f"(target under {RSS_PER_SOURCE_MB:g} MB: {_verdict(mb < RSS_PER_SOURCE_MB)})"
        )
    for f in figures:
        if int(f["sources"]) == 10:
            share = f["cpu_share"]
            rows.append(
                f"- 10 idle sources: {share * 100:.2f}% of a core "
                f"(target under {IDLE_CPU_SHARE * 100:g}%: {_verdict(share < IDLE_CPU_SHARE)})"
            )
    return rows


def write_section(results: dict[str, Any], readme: Path) -> None:
    """Replace the text between the `bench:fleet` markers of `readme` with the tables."""
    lines: list[str] = []
    if "takeover" in results:
        lines += [*takeover_table(results["takeover"]), ""]
    for key in ("idle", "idle-fleet"):
        if key in results:
            lines += [*idle_table(results[key]), ""]
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} section to write the figures into")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{BEGIN}\n" + "\n".join(lines) + f"{END}{tail}")


# --- the command ---------------------------------------------------------------------------------


def _list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(item) for item in text.split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    add = parser.add_argument
    add("--parts", type=_list(str), default=["takeover", "idle"], help="takeover, idle")
    add("--session-timeouts", type=_list(float), default=[10.0, 6.0], help="seconds, a run each")
    add("--kills", type=int, default=10, help="replicas killed per session timeout")
    add("--sources", type=int, default=4, help="sources the two replicas share")
    add("--rate", type=float, default=2.0, help="live calls/s of each source's account")
    add("--source-counts", type=_list(int), default=[1, 10, 50], help="idle: sources per run")
    add("--idle-backlog", type=int, default=200, help="idle: records per account, drained first")
    add("--idle-seconds", type=float, default=60.0)
    add("--idle-fleet", action="store_true", help="idle: fleet.enabled, one replica")
    add("--revision", default="HEAD", help="git revision of cdr_connector/ to measure")
    add("--source-dir", type=Path, help="measure the cdr_connector/ inside DIR instead")
    add("--worktree", action="store_true", help="measure a copy of the working tree's instead")
    add("--bootstrap", help="use this broker instead of starting one")
    add("--kafka-port", type=int, default=29092)
    add("--results", type=Path, default=OUT_DIR / "fleet.json")
    add("--readme", type=Path, default=Path(__file__).with_name("README.md"))
    add("--no-readme", action="store_true", help="do not touch the README")
    add("--readme-only", action="store_true", help="rewrite the README's table from --results")
    return parser


def _use_code(args: argparse.Namespace) -> str:
    if args.worktree:
        return use_worktree()
    if args.source_dir is not None:
        use_source(args.source_dir.resolve())
        name = args.source_dir.resolve().name
        if re.fullmatch(r"[0-9a-f]{40}", name):  # a revision exported earlier by use_revision
            return f"{name[:7]} (its copy in {args.source_dir})"
        return str(args.source_dir)
    return f"{args.revision} = {use_revision(args.revision)}"


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _measure(part: str, args: argparse.Namespace, bootstrap: str) -> list[dict[str, Any]]:
    figures = []
    if part == "takeover":
        for timeout in args.session_timeouts:
            print(f"bench.fleet: takeover, session timeout {timeout:g} s", file=sys.stderr)
            figures.append(
                takeover(
                    bootstrap,
                    session_timeout=timeout,
                    kills=args.kills,
                    sources=args.sources,
                    rate=args.rate,
                )
            )
        return figures
    for count in args.source_counts:
        print(f"bench.fleet: idle, {count} sources (load {load_average():.2f})", file=sys.stderr)
        figure = idle(
            bootstrap,
            count=count,
            backlog=args.idle_backlog,
            seconds=args.idle_seconds,
            fleet=args.idle_fleet,
        )
        print(f"bench.fleet:   {figure}", file=sys.stderr)
        figures.append(figure)
    return figures


def main() -> int:
    args = _parser().parse_args()
    unknown = set(args.parts) - {"takeover", "idle"}
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}; choose takeover, idle")
    results: dict[str, Any] = (
        orjson.loads(args.results.read_bytes()) if args.results.exists() else {}
    )
    if not args.readme_only:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        source = _use_code(args)
        broker = start_broker(args.kafka_port, args.bootstrap)
        try:
            for part in args.parts:
                started = _utc()
                figures = _measure(part, args, broker.bootstrap)
                key = "idle-fleet" if part == "idle" and args.idle_fleet else part
                results[key] = {
                    "started": started,
                    "finished": _utc(),
                    "source": source,
                    "bootstrap": broker.bootstrap,
                    "options": {k: str(v) for k, v in vars(args).items()},
                    "figures": figures,
                }
                args.results.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        finally:
            broker.stop()
    if not args.no_readme:
        write_section(results, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
