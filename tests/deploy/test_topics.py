"""deploy/topics: the Strimzi KafkaTopics and KafkaUser, create-topics.sh and acls.sh agree with
each other, with the topics the connector itself would create (`topics.topic_specs`), with
the names it derives from its settings, and with the Helm chart's production example.

The scripts run for real, with kafka-topics.sh / kafka-acls.sh replaced by a stub that records
its arguments. The Strimzi objects are checked here for the shape of `kafka.strimzi.io/v1`: the
apiVersion, and an ACL rule's `operations` list (v1 removed v1beta2's single `operation`);
test_strimzi_crds.py validates them against Strimzi's own CRDs, pinned in deploy/topics/crds/.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdr_connector.config import Settings, load_settings
from cdr_connector.kafka_clients import consumer_config
from cdr_connector.topics import topic_specs
from tests.deploy import test_helm_chart
from tests.deploy.conftest import CHART, DEPLOY, run
from tests.deploy.test_helm_chart import container, load_rendered_settings, one

TOPICS = DEPLOY / "topics"
STRIMZI_API = "kafka.strimzi.io/v1"
PRODUCTION = CHART / "examples" / "values-production.yaml"
PRODUCTION_USER = "cdr-connector-acme-sh"
FLEET_USER = "cdr-connector-fleet"
STUB = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture(scope="module")
def defaults() -> dict[str, dict[str, Any]]:
    """The connector's own topic specifications with default settings."""
    settings = load_settings(source={"appid": "a", "accesskey": "k"})
    return {
        spec.topic: {
            "partitions": spec.num_partitions,
            "replicas": spec.replication_factor,
            "config": dict(spec.config),
        }
        for spec in topic_specs(settings)
    }


def strimzi_objects(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((TOPICS / name).read_text(encoding="utf-8")))


def strimzi_topics() -> dict[str, dict[str, Any]]:
    topics = {}
    for doc in strimzi_objects("kafkatopics.yaml"):
        assert doc["apiVersion"] == STRIMZI_API
        assert doc["kind"] == "KafkaTopic"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"]
        assert set(doc["spec"]) == {"topicName", "partitions", "replicas", "config"}
        topics[doc["spec"]["topicName"]] = {
            "partitions": doc["spec"]["partitions"],
            "replicas": doc["spec"]["replicas"],
            "config": {key: str(value) for key, value in doc["spec"]["config"].items()},
        }
    return topics


def run_with_stub(script: str, tmp_path: Path, **env: str) -> list[list[str]]:
    stub = tmp_path / "stub"
    stub.write_text(STUB, encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    environment = {
        "PATH": os.environ["PATH"],
        "STUB_LOG": str(log),
        "KAFKA_TOPICS": str(stub),
        "KAFKA_ACLS": str(stub),
        **env,
    }
    result = run(["bash", TOPICS / script], env=environment)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def option_values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == option]


def script_topics(tmp_path: Path, **env: str) -> dict[str, dict[str, Any]]:
    topics = {}
    for args in run_with_stub("create-topics.sh", tmp_path, **env):
        assert "--create" in args
        assert "--if-not-exists" in args
        (name,) = option_values(args, "--topic")
        (partitions,) = option_values(args, "--partitions")
        (replicas,) = option_values(args, "--replication-factor")
        configs = dict(c.split("=", 1) for c in option_values(args, "--config"))
        topics[name] = {"partitions": int(partitions), "replicas": int(replicas), "config": configs}
    return topics


def test_strimzi_and_script_specify_the_same_topics(tmp_path: Path) -> None:
    assert script_topics(tmp_path) == strimzi_topics()


def test_topics_agree_with_the_connectors_defaults(
    tmp_path: Path, defaults: dict[str, dict[str, Any]]
) -> None:
    """Names, partitions, replication, retention and cleanup policy are the connector's; the
    specs add min.insync.replicas and an explicit cleanup.policy=delete."""
    topics = strimzi_topics()
    assert set(topics) == set(defaults)
    for name, spec in defaults.items():
        topic = topics[name]
        assert topic["partitions"] == spec["partitions"], name
        assert topic["replicas"] == spec["replicas"], name
        for key, value in spec["config"].items():
            assert topic["config"][key] == value, (name, key)
        assert int(topic["config"]["min.insync.replicas"]) == topic["replicas"] - 1, name


