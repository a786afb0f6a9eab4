"""deploy/docker-compose.yml: it cannot run here (no container engine), so what it says is
checked against the connector instead: commands parse with the real CLI, settings load with the
real loader, and ports, addresses and mounted paths agree with each other and with the settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cdr_connector.__main__ import _build_parser
from cdr_connector.config import CONFIG_PATH_ENV, Settings, load_settings
from tests.deploy.conftest import DEPLOY, REPO_ROOT

COMPOSE = DEPLOY / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to deploy/)."""
    found = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        found[container] = (DEPLOY / host).resolve()
    return found


@pytest.fixture
def settings(
    services: dict[str, dict[str, Any]], tmp_path: Path, compose: dict[str, Any]
) -> Settings:
    """The connector's settings as the container loads them: its mounted TOML and secret."""
    connector = services["connector"]
    settings_path = connector["environment"][CONFIG_PATH_ENV]
    text = mounts(connector)[settings_path].read_text(encoding="utf-8")
    (secret,) = connector["secrets"]
    secret_file = DEPLOY / compose["secrets"][secret["source"]]["file"]
    local_secret = tmp_path / "accesskey"
    local_secret.write_bytes(secret_file.read_bytes())
    assert f'accesskey_file = "{secret["target"]}"' in text
    local_settings = tmp_path / "settings.toml"
    local_settings.write_text(text.replace(secret["target"], str(local_secret)), encoding="utf-8")
    return load_settings(local_settings)


def test_the_stack_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"kafka", "topics", "simulator", "connector", "prometheus", "grafana"}


def test_connector_and_simulator_use_the_repositorys_image(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("connector", "simulator"):
        build = services[name]["build"]
        assert (
            DEPLOY / build["context"] / build["dockerfile"]
        ).resolve() == REPO_ROOT / "Dockerfile"


def test_commands_are_real_cli_invocations(services: dict[str, dict[str, Any]]) -> None:
    parser = _build_parser()
    connector = parser.parse_args(services["connector"]["command"])
    assert connector.command == "run"
    assert connector.config is None, "the settings come from CDR_CONFIG, as in Kubernetes"
    simulator = parser.parse_args(services["simulator"]["command"])
    assert simulator.command == "simulate"
    assert simulator.host == "0.0.0.0"


def test_connector_settings_load(settings: Settings) -> None:
    assert settings.source.name == "compose"
    assert settings.http.host == "0.0.0.0"
    assert settings.kafka.create_topics is False


def test_connector_reaches_the_simulator(
    services: dict[str, dict[str, Any]], settings: Settings
) -> None:
    simulator = _build_parser().parse_args(services["simulator"]["command"])
    url = urlsplit(str(settings.source.api_url))
    assert url.hostname == "simulator"
    assert url.port == simulator.port
    assert f"127.0.0.1:{simulator.port}:{simulator.port}" in services["simulator"]["ports"]
    assert settings.source.appid == simulator.appid
    assert settings.source.accesskey.get_secret_value() == simulator.accesskey


def test_connector_reaches_kafka(services: dict[str, dict[str, Any]], settings: Settings) -> None:
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"INTERNAL://{settings.kafka.bootstrap_servers}" in advertised.split(",")
    assert services["topics"]["environment"]["BOOTSTRAP"] == settings.kafka.bootstrap_servers


def test_topics_service_creates_the_connectors_topics(
    services: dict[str, dict[str, Any]], settings: Settings
) -> None:
    topics = services["topics"]
    script = mounts(topics)[topics["entrypoint"][-1]]
    assert script == (DEPLOY / "topics" / "create-topics.sh").resolve()
    text = script.read_text(encoding="utf-8")
    for variable, topic in (
        ("TOPIC", settings.kafka.topic),
        ("DEAD_LETTER_TOPIC", settings.kafka.dead_letter_topic),
        ("STATE_TOPIC", settings.kafka.state_topic),
    ):
        assert topics["environment"].get(variable, topic) == topic
        assert f"{variable}=${{{variable}:-{topic}}}" in text
    assert topics["environment"]["REPLICATION_FACTOR"] == "1", "one broker"
    connector_waits_for = services["connector"]["depends_on"]["topics"]["condition"]
    assert connector_waits_for == "service_completed_successfully"


def test_metrics_port_is_published_and_scraped(
    services: dict[str, dict[str, Any]], settings: Settings
) -> None:
    port = settings.http.port
    assert services["connector"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    prometheus_config = mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]
    scrape = yaml.safe_load(prometheus_config.read_text(encoding="utf-8"))["scrape_configs"]
    targets = [t for job in scrape for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"connector:{port}"]
    assert scrape[0]["metrics_path"] == "/metrics"


def test_stop_grace_period_covers_the_shutdown_bound(
    services: dict[str, dict[str, Any]], settings: Settings
) -> None:
    grace = re.fullmatch(r"(\d+)s", services["connector"]["stop_grace_period"])
    assert grace is not None
    assert int(grace.group(1)) >= settings.shutdown_timeout_seconds + 5


def test_connector_runs_locked_down_as_in_kubernetes(services: dict[str, dict[str, Any]]) -> None:
    for name in ("connector", "simulator"):
        service = services[name]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for container, host in mounts(service).items():
            assert host.exists(), f"{name}: {host} (mounted at {container}) is missing"


def test_prometheus_loads_the_alerts_and_grafana_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    rules = mounts(services["prometheus"])
    assert rules["/etc/prometheus/rules/cdr-connector.yml"] == DEPLOY / "prometheus" / "alerts.yml"
    prometheus_config = yaml.safe_load(
        rules["/etc/prometheus/prometheus.yml"].read_text(encoding="utf-8")
    )
    assert prometheus_config["rule_files"] == ["/etc/prometheus/rules/*.yml"]

    grafana = mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "cdr-connector.yml").read_text(encoding="utf-8")
    )["providers"]
    dashboard_dir = providers[0]["options"]["path"]
    dashboards = {c: h for c, h in grafana.items() if c.startswith(dashboard_dir + "/")}
    assert list(dashboards.values()) == [DEPLOY / "grafana" / "cdr-connector-dashboard.json"]
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
