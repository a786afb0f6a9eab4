"""The alert rules: promtool accepts them, their unit tests pass and cover every alert both
firing and quiet, each has its annotations and a runbook in the README, and the PrometheusRule
carries exactly the same groups.

deploy/kubernetes/prometheusrule.yaml is generated from deploy/prometheus/alerts.yml:

    .venv/bin/python -m tests.observability.test_alert_rules > deploy/kubernetes/prometheusrule.yaml
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import tool
from tests.observability.conftest import (
    ALERTS,
    ALERTS_TEST,
    DEPLOY,
    PROMETHEUS_RULE,
    README,
    alert_rules,
    load_yaml,
)

RULE_HEADER = """\
# The alerts of deploy/prometheus/alerts.yml as a Prometheus Operator PrometheusRule. Generated,
# do not edit: .venv/bin/python -m tests.observability.test_alert_rules > {path}
# (tests/observability/test_alert_rules.py fails when the two differ). Add the labels your
# Prometheus' ruleSelector asks for (kube-prometheus-stack: `release: <its release name>`).
"""
ANNOTATIONS = ("summary", "description", "runbook", "runbook_url")
# Where runbook_url points by default: the project's published README. The Helm chart's
# prometheusRule.runbookBaseUrl defaults to the same.
RUNBOOK_BASE_URL = "https://github.com/cdr-connector/cdr-connector/blob/main/README.md"
SEVERITIES = ("critical", "warning")


class _FoldingDumper(yaml.SafeDumper):
    """Long strings (expressions, descriptions) as folded blocks, as alerts.yml writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = ">" if len(value) > 80 and "\n" not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_FoldingDumper.add_representer(str, _string)


def render_prometheus_rule() -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cdr-connector",
            "labels": {
                "app.kubernetes.io/name": "cdr-connector",
                "app.kubernetes.io/component": "alerts",
            },
        },
        "spec": {"groups": load_yaml(ALERTS)["groups"]},
    }
    body = yaml.dump(rule, Dumper=_FoldingDumper, sort_keys=False, width=96, allow_unicode=True)
    return RULE_HEADER.format(path=PROMETHEUS_RULE.relative_to(DEPLOY.parent)) + body


def promtool_run(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_promtool_checks_the_rules(promtool: Path) -> None:
    result = promtool_run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expression(promtool: Path, tmp_path: Path) -> None:
    """The check is real: one unbalanced parenthesis makes it fail."""
    broken = ALERTS.read_text(encoding="utf-8").replace("(time() -", "((time() -", 1)
    assert broken != ALERTS.read_text(encoding="utf-8")
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    result = promtool_run(promtool, "check", "rules", tmp_path / "alerts.yml")
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    result = promtool_run(promtool, "test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def promtool_test_of_changed_rules(
    promtool: Path, tmp_path: Path, old: str, new: str
) -> subprocess.CompletedProcess[str]:
    """The unit tests run against alerts.yml with its one `old` replaced by `new`."""
    text = ALERTS.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    (tmp_path / "alerts.yml").write_text(text.replace(old, new), encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    return promtool_run(promtool, "test", "rules", tmp_path / "alerts_test.yml")


def test_promtool_unit_tests_fail_when_a_threshold_changes(promtool: Path, tmp_path: Path) -> None:
    """The unit tests pin the thresholds: the stall alert at 25 minutes instead of 10 fails."""
    result = promtool_test_of_changed_rules(promtool, tmp_path, "> 600)", "> 1500)")
    assert result.returncode != 0
    assert "CdrConnectorStalled" in result.stdout + result.stderr


def test_promtool_unit_tests_fail_without_the_absent_guard(promtool: Path, tmp_path: Path) -> None:
    """A vanished target (pod deleted or Pending) leaves no `up` series at all: without the
    absent() term CdrConnectorDown would stay quiet, and its unit test says so."""
    guard = '\n          or absent(up{job=~".*cdr-connector.*"})'
    result = promtool_test_of_changed_rules(promtool, tmp_path, guard, "")
    assert result.returncode != 0
    assert "target that vanished" in result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_unowned_sources_alert_after_a_takeover(
    promtool: Path, tmp_path: Path
) -> None:
    """A takeover (a session timeout and a rebalance) leaves a source unowned for a while: a
    shorter wait than 2 minutes would page on it, and the quiet case says so."""
    result = promtool_test_of_changed_rules(promtool, tmp_path, "for: 2m", "for: 1m")
    assert result.returncode != 0
    assert "a takeover within 2 minutes" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_annotations_and_a_runbook_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Alerts and runbooks", 1)
    assert len(section) == 2, "README.md has no '## Alerts and runbooks' section"
    runbooks = section[1].split("\n## ", 1)[0]
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert sorted(rule["annotations"]) == sorted(ANNOTATIONS), name
        assert rule["annotations"]["runbook"] == f"README.md#{name.lower()}", name
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE_URL}#{name.lower()}", name
        heading = re.search(rf"^### {name}\n(.*?)(?=^### |\Z)", runbooks, re.M | re.S)
        assert heading, f"README.md has no runbook heading '### {name}'"
        for part in ("What it means", "What to check", "What to do"):
            assert part in heading.group(1), f"the runbook of {name} lacks '{part}'"


def test_the_prometheus_rule_carries_the_same_groups_as_alerts_yml() -> None:
    fix = f"regenerate it: {__doc__.strip().splitlines()[-1].strip()}"
    documents = list(yaml.safe_load_all(PROMETHEUS_RULE.read_text(encoding="utf-8")))
    assert len(documents) == 1
    (rule,) = documents
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"], fix
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == render_prometheus_rule(), fix


def test_the_prometheus_rule_matches_the_operator_crd() -> None:
    """Checked against models generated from the Prometheus Operator's CRDs (as the Helm
    chart's PrometheusRule is, in tests/deploy), unknown fields included."""
    rule: dict[str, Any] = load_yaml(PROMETHEUS_RULE)
    result = subprocess.run(
        [str(tool("crd-python")), str(DEPLOY.parent / "tests" / "deploy" / "crd_check.py")],
        input=json.dumps([rule]),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


if __name__ == "__main__":
    sys.stdout.write(render_prometheus_rule())
