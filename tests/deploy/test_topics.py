"""deploy/topics: the Strimzi KafkaTopics, create-topics.sh and acls.sh agree with each other and
with the topics the connector itself would create (`kafka_sink._topic_specs`).

The scripts run for real, with kafka-topics.sh / kafka-acls.sh replaced by a stub that records
its arguments. Strimzi's CRD schema is not available offline: the KafkaTopic objects are checked
for the fields the topic operator reads (apiVersion, cluster label, topicName, partitions,
replicas, config) and for Kafka topic configs the connector relies on.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdr_connector.config import load_settings
from cdr_connector.kafka_sink import _topic_specs, consumer_config
from tests.deploy.conftest import DEPLOY, run

TOPICS = DEPLOY / "topics"
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
        for spec in _topic_specs(settings)
    }


def strimzi_topics() -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all((TOPICS / "kafkatopics.yaml").read_text(encoding="utf-8"))
    topics = {}
    for doc in documents:
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
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


def test_acls_cover_what_the_connector_does(tmp_path: Path) -> None:
    settings = load_settings(source={"name": "acme", "appid": "a", "accesskey": "k"})
    kafka = settings.kafka
    # The state reader's consumer group (assigned partitions, no commits; see the README).
    group = consumer_config(settings, "state")["group.id"]
    expected = {
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
    assert acl_grants(tmp_path, SOURCE="acme") == expected


def test_state_group_matches_the_state_consumer() -> None:
    settings = load_settings(source={"name": "acme", "appid": "a", "accesskey": "k"})
    config = consumer_config(settings, "state")
    assert config["group.id"] == "cdr-connector-acme-state"
    assert config["enable.auto.commit"] is False


def test_optional_acls(tmp_path: Path) -> None:
    grants = acl_grants(
        tmp_path, SOURCE="acme", ALLOW_CREATE_TOPICS="1", IDEMPOTENT_WRITE="1", PRINCIPAL="User:x"
    )
    assert ("Cluster", "kafka-cluster", "IdempotentWrite") in grants
    creates = {name for kind, name, operation in grants if operation == "Create"}
    assert creates == {"cdr.calls", "cdr.calls.dlq", "cdr-connector.state"}