def test_state_topic_is_compacted_with_one_partition(tmp_path: Path) -> None:
    settings = load_settings(source={"appid": "a", "accesskey": "k"})
    state = strimzi_topics()[settings.kafka.state_topic]
    assert state["partitions"] == 1
    assert state["config"]["cleanup.policy"] == "compact"
    for name in (settings.kafka.topic, settings.kafka.dead_letter_topic):
        assert strimzi_topics()[name]["config"]["cleanup.policy"] == "delete"


def test_create_topics_script_takes_the_settings_overrides(tmp_path: Path) -> None:
    topics = script_topics(
        tmp_path,
        TOPIC="t.calls",
        REPLICATION_FACTOR="1",
        MIN_INSYNC_REPLICAS="1",
        PARTITIONS="3",
        BOOTSTRAP="kafka:9092",
    )
    assert topics["t.calls"]["partitions"] == 3
    assert {t["replicas"] for t in topics.values()} == {1}
    assert topics["cdr-connector.state"]["partitions"] == 1


def acl_grants(tmp_path: Path, **env: str) -> set[tuple[str, str, str]]:
    """(resource type, resource name, operation) of every grant acls.sh makes."""
    grants = set()
    resource_options = {
        "--topic": "Topic",
        "--group": "Group",
        "--transactional-id": "TransactionalId",
    }
    for args in run_with_stub("acls.sh", tmp_path, **env):
        assert args[args.index("--allow-principal") + 1] == env.get(
            "PRINCIPAL", "User:cdr-connector"
        )
        assert "--add" in args
        resources = [
            (kind, name)
            for option, kind in resource_options.items()
            for name in option_values(args, option)
        ]
        if "--cluster" in args:
            resources.append(("Cluster", "kafka-cluster"))
        assert len(resources) == 1, args
        for operation in option_values(args, "--operation"):
            grants.add((*resources[0], operation))
    return grants


def required_grants(settings: Settings) -> set[tuple[str, str, str]]:
    """What the connector does with these settings, as (resource type, name, operation)."""
    kafka = settings.kafka
    # The state reader's consumer group (assigned partitions, no commits; see the README).
    group = consumer_config(settings, "state")["group.id"]
    return {
        ("Topic", kafka.topic, "Write"),
        ("Topic", kafka.topic, "Describe"),
        ("Topic", kafka.dead_letter_topic, "Write"),
        ("Topic", kafka.dead_letter_topic, "Describe"),
        ("Topic", kafka.state_topic, "Write"),
        ("Topic", kafka.state_topic, "Read"),
        ("Topic", kafka.state_topic, "Describe"),
        ("Group", group, "Describe"),
        ("TransactionalId", settings.transactional_id, "Write"),
        ("TransactionalId", settings.transactional_id, "Describe"),
    }


def fleet_grants(settings: Settings) -> set[tuple[str, str, str]]:
    """What a replica of a fleet does beyond its sources (cdr_connector/fleet.py): member of
    `fleet.group_id`, subscriber to the coordination topic, which it creates or grows."""
    fleet = settings.fleet
    topic = {
        ("Topic", fleet.coordination_topic, operation)
        for operation in ("Read", "Describe", "Create", "Alter")
    }
    return {("Group", fleet.group_id, "Read"), *topic}


def principal_grants(settings: Settings) -> set[tuple[str, str, str]]:
    """What the one principal of a process needs: every source's grants, and the fleet's when
    the replicas share the sources."""
    grants = set().union(*(required_grants(each) for each in settings.per_source()))
    return grants | fleet_grants(settings) if settings.fleet.enabled else grants


def test_acls_cover_what_the_connector_does(tmp_path: Path) -> None:
    settings = load_settings(source={"name": "acme", "appid": "a", "accesskey": "k"})
    assert acl_grants(tmp_path, SOURCE="acme") == required_grants(settings)


def test_state_group_matches_the_state_consumer() -> None:
    settings = load_settings(source={"name": "acme", "appid": "a", "accesskey": "k"})
    config = consumer_config(settings, "state")
    assert config["group.id"] == "cdr-connector-acme-state"
    assert config["enable.auto.commit"] is False


def test_fleet_acls_default_to_the_fleets_default_settings(tmp_path: Path) -> None:
    settings = load_settings(
        source={"name": "acme", "appid": "a", "accesskey": "k"}, fleet={"enabled": True}
    )
    fleet = fleet_grants(settings)
    assert ("Group", "cdr-connector", "Read") in fleet
    assert acl_grants(tmp_path, SOURCE="acme", FLEET="1") == principal_grants(settings)


