"""deploy/topics' Strimzi objects against the Strimzi CRDs pinned in deploy/topics/crds/.

Every object of kafkatopics.yaml and kafkauser.yaml is checked as the Kubernetes API server
would admit it: its apiVersion is a version its CRD serves, it conforms to that version's
`openAPIV3Schema`, and it passes the schema's CEL rules (`x-kubernetes-validations`). One
difference is deliberate: the API server prunes a field the schema does not know, silently
unless the client asks for strict validation, and a pruned field is a setting lost without a
word (v1beta2's `operation` in a v1 ACL rule would leave the rule with no operations). Here an
unknown field is an error wherever the schema does not preserve unknown fields (KafkaTopic's
`spec.config` does).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY

TOPICS = DEPLOY / "topics"
CRDS = TOPICS / "crds"
MANIFESTS = ("kafkatopics.yaml", "kafkauser.yaml")
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"
CEL_RULES = "x-kubernetes-validations"
# What the API server checks of every object's metadata, whatever its CRD says (ObjectMeta):
# the name is a DNS subdomain, labels map names to short strings.
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
    },
    "required": ["name"],
}


def read_yaml(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def pinned_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> CRD, for every file in deploy/topics/crds/."""
    crds = {}
    for path in sorted(CRDS.glob("*.yaml")):
        (crd,) = read_yaml(path)
        assert crd["kind"] == "CustomResourceDefinition", path
        crds[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd
    return crds


def json_schema(node: Any) -> Any:
    """A Kubernetes structural schema as JSON Schema: `nullable` admits null, int-or-string
    admits both, and an object with `properties` admits no other key unless it preserves
    unknown fields. CEL rules stay in place (JSON Schema ignores them; `cel_problems` runs
    them)."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: json_schema(value) for key, value in node.items()}
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema and not schema.get(PRESERVE_UNKNOWN):
        schema.setdefault("additionalProperties", False)
    return schema


def served_schema(manifest: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the CRD version `manifest` names; fails when none serves it."""
    group, _, version = str(manifest.get("apiVersion", "")).rpartition("/")
    crd = pinned_crds().get((group, manifest.get("kind", "")))
    assert crd is not None, f"no pinned CRD for {manifest.get('apiVersion')} {manifest.get('kind')}"
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{crd['metadata']['name']} serves {sorted(served)}, not {version}"
    schema: dict[str, Any] = json_schema(served[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    return schema


def schema_problems(manifest: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{error.json_path}: {error.message}"
        for error in sorted(validator.iter_errors(manifest), key=lambda e: e.json_path)
    ]


def rule_nodes(value: Any, schema: dict[str, Any], path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, value, schema) of every value in `value` whose schema carries CEL rules."""
    if schema.get(CEL_RULES):
        yield path, value, schema
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        others = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key, others)
            if isinstance(child, dict):
                yield from rule_nodes(item, child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from rule_nodes(item, schema["items"], f"{path}[{index}]")


def cel_problems(manifest: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The messages of the CEL rules `manifest` breaks. Transition rules (`oldSelf`) judge an
    update against the stored object, and there is none: the pinned CRDs must have none."""
    environment = celpy.Environment()
    found = []
    for path, value, node in rule_nodes(manifest, schema, "$"):
        for rule in node[CEL_RULES]:
            assert "oldSelf" not in rule["rule"], f"{path}: transition rule {rule['rule']}"
            program = environment.program(environment.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
            # Anything but true (false, or an evaluation error) refuses the object.
            if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
                found.append(f"{path}: {rule.get('message', rule['rule'])}")
    return found


def problems(manifest: dict[str, Any]) -> list[str]:
    schema = served_schema(manifest)
    return schema_problems(manifest, schema) or cel_problems(manifest, schema)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_conform_to_the_pinned_crds(name: str) -> None:
    manifests = read_yaml(TOPICS / name)
    assert manifests
    for manifest in manifests:
        assert problems(manifest) == [], manifest["metadata"]["name"]


def test_every_manifest_kind_has_a_pinned_crd_serving_v1() -> None:
    kinds = {(m["apiVersion"], m["kind"]) for name in MANIFESTS for m in read_yaml(TOPICS / name)}
    assert kinds == {("kafka.strimzi.io/v1", "KafkaTopic"), ("kafka.strimzi.io/v1", "KafkaUser")}
    assert set(pinned_crds()) == {("kafka.strimzi.io", kind) for _, kind in kinds}


def test_pinned_crds_are_the_files_their_readme_names() -> None:
    """The CRDs are data taken whole from a Strimzi release: a hand edit changes a digest."""
    readme = (CRDS / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+\.yaml)` \| \w+ \| `([0-9a-f]{64})` \|", readme, re.M))
    files = {path.name: path for path in CRDS.glob("*.yaml")}
    assert set(listed) == set(files) == {"043-Crd-kafkatopic.yaml", "044-Crd-kafkauser.yaml"}
    for name, digest in listed.items():
        assert hashlib.sha256(files[name].read_bytes()).hexdigest() == digest, name


def first(name: str) -> dict[str, Any]:
    return copy.deepcopy(read_yaml(TOPICS / name)[0])


def broken_topic(change: str) -> dict[str, Any]:
    topic = first("kafkatopics.yaml")
    spec = topic["spec"]
    if change == "misspelt field":
        spec["partition"] = spec.pop("partitions")
    elif change == "no partitions":
        spec["partitions"] = 0
    elif change == "replicas as text":
        spec["replicas"] = "three"
    elif change == "v1beta2":
        topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    elif change == "name with dots and capitals":
        topic["metadata"]["name"] = "CDR.calls"
    return topic


def broken_user(change: str) -> dict[str, Any]:
    user = first("kafkauser.yaml")
    rule = user["spec"]["authorization"]["acls"][0]
    if change == "v1beta2 operation":
        rule["operation"] = rule.pop("operations")[0]
    elif change == "unknown operation":
        rule["operations"] = ["Wirte"]
    elif change == "unknown resource type":
        rule["resource"]["type"] = "consumerGroup"
    elif change == "certificate days without tls":
        user["spec"]["authentication"]["validityDays"] = 30
    return user


BROKEN = [
    (broken_topic, "misspelt field", "$.spec: Additional properties are not allowed ('partition'"),
    (broken_topic, "no partitions", "$.spec.partitions: 0 is less than the minimum of 1"),
    (broken_topic, "replicas as text", "$.spec.replicas: 'three' is not of type 'integer'"),
    (broken_topic, "v1beta2", "serves ['v1'], not v1beta2"),
    (broken_topic, "name with dots and capitals", "$.metadata.name: 'CDR.calls' does not match"),
    (broken_user, "v1beta2 operation", "$.spec.authorization.acls[0]: 'operations' is a required"),
    (broken_user, "unknown operation", "$.spec.authorization.acls[0].operations[0]: 'Wirte' is"),
    (broken_user, "unknown resource type", "'consumerGroup' is not one of ['topic', 'group'"),
    (
        broken_user,
        "certificate days without tls",
        "$.spec.authentication: 'validityDays' and 'renewalDays' can be configured only with",
    ),
]


@pytest.mark.parametrize(
    ("breaker", "change", "expected"), BROKEN, ids=[change for _, change, _ in BROKEN]
)
def test_a_broken_copy_is_refused(breaker: Any, change: str, expected: str) -> None:
    manifest = breaker(change)
    try:
        found = problems(manifest)
    except AssertionError as exc:
        found = [str(exc)]
    assert any(expected in problem for problem in found), found
