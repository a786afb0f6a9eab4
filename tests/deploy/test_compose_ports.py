"""deploy/docker-compose.yml publishes nothing beyond the machine it runs on.

The stack has no authentication anywhere: the simulator's /admin endpoints change its data and
faults, Kafka listens in PLAINTEXT, Grafana lets anonymous viewers in. Docker publishes a port
on every interface unless told otherwise, so every published port names 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

COMPOSE = DEPLOY / "docker-compose.yml"
LOOPBACK = "127.0.0.1"


def published() -> list[tuple[str, Any]]:
    """(service, port entry) of every published port, short or long syntax."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return [(name, entry) for name, spec in services.items() for entry in spec.get("ports", [])]


def host_ip(entry: Any) -> str | None:
    """The host address a port entry binds, or None when it binds every interface."""
    if isinstance(entry, dict):
        address = entry.get("host_ip")
        return str(address) if address else None
    parts = str(entry).split(":")
    return parts[0] if len(parts) == 3 else None


def test_the_stack_publishes_the_ports_its_readme_lists() -> None:
    services = {name for name, _ in published()}
    assert {"kafka", "simulator", "connector", "prometheus", "grafana"} <= services


@pytest.mark.parametrize("service_and_entry", published(), ids=lambda p: f"{p[0]}-{p[1]}")
def test_every_published_port_is_bound_to_loopback(service_and_entry: tuple[str, Any]) -> None:
    service, entry = service_and_entry
    assert host_ip(entry) == LOOPBACK, (
        f"{service} publishes {entry!r} on every interface: write {LOOPBACK}:HOST:CONTAINER"
    )


def test_the_parser_reads_both_syntaxes() -> None:
    assert host_ip("127.0.0.1:3000:3000") == LOOPBACK
    assert host_ip("3000:3000") is None
    assert host_ip("3000") is None
    assert host_ip({"target": 3000, "published": 3000, "host_ip": LOOPBACK}) == LOOPBACK
    assert host_ip({"target": 3000, "published": 3000}) is None
