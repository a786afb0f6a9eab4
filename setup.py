"""Builds cdr_connector/bill_writer.py and batch_writer.py as C extensions with mypyc, where a
C compiler is.

Together they run once per record: the bill writer turns a bill into its Avro value, the batch
writer drops duplicates and builds the messages; compiled, they take about a third less CPU
than from source (bench/README.md). Compiling is optional: without a compiler (or with
CDR_CONNECTOR_PURE_PYTHON=1) the same modules run as plain Python, with identical output, and
the connector says at start-up which build it uses. Everything else is in pyproject.toml.
"""

import os

from mypyc.build import mypycify
from setuptools import setup

COMPILED_MODULES = ["cdr_connector/bill_writer.py", "cdr_connector/batch_writer.py"]


def compiled_extensions() -> list:
    if os.environ.get("CDR_CONNECTOR_PURE_PYTHON") == "1":
        return []
    # Only the module's own code is compiled; the imports it type-checks against (fastavro,
    # pydantic) are not installed in pip's isolated build environment, hence no config file
    # (it names the pydantic plugin) and missing imports as Any.
    # One group, so that the batch writer calls the bill writer natively. Its shared library
    # is a top-level module (cdr_connector_native__mypyc*.so), where mypyc expects it.
    extensions = mypycify(
        ["--config-file=", "--ignore-missing-imports", *COMPILED_MODULES],
        opt_level="3",
        group_name="cdr_connector_native",
    )
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure Python module in place
    return extensions


setup(ext_modules=compiled_extensions())
