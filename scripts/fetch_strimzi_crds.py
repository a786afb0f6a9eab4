"""Regenerates the Strimzi CRDs pinned in deploy/topics/crds/ (KafkaTopic and KafkaUser).

Strimzi publishes its CRD files only in its installation bundle (GitHub releases, out of this
project's reach), but it generates them at build time from the classes of `io.strimzi:api`
with `io.strimzi:crd-generator`, and both are on Maven Central. The api jar carries its own
pom, whose exec-maven-plugin execution names the generator's options and the file of each CRD
(packaging/install/cluster-operator/04N-Crd-<kind>.yaml). This script fetches the two jars of
one release with Maven, reads those options from that pom, runs the generator for KafkaTopic and
KafkaUser only, refuses a release whose CRDs do not serve `kafka.strimzi.io/v1`, and writes
the files under their release names. The files of Strimzi 1.2.0 made this way are byte for byte
those of its release tag.

    .venv/bin/python scripts/fetch_strimzi_crds.py [--version 1.2.0] [--out deploy/topics/crds]

It needs `mvn` and a Java 21+ (the generator's class files are Java 21), found as
`deploy/dev/registry.sh java` finds one (REGISTRY_JAVA_HOME, JAVA_HOME, PATH, /usr/lib/jvm).
Jars go to the git-ignored deploy/dev/.cache/m2. It prints the sha256 of each file written:
copy them to deploy/topics/crds/README.md, which tests/deploy/test_strimzi_crds.py checks.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
M2 = REPO_ROOT / "deploy" / "dev" / ".cache" / "m2"
DEFAULT_VERSION = "1.2.0"
GENERATOR_CLASS = "io.strimzi.crdgenerator.CrdGenerator"
KINDS = ("io.strimzi.api.kafka.model.topic.KafkaTopic", "io.strimzi.api.kafka.model.user.KafkaUser")
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
SERVED_VERSION = "v1"


class FetchError(Exception):
    """A step that cannot go on; the message says what to do."""


def maven_jar(artifact: str, version: str) -> Path:
    """The jar of io.strimzi:<artifact>:<version>, fetched into the project's Maven cache."""
    jar = M2 / "io" / "strimzi" / artifact / version / f"{artifact}-{version}.jar"
    if not jar.is_file():
        command = [
            "mvn", "-B", "-q", "--strict-checksums", f"-Dmaven.repo.local={M2}",
            "dependency:get", f"-Dartifact=io.strimzi:{artifact}:{version}", "-Dtransitive=false",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not jar.is_file():
            raise FetchError(
                f"Maven could not fetch io.strimzi:{artifact}:{version} (is the version "
                f"released?):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    return jar


def java21() -> str:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "dev" / "registry.sh"), "java"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FetchError(f"the CRD generator needs Java 21+: {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[-1]


def generator_arguments(api_jar: Path) -> tuple[list[str], dict[str, str]]:
    """The generator's options, and file name by class for KafkaTopic and KafkaUser, as the
    release's own pom (inside the api jar) passes them."""
    with zipfile.ZipFile(api_jar) as jar:
        pom = ET.fromstring(jar.read("META-INF/maven/io.strimzi/api/pom.xml"))
    for arguments in pom.iterfind(".//m:execution/m:configuration/m:arguments", POM_NS):
        values = [(a.text or "").strip() for a in arguments.iterfind("m:argument", POM_NS)]
        if GENERATOR_CLASS not in values:
            continue
        after = values[values.index(GENERATOR_CLASS) + 1 :]
        files = dict(v.split("=", 1) for v in after if "=" in v and v.startswith("io.strimzi."))
        if all(kind in files for kind in KINDS):
            options = [v for v in after if not v.startswith("io.strimzi.")]
            # The paths are spelled with ${file.separator}: the name is what follows the last.
            names = {kind: re.split(r"[/\\}]", files[kind])[-1] for kind in KINDS}
            return options, names
    raise FetchError(f"{api_jar.name}: no {GENERATOR_CLASS} execution names {', '.join(KINDS)}")


def check_serves_v1(path: Path) -> None:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    if SERVED_VERSION not in served:
        raise FetchError(
            f"{path.name} serves {served}, not {SERVED_VERSION}: take a Strimzi release of 0.49 "
            "or newer (--version)"
        )


def generate(version: str, out: Path) -> list[Path]:
    api_jar = maven_jar("api", version)
    generator_jar = maven_jar("crd-generator", version)
    options, names = generator_arguments(api_jar)
    with tempfile.TemporaryDirectory() as work:
        targets = [f"{kind}={Path(work) / name}" for kind, name in names.items()]
        classpath = f"{api_jar}:{generator_jar}"
        command = [java21(), "-classpath", classpath, GENERATOR_CLASS, *options, *targets]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FetchError(f"the CRD generator failed:\n{result.stderr[-4000:]}")
        for name in names.values():
            check_serves_v1(Path(work) / name)
        out.mkdir(parents=True, exist_ok=True)
        for name in names.values():
            (out / name).write_bytes((Path(work) / name).read_bytes())
    return [out / name for name in names.values()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help="the Strimzi release")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "deploy" / "topics" / "crds")
    args = parser.parse_args()
    try:
        written = generate(args.version, args.out)
    except FetchError as exc:
        print(f"fetch_strimzi_crds: {exc}", file=sys.stderr)
        return 1
    for path in written:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.name}  Strimzi {args.version}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
