"""The chart with many accounts: `config.sources`, and `config.fleet` sharing them among replicas.

Rendered by a real helm from the production example with `examples/values-fleet.yaml` on top
(three sources, three replicas), checked against Kubernetes' schemas, and its settings loaded by
the connector's own loader with every source's key file where the pod would have it. What a
fleet may not do (more replicas without the group, a budget that blocks drains, two sources of
one name, a key in values) fails the render with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import test_helm_chart
from tests.deploy.test_helm_chart import (
    CHART,
    FLEET_VALUES,
    PRODUCTION_VALUES,
    container,
    credentials_mount,
    load_rendered_settings,
    one,
    render,
    render_error,
    settings_text,
)
from tests.deploy.test_helm_network_policy import values_file

EXAMPLES = ("-f", str(PRODUCTION_VALUES), "-f", str(FLEET_VALUES))
SOURCE_LABEL = "cdr-connector/source"


# The chart rendered from the production example with the fleet example on top, shared with
# test_helm_chart.py.
fleet_objects = test_helm_chart.fleet_objects


def fleet_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(FLEET_VALUES.read_text(encoding="utf-8"))
    return values


def two_sources(tmp_path: Path, **more: Any) -> Path:
    """Values of a release of two sources (acme-sh, acme-bj), with `more` on top."""
    values: dict[str, Any] = {
        "config": {
            "sources": [
                {"name": "acme-sh", "appid": "10001"},
                {"name": "acme-bj", "appid": "10002"},
            ]
        }
    }
    return values_file(tmp_path, values | more)


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


# --- the example renders, validates and loads -----------------------------------------------


# `helm lint --strict` and `kubernetes-validate --strict` of the fleet example are in
# test_helm_chart.py, with the other renderings.


def test_every_source_loads_with_the_connectors_loader(
    fleet_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(fleet_objects, tmp_path, monkeypatch)
    given = fleet_values()["config"]
    assert [entry.name for entry in settings.sources] == [s["name"] for s in given["sources"]]
    by_name = {s.source.name: s for s in settings.per_source()}
    assert {name: s.transactional_id for name, s in by_name.items()} == {
        "acme-sh": "cdr-connector-acme-sh",
        "acme-bj": "cdr-connector-acme-bj",
        "globex": "cdr-connector-globex",
    }
    for name, each in by_name.items():
        assert each.source.accesskey.get_secret_value() == f"placeholder-access-key-of-{name}"
    assert settings.fleet.enabled is True
    assert settings.fleet.group_id == given["fleet"]["group_id"]
    assert settings.fleet.coordination_topic == given["fleet"]["coordination_topic"]
    assert settings.fleet.session_timeout_seconds == given["fleet"]["session_timeout_seconds"]


def test_sources_take_the_shared_keys_under_their_own(
    fleet_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(fleet_objects, tmp_path, monkeypatch)
    by_name = {s.source.name: s for s in settings.per_source()}
    shared = fleet_values()["config"]["source"]
    assert str(by_name["acme-bj"].source.api_url) == shared["api_url"]
    assert str(by_name["globex"].source.api_url) == "https://pbx.globex.example:8443/api/"
    assert by_name["acme-bj"].source.timezone == shared["timezone"]
    assert by_name["globex"].source.timezone == "Asia/Hong_Kong"
    assert by_name["acme-sh"].source.filters.extnumber == ("8001", "8002", "8021")
    assert by_name["acme-bj"].source.filters.extnumber == ()
    # acme-bj's own poll override, on top of the production example's [poll]
    assert by_name["acme-bj"].poll.concurrency == 2
    assert by_name["acme-sh"].poll.concurrency == 8
    assert by_name["acme-bj"].poll.lookback_seconds == 172800
    assert "concurrency = 2\n" in settings_text(fleet_objects)


def test_each_key_file_is_a_key_of_the_secret_it_comes_from(
    fleet_objects: list[dict[str, Any]],
) -> None:
    """acme-sh and acme-bj: their names as keys of the shared Secret; globex: its own."""
    volume = next(v for v in pod_spec(fleet_objects)["volumes"] if v["name"] == "credentials")
    mounted = {
        item["path"]: (projection["secret"]["name"], item["key"])
        for projection in volume["projected"]["sources"]
        for item in projection["secret"]["items"]
    }
    assert mounted == {
        "acme-sh/accesskey": ("cdr-acme-vendors", "acme-sh"),
        "acme-bj/accesskey": ("cdr-acme-vendors", "acme-bj"),
        "globex/accesskey": ("cdr-globex-vendor", "accesskey"),
    }
    assert volume["projected"]["defaultMode"] == 0o440
    text = settings_text(fleet_objects)
    mount = credentials_mount(fleet_objects)
    for path in mounted:
        assert f'accesskey_file = "{mount}/{path}"' in text
    assert "CDR_SOURCE__APPID" not in [v["name"] for v in container(fleet_objects)["env"]]


def test_objects_of_several_sources_carry_no_single_source_label(
    fleet_objects: list[dict[str, Any]],
) -> None:
    assert all(SOURCE_LABEL not in o["metadata"]["labels"] for o in fleet_objects)
    assert all(SOURCE_LABEL in o["metadata"]["labels"] for o in render())


# --- replicas, rollout and disruption ---------------------------------------------------------


def test_a_fleet_rolls_with_a_surge_of_one_and_none_unavailable(
    fleet_objects: list[dict[str, Any]],
) -> None:
    spec = one(fleet_objects, "Deployment")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_a_one_source_fleet_may_have_a_hot_standby() -> None:
    objects = render("--set", "replicaCount=2", "--set", "config.fleet.enabled=true")
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert "enabled = true" in settings_text(objects)


def test_sources_without_the_fleet_stay_one_pod(tmp_path: Path) -> None:
    spec = one(render("-f", two_sources(tmp_path)), "Deployment")["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    output = render_error("-f", two_sources(tmp_path, replicaCount=2))
    assert "replicaCount is 2, but config.fleet.enabled is not set" in output


def test_the_fleets_budget_lets_drains_take_one_pod_at_a_time(
    fleet_objects: list[dict[str, Any]],
) -> None:
    budget = one(fleet_objects, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    pod_labels = one(fleet_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_budget_defaults_to_one_with_a_fleet_and_zero_without() -> None:
    budget = ("--set", "podDisruptionBudget.enabled=true")
    fleet = ("--set", "config.fleet.enabled=true", "--set", "replicaCount=2")
    assert one(render(*budget, *fleet), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one(render(*budget), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 0


def test_a_fleet_budget_that_blocks_every_drain_is_refused() -> None:
    output = render_error(*EXAMPLES, "--set", "podDisruptionBudget.maxUnavailable=0")
    assert "podDisruptionBudget.maxUnavailable is 0 with config.fleet.enabled" in output
    assert "blocks every node drain" in output


# --- what the chart refuses in sources ------------------------------------------------------


def test_two_sources_of_one_name_are_refused(tmp_path: Path) -> None:
    twins = [{"name": "acme", "appid": "1"}, {"name": "acme", "appid": "2"}]
    values = {"config": {"sources": twins}}
    output = render_error("-f", values_file(tmp_path, values))
    assert "config.sources names acme twice" in output


def test_a_source_without_its_appid_is_refused(tmp_path: Path) -> None:
    values = {"config": {"sources": [{"name": "acme"}]}}
    output = render_error("-f", values_file(tmp_path, values), "--skip-schema-validation")
    assert "config.sources[0] (acme) has no appid" in output
    assert "appid" in render_error("-f", values_file(tmp_path, values))


def test_an_access_key_in_a_source_is_refused(tmp_path: Path) -> None:
    values = {"config": {"sources": [{"name": "acme", "appid": "1", "accesskey": "oops"}]}}
    output = render_error("-f", values_file(tmp_path, values), "--skip-schema-validation")
    assert "never from values" in output
    assert "accesskey" in render_error("-f", values_file(tmp_path, values))


def test_credentials_of_a_source_that_does_not_exist_are_refused(tmp_path: Path) -> None:
    values = two_sources(tmp_path, credentials={"sources": {"acme-gz": {"accesskeyKey": "k"}}})
    output = render_error("-f", values)
    assert "credentials.sources.acme-gz names no source of config.sources" in output


def test_a_poll_override_the_connector_does_not_know_is_refused_by_the_schema(
    tmp_path: Path,
) -> None:
    values = {"config": {"sources": [{"name": "a", "appid": "1", "poll": {"concurency": 8}}]}}
    output = render_error("-f", values_file(tmp_path, values))
    assert "concurency" in output


# --- the network policy reaches every source's vendor ------------------------------------------


def test_the_policy_allows_every_sources_vendor_port(
    fleet_objects: list[dict[str, Any]],
) -> None:
    rules = one(fleet_objects, "NetworkPolicy")["spec"]["egress"]
    vendor = next(r for r in rules if {"ipBlock": {"cidr": "203.0.113.0/24"}} in r.get("to", []))
    assert {(p["port"], p["protocol"]) for p in vendor["ports"]} == {(443, "TCP"), (8443, "TCP")}


def test_a_sources_proxy_port_replaces_its_vendor_port(tmp_path: Path) -> None:
    values = {
        "config": {
            "source": {"api_url": "https://pbx.example.com/"},
            "sources": [
                {"name": "a", "appid": "1", "proxy_url": "http://proxy.example:3128/"},
                {"name": "b", "appid": "2", "api_url": "http://pbx-b.example:8080/"},
            ],
        },
        "networkPolicy": {"vendorApi": {"cidrs": ["192.0.2.0/24"]}},
    }
    rules = one(render("-f", values_file(tmp_path, values)), "NetworkPolicy")["spec"]["egress"]
    vendor = next(r for r in rules if {"ipBlock": {"cidr": "192.0.2.0/24"}} in r.get("to", []))
    assert sorted(p["port"] for p in vendor["ports"]) == [3128, 8080]


def test_the_chart_readmes_example_renders_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values example of the chart README's "Many accounts" is a release that works."""
    section = (CHART / "README.md").read_text(encoding="utf-8").split("\n## Many accounts\n")[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "the chart README's 'Many accounts' has no values example"
    objects = render("-f", values_file(tmp_path, yaml.safe_load(block.group(1))))
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    by_name = {each.source.name: each for each in settings.per_source()}
    assert sorted(by_name) == ["acme-bj", "acme-sh", "globex"]
    assert by_name["acme-bj"].poll.concurrency == 2
    assert by_name["globex"].source.timezone == by_name["acme-sh"].source.timezone
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
