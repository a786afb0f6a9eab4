"""Scenario 3: every vendor API fault at a high rate at once (HTTP 5xx, `ret` 500, malformed
JSON, dropped connections, answers slower than the request timeout, token revocation), with
live traffic and some poison. `bad_json` and `slow` strike after the server marked the page as
queried, so their records reach the connector only through a sweep.

The same run checks that no credential leaks: the access key and every token the simulator
issued must appear nowhere in the connector's output, its /metrics page, or the dead-letter
messages (headers and values)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from cdr_connector.simulator import FaultConfig, RunningSimulator, running_simulator
from tests.faults.conftest import FaultReport
from tests.faults.scenarios import (
    ACCESSKEY,
    LONG,
    Scene,
    finish,
    read_back,
    simulator_config,
)
from tests.integration.harness import (
    Topics,
    admin_post,
    metric_total,
    metrics_text,
)

TRAFFIC_SECONDS = 90.0 if LONG else 15.0
# Traffic goes on past TRAFFIC_SECONDS until every kind of fault was injected a few times:
# how many requests fit in the time depends on the machine's load, and the faults are drawn
# per request.
FAULTS_OF_EACH_KIND = 3
MORE_TRAFFIC_SECONDS = 60.0
REVOKE_EVERY_SECONDS = 1.5
FAULTS = FaultConfig(
    http_5xx_rate=0.08,
    ret_500_rate=0.08,
    bad_json_rate=0.08,
    drop_rate=0.08,
    slow_rate=0.04,
    slow_seconds=7.0,  # the connector's request timeout is 5 s in these runs
    latency_ms=5.0,
    jitter_ms=20.0,
    poison_rate=0.02,
)
FAULT_KINDS = ("http_5xx", "ret_500", "bad_json", "drop", "slow")


def every_kind_injected(injected: dict[str, int]) -> bool:
    return all(injected.get(kind, 0) >= FAULTS_OF_EACH_KIND for kind in FAULT_KINDS)


def enough_traffic(elapsed: float, stats: dict[str, Any]) -> bool:
    if elapsed < TRAFFIC_SECONDS:
        return False
    return elapsed >= TRAFFIC_SECONDS + MORE_TRAFFIC_SECONDS or every_kind_injected(stats["faults"])


def record_issued_tokens(sim: RunningSimulator) -> list[str]:
    """Every token the simulator's login hands out from now on."""
    issued: list[str] = []
    registry = sim.state.tokens
    original = registry.issue

    def issue() -> str:
        token = original()
        issued.append(token)
        return token

    registry.issue = issue  # type: ignore[method-assign]
    return issued


async def test_api_faults_at_high_rates_lose_nothing_and_leak_no_secret(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, fault_report: FaultReport
) -> None:
    started = time.monotonic()
    config = simulator_config(seed=47, backlog=2000, rate=40.0, faults=FAULTS, token_ttl=4.0)
    async with running_simulator(config) as sim:
        tokens = record_issued_tokens(sim)
        scene = Scene(kafka_bootstrap, sim, topics, tmp_path)
        connector = scene.connector("connector")
        revoked = 0
        try:
            await connector.wait_ready(timeout=120)
            traffic_started = time.monotonic()
            while not enough_traffic(time.monotonic() - traffic_started, sim.state.stats()):
                await asyncio.sleep(REVOKE_EVERY_SECONDS)
                revoked += (await admin_post(sim.admin_url, "revoke-tokens", {}))["revoked"]
            metrics = await metrics_text(connector)
            stats = sim.state.stats()
            outcome, _ = await finish(
                scene,
                connector,
                "3. API faults together",
                started,
                note="5xx, ret 500, bad JSON, drops, timeouts, revoked tokens",
                timeout=180,
            )
        finally:
            connector.kill()
    fault_report.add(outcome)
    outcome.assert_clean()
    injected = stats["faults"]
    assert every_kind_injected(injected), injected
    assert revoked >= 3, "tokens in use were revoked during the run"
    assert metric_total(metrics, "cdr_connector_token_renewals_total") >= 4
    assert metric_total(metrics, "cdr_connector_api_errors_total") >= 20
    # bad_json and slow answers were marked on the server but never read: only sweeps bring them
    assert outcome.recovered > 0
    assert outcome.dead_letters > 0

    back = await read_back(kafka_bootstrap, topics)
    secrets = [ACCESSKEY, *tokens]
    assert len(tokens) >= 4, "the connector logged in again after revocations and expiry"
    places = {
        "connector output": connector.output(),
        "/metrics": metrics,
        "dead-letter headers": "\n".join(
            f"{key}={bytes(value or b'').decode(errors='replace')}"
            for message in back.dead
            for key, value in message.headers() or []
        ),
        "dead-letter values": "\n".join(
            bytes(m.value() or b"").decode(errors="replace") for m in back.dead
        ),
        "dead-letter keys": "\n".join(bytes(m.key() or b"").decode() for m in back.dead),
    }
    assert all(places.values()), {name: len(text) for name, text in places.items()}
    leaks = {
        name: [secret[:6] + "..." for secret in secrets if secret in text]
        for name, text in places.items()
    }
    assert not any(leaks.values()), f"credentials leaked: {leaks}"
