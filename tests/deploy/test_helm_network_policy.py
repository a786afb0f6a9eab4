"""The chart's NetworkPolicy and its refusal of secrets in values, rendered by a real helm.

The policy is on by default: ingress only to the metrics port and only from the monitoring
namespace; egress only to DNS, Kafka, the vendor API and (when set) the Schema Registry, on the
ports the connector's own settings name. Secrets in `client_config` would land in a ConfigMap,
so rendering fails and says to pass them from a Secret through `env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cdr_connector.config import Settings
from tests.deploy import test_helm_chart
from tests.deploy.conftest import run, tool
from tests.deploy.test_helm_chart import (
    KUBERNETES_VERSIONS,
    load_rendered_settings,
    one,
    render,
    render_error,
)

MONITORING = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


# The chart rendered with its defaults and with the production example, shared with its tests.
default_objects = test_helm_chart.default_objects
production_objects = test_helm_chart.production_objects
objects = test_helm_chart.objects


def policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "NetworkPolicy")


def egress_ports(rules: list[dict[str, Any]]) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for rule in rules for p in rule["ports"]}


def kafka_ports(settings: Settings) -> set[int]:
    return {int(server.rsplit(":", 1)[1]) for server in settings.kafka.bootstrap_servers.split(",")}


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


# --- the policy ------------------------------------------------------------------------------


def test_the_policy_is_on_by_default_and_selects_the_connectors_pod(
    objects: list[dict[str, Any]],
) -> None:
    spec = policy(objects)["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]


def test_ingress_is_the_metrics_port_from_the_monitoring_namespace_only(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    assert policy(objects)["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": MONITORING}],
            "ports": [{"port": settings.http.port, "protocol": "TCP"}],
        }
    ]


def test_egress_is_dns_kafka_and_the_vendor_api_on_the_ports_of_the_settings(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    rules = policy(objects)["spec"]["egress"]
    dns = rules[0]
    assert dns["ports"] == DNS_PORTS
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    wanted = {(port, "TCP") for port in kafka_ports(settings)}
    wanted.add((url_port(str(settings.source.api_url)), "TCP"))
    if settings.avro.schema_registry_url:
        wanted.add((url_port(settings.avro.schema_registry_url), "TCP"))
    assert egress_ports(rules[1:]) == wanted


def test_production_egress_goes_to_the_kafka_namespace_and_the_registry(
    production_objects: list[dict[str, Any]],
) -> None:
    rules = policy(production_objects)["spec"]["egress"]
    kafka = next(r for r in rules if {"port": 9093, "protocol": "TCP"} in r["ports"])
    assert kafka["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}
    ]
    registry = next(r for r in rules if {"port": 8081, "protocol": "TCP"} in r["ports"])
    assert registry["to"] == kafka["to"]
    vendor = next(r for r in rules if {"port": 443, "protocol": "TCP"} in r["ports"])
    assert vendor["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]


def test_cidrs_selectors_ports_and_extra_rules_come_from_values(tmp_path: Path) -> None:
    extra = {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 3128}]}
    values = values_file(
        tmp_path,
        {
            "networkPolicy": {
                "metrics": {
                    "namespaceSelector": {"matchLabels": {"team": "observability"}},
                    "podSelector": {"matchLabels": {"app": "prometheus"}},
                },
                "kafka": {"cidrs": ["10.20.0.0/16", "10.21.0.0/16"], "ports": [9094, 9095]},
                "vendorApi": {"cidrs": ["198.51.100.7/32"], "ports": [8443]},
                "extraEgress": [extra],
            }
        },
    )
    spec = policy(render("-f", values))["spec"]
    assert spec["ingress"][0]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"team": "observability"}},
            "podSelector": {"matchLabels": {"app": "prometheus"}},
        }
    ]
    kafka, vendor, last = spec["egress"][1], spec["egress"][2], spec["egress"][-1]
    assert kafka == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}, {"ipBlock": {"cidr": "10.21.0.0/16"}}],
        "ports": [{"port": 9094, "protocol": "TCP"}, {"port": 9095, "protocol": "TCP"}],
    }
    assert vendor == {
        "to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}],
        "ports": [{"port": 8443, "protocol": "TCP"}],
    }
    assert last == extra


def test_a_target_without_peers_is_any_address_on_its_ports(
    default_objects: list[dict[str, Any]],
) -> None:
    """The default vendor API rule: its addresses are the vendor's, unknown to the chart."""
    vendor = next(
        r
        for r in policy(default_objects)["spec"]["egress"]
        if r["ports"] == [{"port": 443, "protocol": "TCP"}]
    )
    assert "to" not in vendor


