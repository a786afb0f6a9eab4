"""Checks Prometheus Operator objects against models generated from the operator's CRDs.

Runs in its own environment (.tools/crd-venv, see scripts/install-deploy-tools.sh), not in the
project's: `python crd_check.py < objects.json` reads a JSON list of objects and prints a JSON
list of problems, one string each, empty when every object conforms. The models ignore fields
they do not know, so every key of an object that the validated model drops is reported too:
the check is as strict as `kubernetes-validate --strict`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from pydantic import ValidationError

MODELS: dict[str, Any] = {"ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}
API_VERSION = "monitoring.coreos.com/v1"


def unknown_keys(given: Any, known: Any, path: str = "") -> list[str]:
    """Keys of `given` that are not in `known`, the model's dump of it."""
    if isinstance(given, dict):
        if not isinstance(known, dict):
            return [path or "."]
        found = []
        for key, value in given.items():
            if key not in known:
                found.append(f"{path}.{key}")
            else:
                found.extend(unknown_keys(value, known[key], f"{path}.{key}"))
        return found
    if isinstance(given, list) and isinstance(known, list) and len(given) == len(known):
        return [k for i, g in enumerate(given) for k in unknown_keys(g, known[i], f"{path}[{i}]")]
    return []


def problems(manifest: dict[str, Any]) -> list[str]:
    kind = manifest.get("kind")
    name = f"{kind}/{manifest.get('metadata', {}).get('name')}"
    if kind not in MODELS:
        return [f"{name}: no model for this kind"]
    if manifest.get("apiVersion") != API_VERSION:
        return [f"{name}: apiVersion is not {API_VERSION}"]
    try:
        model = MODELS[kind].model_validate(manifest)
    except ValidationError as exc:
        return [f"{name}: {error['loc']}: {error['msg']}" for error in exc.errors()]
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"{name}: unknown field {key}" for key in unknown_keys(manifest, dumped)]


def main() -> int:
    objects = json.load(sys.stdin)
    found = [problem for manifest in objects for problem in problems(manifest)]
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