def test_fleet_acls_take_the_group_and_topic_settings(tmp_path: Path) -> None:
    settings = load_settings(
        source={"name": "acme", "appid": "a", "accesskey": "k"},
        fleet={"enabled": True, "group_id": "g", "coordination_topic": "t.sources"},
    )
    grants = acl_grants(
        tmp_path, SOURCE="acme", FLEET="1", FLEET_GROUP="g", COORDINATION_TOPIC="t.sources"
    )
    assert grants == principal_grants(settings)
    assert grants - required_grants(settings) == fleet_grants(settings)


def test_optional_acls(tmp_path: Path) -> None:
    grants = acl_grants(
        tmp_path, SOURCE="acme", ALLOW_CREATE_TOPICS="1", IDEMPOTENT_WRITE="1", PRINCIPAL="User:x"
    )
    assert ("Cluster", "kafka-cluster", "IdempotentWrite") in grants
    creates = {name for kind, name, operation in grants if operation == "Create"}
    assert creates == {"cdr.calls", "cdr.calls.dlq", "cdr-connector.state"}


# --- Strimzi v1: schema, the KafkaUser, the production example ----------------------------------


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text(encoding="utf-8"))
    return values


def production_settings() -> Settings:
    """The connector's settings of the production example (its credentials come from a Secret)."""
    config = production_values()["config"]
    source = {**config["source"], "appid": "a", "accesskey": "k"}
    return load_settings(source=source, kafka=config["kafka"])


def production_cluster() -> str:
    """The Strimzi cluster the production example connects to, from the names Strimzi gives its
    bootstrap Service (<cluster>-kafka-bootstrap) and CA Secret (<cluster>-cluster-ca-cert)."""
    values = production_values()
    host = str(values["config"]["kafka"]["bootstrap_servers"]).split(":")[0].split(".")[0]
    assert host.endswith("-kafka-bootstrap"), host
    (ca_secret,) = {
        volume["secret"]["secretName"]
        for volume in values["extraVolumes"]
        if volume["secret"]["secretName"].endswith("-cluster-ca-cert")
    }
    cluster = host.removesuffix("-kafka-bootstrap")
    assert ca_secret == f"{cluster}-cluster-ca-cert"
    return cluster


def kafka_users() -> dict[str, dict[str, Any]]:
    """The KafkaUsers by name: the production example's, and the fleet example's."""
    users = {}
    for user in strimzi_objects("kafkauser.yaml"):
        assert user["apiVersion"] == STRIMZI_API
        assert user["kind"] == "KafkaUser"
        users[user["metadata"]["name"]] = user
    assert set(users) == {PRODUCTION_USER, FLEET_USER}
    return users


def user_grants(user: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) of the KafkaUser's ACLs, named as acls.sh names them."""
    kinds = {"topic": "Topic", "group": "Group", "transactionalId": "TransactionalId"}
    authorization = user["spec"]["authorization"]
    assert authorization["type"] == "simple"
    grants = set()
    for rule in authorization["acls"]:
        # Every rule allows exactly one named resource from any host.
        assert rule.get("type", "allow") == "allow", rule
        assert rule.get("host", "*") == "*", rule
        resource = rule["resource"]
        assert resource.get("patternType", "literal") == "literal", rule
        for operation in rule["operations"]:
            grants.add((kinds[resource["type"]], resource["name"], operation))
    return grants


V1_KINDS = {"KafkaTopic": {"topicName", "partitions", "replicas", "config"}, "KafkaUser": set()}


@pytest.mark.parametrize("name", ["kafkatopics.yaml", "kafkauser.yaml"])
def test_strimzi_objects_have_the_shape_of_v1(name: str) -> None:
    objects = strimzi_objects(name)
    assert objects
    for manifest in objects:
        assert manifest["apiVersion"] == STRIMZI_API, manifest["metadata"]["name"]
        allowed = V1_KINDS[manifest["kind"]]
        if allowed:
            assert set(manifest["spec"]) <= allowed, manifest["spec"]
    if name == "kafkauser.yaml":
        for user in kafka_users().values():
            for rule in user["spec"]["authorization"]["acls"]:
                assert "operation" not in rule, "v1 takes a list of `operations` only"
                assert rule["operations"] and isinstance(rule["operations"], list), rule