def test_the_monitoring_namespace_is_one_value() -> None:
    spec = policy(render("--set", "networkPolicy.metrics.namespace=prometheus"))["spec"]
    assert spec["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}
    ]


def test_through_a_proxy_the_vendor_rule_is_the_proxys_port() -> None:
    objects = render("--set", "config.source.proxy_url=http://proxy.corp.example:3128")
    ports = egress_ports(policy(objects)["spec"]["egress"][1:])
    assert (3128, "TCP") in ports
    assert (443, "TCP") not in ports


def test_the_dns_port_is_one_value() -> None:
    """OpenShift's DNS pods listen on 5353 behind the Service's 53."""
    dns = policy(render("--set", "networkPolicy.dns.ports={5353}"))["spec"]["egress"][0]
    assert dns["ports"] == [{"port": 5353, "protocol": "UDP"}, {"port": 5353, "protocol": "TCP"}]


def test_the_policy_can_be_turned_off() -> None:
    objects = render("--set", "networkPolicy.enabled=false")
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


def test_unknown_network_policy_values_are_refused_by_the_schema() -> None:
    assert "kafak" in render_error("--set", "networkPolicy.kafak.ports={9092}")


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_rendering_of_the_policy_validates_strictly(
    objects: list[dict[str, Any]], kubernetes_version: str, tmp_path: Path
) -> None:
    custom = render(
        "--set",
        "networkPolicy.kafka.cidrs={10.0.0.0/8}",
        "--set",
        "networkPolicy.metrics.podSelector.matchLabels.app=prometheus",
    )
    policies = [policy(objects), policy(custom)]
    manifest = tmp_path / "policies.yaml"
    manifest.write_text(yaml.safe_dump_all(policies), encoding="utf-8")
    result = run([tool("kubernetes-validate"), "--strict", "-k", kubernetes_version, manifest])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(policies), result.stdout


# --- no secrets in values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
    ],
)
def test_a_secret_in_client_config_is_refused(key: str, tmp_path: Path) -> None:
    values = values_file(tmp_path, {"config": {"kafka": {"client_config": {key: "hunter2"}}}})
    output = render_error("-f", values)
    assert f"config.kafka.client_config.{key}" in output
    assert "must come from a Secret" in output
    assert f"CDR_KAFKA__CLIENT_CONFIG__{key.upper()}" in output
    assert "hunter2" not in output


def test_a_secret_in_the_registry_config_is_refused(tmp_path: Path) -> None:
    values = values_file(
        tmp_path, {"config": {"avro": {"schema_registry_config": {"basic.auth.user.info": "u:p"}}}}
    )
    output = render_error("-f", values)
    assert "config.avro.schema_registry_config.basic.auth.user.info" in output
    assert "CDR_AVRO__SCHEMA_REGISTRY_CONFIG__BASIC.AUTH.USER.INFO" in output


def test_names_and_paths_in_client_config_still_render(tmp_path: Path) -> None:
    client_config = {
        "sasl.username": "cdr-connector",
        "sasl.mechanism": "SCRAM-SHA-512",
        "ssl.key.location": "/etc/kafka-tls/user.key",
        "ssl.keystore.location": "/etc/kafka-tls/user.p12",
        "sasl.oauthbearer.client.id": "cdr-connector",
    }
    values = values_file(tmp_path, {"config": {"kafka": {"client_config": client_config}}})
    assert one(render("-f", values), "ConfigMap")
