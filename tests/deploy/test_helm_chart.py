"""The Helm chart, rendered by a real helm, checked against Kubernetes' schemas and the connector.

Every object the chart renders, with its default values and with the production example, goes
through ``kubernetes-validate --strict`` for the oldest and newest Kubernetes versions the chart
claims (unknown fields are errors). The Prometheus Operator's objects (ServiceMonitor,
PrometheusRule) are not in Kubernetes' schemas; they are checked against models generated from
the operator's CRDs, and a field those models do not know is an error too. Then the rendered
settings are loaded by the connector's own loader, with the environment the pod would get, so the
chart can only set keys, variables, ports and probe paths the connector actually has.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdr_connector.config import CONFIG_PATH_ENV, Settings, load_settings
from tests.deploy.conftest import CHART, DEPLOY, REPO_ROOT, run, setting_path, tool

PRODUCTION_VALUES = CHART / "examples" / "values-production.yaml"
# Many accounts shared by replicas, on top of the production example (test_helm_fleet.py).
FLEET_VALUES = CHART / "examples" / "values-fleet.yaml"
# The chart's kubeVersion floor and the newest Kubernetes kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
NAMESPACE = "cdr"
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
CRD_KINDS = ("ServiceMonitor", "PrometheusRule")
# Files of the chart that must stay copies of the originals elsewhere in deploy/.
COPIES = {
    CHART / "files" / "alerts.yml": DEPLOY / "prometheus" / "alerts.yml",
    CHART / "files" / "cdr-connector-dashboard.json": DEPLOY
    / "grafana"
    / "cdr-connector-dashboard.json",
}


def helm(*args: str | Path) -> tuple[int, str]:
    result = run([tool("helm"), *args])
    return result.returncode, result.stdout + result.stderr


def render(*args: str | Path, release: str = "cdr-demo") -> list[dict[str, Any]]:
    code, output = helm("template", release, CHART, "--namespace", NAMESPACE, *args)
    assert code == 0, output
    return [doc for doc in yaml.safe_load_all(output) if doc]


def render_error(*args: str | Path) -> str:
    code, output = helm("template", "cdr-demo", CHART, "--namespace", NAMESPACE, *args)
    assert code != 0, f"rendering should have failed:\n{output}"
    return output


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def production_objects() -> list[dict[str, Any]]:
    return render("-f", PRODUCTION_VALUES, release="cdr-acme-sh")


@pytest.fixture(scope="module")
def fleet_objects() -> list[dict[str, Any]]:
    return render("-f", PRODUCTION_VALUES, "-f", FLEET_VALUES, release="cdr-fleet")


@pytest.fixture(params=["default", "production"])
def objects(
    request: pytest.FixtureRequest,
    default_objects: list[dict[str, Any]],
    production_objects: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    return default_objects if request.param == "default" else production_objects


@pytest.fixture(params=["default", "production", "fleet"])
def every_rendering(
    request: pytest.FixtureRequest,
    default_objects: list[dict[str, Any]],
    production_objects: list[dict[str, Any]],
    fleet_objects: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The renderings of one source (`objects`), and of many accounts in a fleet."""
    renderings = {
        "default": default_objects,
        "production": production_objects,
        "fleet": fleet_objects,
    }
    return renderings[request.param]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and not o["metadata"]["name"].endswith("-dashboard")
    ]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def settings_text(objects: list[dict[str, Any]]) -> str:
    text = one(objects, "ConfigMap")["data"]["settings.toml"]
    assert isinstance(text, str)
    return text


ACCESSKEY_FILE = re.compile(r'accesskey_file = "([^"]+)"')


def load_rendered_settings(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Load the rendered settings.toml as the pod would: the Secret's key files in place (one,
    or one per source: `placeholder-access-key-of-<name>`), and every environment variable of
    the container set (values from Secrets as placeholders)."""
    text = settings_text(objects)
    mount = credentials_mount(objects)
    key_files = ACCESSKEY_FILE.findall(text)
    assert key_files, "the settings name no access key file"
    for index, accesskey_file in enumerate(key_files):
        assert accesskey_file.startswith(f"{mount}/"), accesskey_file
        under = Path(accesskey_file).relative_to(mount).parent.name
        local_key = tmp_path / f"accesskey-{index}"
        content = "placeholder-access-key" + (f"-of-{under}" if under else "")
        local_key.write_text(content + "\n", encoding="utf-8")
        text = text.replace(f'"{accesskey_file}"', f'"{local_key}"')
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(text, encoding="utf-8")
    for variable in container(objects)["env"]:
        value = variable.get("value", f"from-secret-{variable['name'].lower()}")
        if variable["name"] == CONFIG_PATH_ENV:
            assert value == mounted_settings_path(objects)
            value = str(settings_file)
        monkeypatch.setenv(variable["name"], value)
    return load_settings()


def credentials_mount(objects: list[dict[str, Any]]) -> str:
    """Where the credentials volume (a Secret, or projected Secrets) is mounted."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert "secret" in volume or "projected" in volume, volume
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "credentials")
    path: str = mount["mountPath"]
    return path


