"""The Kafka Streams example, built once per test session with Maven.

The build is cached in examples/kafka-streams/target/: a stamp of the inputs (the pom, the
sources, the record schema) is written after a build, and a session whose inputs match it and
whose jars are all present skips Maven altogether.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAMS_DIR = REPO_ROOT / "examples" / "kafka-streams"
TARGET = STREAMS_DIR / "target"
JAR = TARGET / "cdr-streams-totals.jar"
CLASSPATH = TARGET / "classpath.txt"
STAMP = TARGET / "inputs.sha256"
MAIN_CLASS = "io.cdrconnector.examples.streams.TotalsApp"
BUILD_TIMEOUT = 600.0  # a first build downloads Kafka Streams and Avro from Maven Central


def build_inputs() -> list[Path]:
    sources = sorted(p for p in (STREAMS_DIR / "src").rglob("*") if p.is_file())
    return [STREAMS_DIR / "pom.xml", REPO_ROOT / "schemas" / "cdr_record.avsc", *sources]


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for path in build_inputs():
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_is_current(digest: str) -> bool:
    if not (JAR.is_file() and CLASSPATH.is_file() and STAMP.is_file()):
        return False
    jars = CLASSPATH.read_text(encoding="utf-8").strip().split(os.pathsep)
    return STAMP.read_text(encoding="utf-8") == digest and all(Path(j).is_file() for j in jars)


def maven_package() -> None:
    """`mvn package`, offline first (nothing to fetch once the jars are cached)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("mvn not found: Maven builds examples/kafka-streams", pytrace=False)
    output = ""
    for offline in (["-o"], []):
        result = subprocess.run(
            [mvn, "-B", "-q", *offline, "package"],
            cwd=STREAMS_DIR,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode == 0:
            return
        output = result.stdout + result.stderr
    tail = "\n".join(output.strip().splitlines()[-40:])
    pytest.fail(f"building examples/kafka-streams failed:\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def streams_app() -> list[str]:
    """The command that runs the Kafka Streams example; its options follow."""
    digest = inputs_digest()
    if not build_is_current(digest):
        STAMP.unlink(missing_ok=True)
        maven_package()
        STAMP.write_text(digest, encoding="utf-8")
    classpath = f"{JAR}{os.pathsep}{CLASSPATH.read_text(encoding='utf-8').strip()}"
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found: the Kafka Streams example needs Java 17+", pytrace=False)
    return [java, "-cp", classpath, MAIN_CLASS]