def test_cluster_labels_match_the_production_example() -> None:
    cluster = production_cluster()
    for name in ("kafkatopics.yaml", "kafkauser.yaml"):
        for manifest in strimzi_objects(name):
            assert manifest["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name


def test_production_uses_the_default_topic_names() -> None:
    """The topic manifests name the default topics; the production example must use them."""
    default = load_settings(source={"appid": "a", "accesskey": "k"}).kafka
    production = production_settings().kafka
    for setting in ("topic", "dead_letter_topic", "state_topic"):
        assert getattr(production, setting) == getattr(default, setting), setting
    assert not production.create_topics  # so the KafkaUser needs no Create


def test_kafka_user_grants_what_the_production_connector_does(tmp_path: Path) -> None:
    settings = production_settings()
    expected = required_grants(settings)
    assert user_grants(kafka_users()[PRODUCTION_USER]) == expected
    assert acl_grants(tmp_path, SOURCE=settings.source.name) == expected


def test_kafka_user_is_the_production_examples_principal() -> None:
    """The username, the SASL mechanism and the Secret the user operator writes are those the
    production example's connector uses."""
    user = kafka_users()[PRODUCTION_USER]
    values = production_values()
    client_config = values["config"]["kafka"]["client_config"]
    assert user["metadata"]["name"] == client_config["sasl.username"]
    assert user["spec"]["authentication"]["type"] == client_config["sasl.mechanism"].lower()
    (password,) = [
        variable["valueFrom"]["secretKeyRef"]
        for variable in values["env"]
        if variable["name"] == "CDR_KAFKA__CLIENT_CONFIG__SASL.PASSWORD"
    ]
    assert password == {"name": user["metadata"]["name"], "key": "password"}


# --- the fleet example: one principal for the sources its replicas share ------------------------

# The chart rendered from the production example with the fleet example on top, as the release
# "cdr-fleet" (test_helm_chart.py).
fleet_objects = test_helm_chart.fleet_objects


def test_fleet_kafka_user_grants_what_the_fleet_does(
    fleet_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet's KafkaUser, and acls.sh run once per source with FLEET=1, grant every source's
    rules and the fleet's: exactly what the fleet example's settings, as its pods load them,
    make the connector do."""
    settings = load_rendered_settings(fleet_objects, tmp_path, monkeypatch)
    assert settings.fleet.enabled
    assert len(settings.per_source()) == 3
    expected = principal_grants(settings)
    assert user_grants(kafka_users()[FLEET_USER]) == expected
    fleet = settings.fleet
    from_script: set[tuple[str, str, str]] = set()
    for each in settings.per_source():
        run_dir = tmp_path / each.source.name
        run_dir.mkdir()
        from_script |= acl_grants(
            run_dir,
            SOURCE=each.source.name,
            FLEET="1",
            FLEET_GROUP=fleet.group_id,
            COORDINATION_TOPIC=fleet.coordination_topic,
        )
    assert from_script == expected


def test_fleet_kafka_user_is_the_fleet_examples_principal(
    fleet_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Username, mechanism and password Secret of the fleet's pods are the fleet user's."""
    user = kafka_users()[FLEET_USER]
    settings = load_rendered_settings(fleet_objects, tmp_path, monkeypatch)
    client_config = settings.kafka.client_config
    assert client_config["sasl.username"] == user["metadata"]["name"]
    assert user["spec"]["authentication"]["type"] == client_config["sasl.mechanism"].lower()
    (password,) = [
        variable["valueFrom"]["secretKeyRef"]
        for variable in container(fleet_objects)["env"]
        if variable["name"] == "CDR_KAFKA__CLIENT_CONFIG__SASL.PASSWORD"
    ]
    assert password == {"name": user["metadata"]["name"], "key": "password"}


production_objects = test_helm_chart.production_objects


def test_each_kafka_user_carries_its_releases_instance_label(
    production_objects: list[dict[str, Any]], fleet_objects: list[dict[str, Any]]
) -> None:
    """So that `kubectl apply -f kafkauser.yaml -l app.kubernetes.io/instance=<release>`
    applies one user alone."""
    instance = "app.kubernetes.io/instance"
    users = kafka_users()
    for name, objects in ((PRODUCTION_USER, production_objects), (FLEET_USER, fleet_objects)):
        release = one(objects, "Deployment")["metadata"]["labels"][instance]
        assert users[name]["metadata"]["labels"][instance] == release, name