def mounted_settings_path(objects: list[dict[str, Any]]) -> str:
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "settings")
    return f"{mount['mountPath']}/settings.toml"


# --- helm lint and Kubernetes schemas ------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[], [PRODUCTION_VALUES], [PRODUCTION_VALUES, FLEET_VALUES]],
    ids=["default", "production", "fleet"],
)
def test_helm_lint_is_clean(values: list[Path]) -> None:
    extra = [arg for path in values for arg in ("-f", str(path))]
    code, output = helm("lint", CHART, "--strict", "--namespace", NAMESPACE, *extra)
    assert code == 0, output
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly_against_kubernetes(
    every_rendering: list[dict[str, Any]], kubernetes_version: str, tmp_path: Path
) -> None:
    core = [o for o in every_rendering if o["kind"] not in CRD_KINDS]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    result = run([tool("kubernetes-validate"), "--strict", "-k", kubernetes_version, manifest])
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    assert passed == len(core), result.stdout + result.stderr


def test_the_validator_rejects_unknown_fields(
    default_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """--strict really is strict: the same Deployment with one misspelt field fails."""
    deployment = json.loads(json.dumps(one(default_objects, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    result = run([tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSIONS[-1], manifest])
    assert result.returncode != 0
    assert "livenesProbe" in result.stdout + result.stderr


def crd_problems(objects: list[dict[str, Any]]) -> list[str]:
    result = run(
        [tool("crd-python"), Path(__file__).parent / "crd_check.py"], input=json.dumps(objects)
    )
    assert result.returncode == 0, result.stderr
    problems: list[str] = json.loads(result.stdout)
    return problems


def test_prometheus_operator_objects_match_their_crds(
    production_objects: list[dict[str, Any]],
) -> None:
    crd_objects = [o for o in production_objects if o["kind"] in CRD_KINDS]
    assert sorted(o["kind"] for o in crd_objects) == ["PrometheusRule", "ServiceMonitor"]
    assert crd_problems(crd_objects) == []


def test_the_crd_check_rejects_unknown_and_invalid_fields() -> None:
    def monitor(endpoint: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "x"},
            "spec": {"selector": {}, "endpoints": [{"port": "metrics", **endpoint}]},
        }

    problems = crd_problems([monitor({"intervall": "30s"}), monitor({"interval": "thirty"})])
    assert problems[0] == "ServiceMonitor/x: unknown field .spec.endpoints[0].intervall"
    assert "interval" in problems[1]
    assert len(problems) == 2


def test_default_values_render_only_what_is_always_needed(
    default_objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(o["kind"] for o in default_objects)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "Service", "ServiceAccount"]


def test_production_example_renders_the_optional_objects(
    production_objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(o["kind"] for o in production_objects)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_every_object_has_the_standard_labels(objects: list[dict[str, Any]]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    for manifest in objects:
        labels = manifest["metadata"]["labels"]
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{manifest['kind']} lacks {missing}"
        assert labels["app.kubernetes.io/name"] == "cdr-connector"
        assert labels["helm.sh/chart"] == f"cdr-connector-{chart['version']}"
        assert manifest["metadata"]["namespace"] == NAMESPACE


# --- one active instance ------------------------------------------------------------------------


def test_one_replica_and_recreate(objects: list[dict[str, Any]]) -> None:
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_zero_replicas_stop_the_connector() -> None:
    assert one(render("--set", "replicaCount=0"), "Deployment")["spec"]["replicas"] == 0


def test_two_replicas_without_the_fleet_are_refused_with_the_reason() -> None:
    """The template's check, not the schema's, answers: its message says why and what to do
    (tests/deploy/test_helm_fleet.py has the replicas a fleet allows)."""
    output = render_error("--set", "replicaCount=2")
    assert "replicaCount is 2, but config.fleet.enabled is not set" in output
    assert "transactional.id fences the first" in output
    assert "Set config.fleet.enabled: true" in output


def test_no_access_key_in_values() -> None:
    output = render_error("--set", "config.source.accesskey=oops", "--skip-schema-validation")
    assert "never put the access key in values" in output
    assert "accesskey" in render_error("--set", "config.source.accesskey=oops")


# --- probes, ports, settings and environment match the connector ---------------------------------


def test_probes_use_the_connectors_endpoints_on_its_port(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    main = container(objects)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": settings.http.port}
    probes = {
        name: main[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": {"path": "/livez", "port": "metrics"},
        "livenessProbe": {"path": "/livez", "port": "metrics"},
        "readinessProbe": {"path": "/readyz", "port": "metrics"},
    }
    routes = _ops_routes()
    assert {"/livez", "/readyz", "/metrics"} <= routes
    service = one(objects, "Service")["spec"]["ports"]
    assert service == [
        {"name": "metrics", "port": settings.http.port, "targetPort": "metrics", "protocol": "TCP"}
    ]


def _ops_routes() -> set[str]:
    from cdr_connector.http import create_ops_app

    app = create_ops_app(lambda: None)
    return {resource.canonical for resource in app.router.resources()}


def test_probe_port_follows_the_http_port_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render("--set", "config.http.port=9500")
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    assert settings.http.port == 9500
    assert container(objects)["ports"][0]["containerPort"] == 9500
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 9500


def test_every_cdr_variable_is_a_real_setting(objects: list[dict[str, Any]]) -> None:
    names = [v["name"] for v in container(objects)["env"] if v["name"].startswith("CDR_")]
    assert CONFIG_PATH_ENV in names
    settings_variables = [n for n in names if n != CONFIG_PATH_ENV]
    assert settings_variables, "the chart sets at least the appid from the Secret"
    for name in settings_variables:
        setting_path(name)


def test_the_setting_check_rejects_made_up_variables() -> None:
    assert setting_path("CDR_KAFKA__CLIENT_CONFIG__SASL.PASSWORD") == [
        "kafka",
        "client_config",
        "sasl.password",
    ]
    assert setting_path("CDR_SHUTDOWN_TIMEOUT_SECONDS") == ["shutdown_timeout_seconds"]
    for made_up in ("CDR_SOURCE__APP_ID", "CDR_KAFKA", "CDR_HTTP__PORT__X", "CDR_METRICS__PORT"):
        with pytest.raises(AssertionError):
            setting_path(made_up)


def test_default_settings_load_with_the_connectors_loader(
    default_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(default_objects, tmp_path, monkeypatch)
    assert settings.source.name == "default"
    assert settings.source.appid == "from-secret-cdr_source__appid"
    assert settings.source.accesskey.get_secret_value() == "placeholder-access-key"
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == 9464
    assert settings.kafka.topic == "cdr.calls"
    assert settings.kafka.create_topics is False
    assert settings.log.format == "json"
    assert settings.shutdown_timeout_seconds == 30
    assert settings.transactional_id == "cdr-connector-default"


def test_production_settings_load_with_the_connectors_loader(
    production_objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(production_objects, tmp_path, monkeypatch)
    values = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))["config"]
    assert settings.source.name == values["source"]["name"] == "acme-sh"
    assert str(settings.source.api_url) == values["source"]["api_url"]
    assert settings.source.filters.extnumber == tuple(values["source"]["filters"]["extnumber"])
    assert settings.poll.concurrency == values["poll"]["concurrency"]
    assert settings.kafka.bootstrap_servers == values["kafka"]["bootstrap_servers"]
    assert settings.avro.schema_registry_url == values["avro"]["schema_registry_url"]
    assert settings.shutdown_timeout_seconds == values["shutdown_timeout_seconds"]
    # TOML gives client_config; the password comes from a Secret through the environment.
    assert settings.kafka.client_config == {
        **values["kafka"]["client_config"],
        "sasl.password": "from-secret-cdr_kafka__client_config__sasl.password",
    }
    assert settings.transactional_id == "cdr-connector-acme-sh"


def test_integral_numbers_render_as_toml_integers(
    production_objects: list[dict[str, Any]],
) -> None:
    text = settings_text(production_objects)
    assert "port = 9464\n" in text
    assert "lookback_seconds = 172800\n" in text
    assert ".0\n" not in text


def test_settings_are_mounted_where_cdr_config_points(objects: list[dict[str, Any]]) -> None:
    env = {v["name"]: v for v in container(objects)["env"]}
    assert env[CONFIG_PATH_ENV]["value"] == mounted_settings_path(objects)
    volumes = {
        v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["settings"]["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]


def test_access_key_comes_from_the_existing_secret_as_a_file(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "credentials")["secret"]
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "credentials")
    assert mount["readOnly"] is True
    text = settings_text(objects)
    assert f'accesskey_file = "{mount["mountPath"]}/accesskey"' in text
    appid = next(v for v in container(objects)["env"] if v["name"] == "CDR_SOURCE__APPID")
    assert appid["valueFrom"]["secretKeyRef"]["name"] == secret_volume["secretName"]
    assert all("accesskey" not in v["name"].lower() for v in container(objects)["env"])


def test_config_checksum_changes_with_the_settings() -> None:
    def checksum(*args: str) -> str:
        deployment = one(render(*args), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert base == checksum("--set", "image.tag=other")
    assert base != checksum("--set", "config.poll.concurrency=5")
    assert len(base) == len(hashlib.sha256().hexdigest())


# --- shutdown and security ----------------------------------------------------------------------


def test_grace_period_covers_the_shutdown_bound(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_rendered_settings(objects, tmp_path, monkeypatch)
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.shutdown_timeout_seconds + 5


def test_grace_period_follows_the_shutdown_setting() -> None:
    objects = render("--set", "config.shutdown_timeout_seconds=100")
    assert (
        one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == 115
    )


def test_too_short_a_grace_period_is_refused() -> None:
    output = render_error("--set", "terminationGracePeriodSeconds=30")
    assert "terminationGracePeriodSeconds (30) must be at least" in output


def test_security_context(objects: list[dict[str, Any]]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container(objects)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container(objects)["volumeMounts"]


def test_image_user_matches_the_pod_user(objects: list[dict[str, Any]]) -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    context = container(objects)["securityContext"]
    assert users[-1] == f"{context['runAsUser']}:{context['runAsGroup']}"


# --- monitoring objects -----------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_port(
    production_objects: list[dict[str, Any]],
) -> None:
    monitor = one(production_objects, "ServiceMonitor")
    service = one(production_objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def _without_runbook_urls(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **group,
            "rules": [
                {
                    **rule,
                    "annotations": {
                        k: v for k, v in rule["annotations"].items() if k != "runbook_url"
                    },
                }
                for rule in group["rules"]
            ],
        }
        for group in groups
    ]


def _runbook_urls(rule: dict[str, Any]) -> dict[str, str]:
    return {
        r["alert"]: r["annotations"]["runbook_url"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    }


def test_prometheus_rule_carries_the_alert_groups(
    production_objects: list[dict[str, Any]],
) -> None:
    """The same groups as alerts.yml, but for runbook_url, which the chart sets (below)."""
    rule = one(production_objects, "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yml").read_text(encoding="utf-8"))
    assert _without_runbook_urls(rule["spec"]["groups"]) == _without_runbook_urls(alerts["groups"])
    assert rule["spec"]["groups"], "at least one alert group"


def test_runbook_urls_are_absolute_on_the_base_the_values_give() -> None:
    base = "https://git.example.org/platform/cdr-connector/-/blob/v0.1.0/README.md"
    rule = one(
        render(
            "--set", "prometheusRule.enabled=true", "--set", f"prometheusRule.runbookBaseUrl={base}"
        ),
        "PrometheusRule",
    )
    urls = _runbook_urls(rule)
    assert urls, "no alerts"
    for alert, url in urls.items():
        assert url == f"{base}#{alert.lower()}", alert


def test_the_default_runbook_base_is_the_one_alerts_yml_links() -> None:
    """Without a value, the chart's links are those of deploy/prometheus/alerts.yml, which
    tests/observability checks against the README's runbook headings."""
    rule = one(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"]
    assert all(url.startswith("https://") for url in _runbook_urls(rule).values())


def test_a_relative_runbook_base_is_refused() -> None:
    output = render_error(
        "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.runbookBaseUrl=README.md"
    )
    assert "runbookBaseUrl" in output


def test_dashboard_config_map_for_the_grafana_sidecar(
    production_objects: list[dict[str, Any]],
) -> None:
    dashboard = next(o for o in production_objects if o["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["kind"] == "ConfigMap"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    expected = (CHART / "files" / "cdr-connector-dashboard.json").read_text(encoding="utf-8")
    assert json.loads(content) == json.loads(expected)


@pytest.mark.parametrize("copy", sorted(COPIES), ids=lambda p: p.name)
def test_chart_files_are_copies_of_the_deploy_originals(copy: Path) -> None:
    original = COPIES[copy]
    fix = f"cp {original.relative_to(REPO_ROOT)} {copy.relative_to(REPO_ROOT)}"
    assert original.is_file(), f"{original.relative_to(REPO_ROOT)} is missing"
    assert copy.read_bytes() == original.read_bytes(), f"the chart's copy drifted: {fix}"


def test_templates_read_only_real_settings() -> None:
    """Every `config.<key>` or `config.<section>.<key>` a template reads is a real setting."""
    patterns = (
        re.compile(r"\(\.Values\.config\.(\w+) \| default dict\)\.(\w+)"),
        re.compile(r"\.Values\.config\.(\w+)(?:\.(\w+))?"),
    )
    used: set[tuple[str, ...]] = set()
    for template in (CHART / "templates").iterdir():
        text = template.read_text(encoding="utf-8")
        for pattern in patterns:
            for match in pattern.finditer(text):
                used.add(tuple(part for part in match.groups() if part))
    assert ("http", "port") in used
    assert ("shutdown_timeout_seconds",) in used
    for path in used:
        if len(path) == 1:
            assert path[0] in Settings.model_fields, path
        else:
            setting_path("CDR_" + "__".join(path).upper())
