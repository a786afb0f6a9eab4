"""The version the connector reports: its installed distribution's, or 0.0.0 from a source
tree that was never installed."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import cdr_connector

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_the_installed_distributions() -> None:
    assert cdr_connector.__version__ == version("cdr-connector")


def test_a_source_tree_never_installed_reports_0_0_0() -> None:
    program = (
        "import importlib.metadata as metadata\n"
        "def missing(name):\n"
        "    raise metadata.PackageNotFoundError(name)\n"
        "metadata.version = missing\n"
        "import cdr_connector\n"
        "print(cdr_connector.__version__)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout == "0.0.0\n"
