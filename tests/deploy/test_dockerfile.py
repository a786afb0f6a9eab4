"""The container image's Dockerfile: hadolint-clean, multi-stage, non-root, nothing to build with,
reproducible (base images by digest, every package from a lock with hashes).

No image is built here (there is no container engine); these checks read the Dockerfile,
.dockerignore and the lock files and compare them with the CLI, the settings and pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cdr_connector.__main__ import _build_parser
from cdr_connector.config import HttpSettings
from tests.deploy.conftest import REPO_ROOT, run, tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
RUNTIME_LOCK = REPO_ROOT / "requirements.lock"
BUILD_LOCK = REPO_ROOT / "requirements-build.lock"
# An image reference pinned by digest, its tag kept for people: python:3.12-slim@sha256:<64 hex>.
PINNED_IMAGE = re.compile(r"(?P<name>[\w./-]+):(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)\s*(?P<options>.*)$")
# Packages and commands that compile: none may reach the final image.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|cmake|python3?-dev|libc6?-dev|"
    r"apt-get|apk|pip3? install|uv pip)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [text for kw, text in self.instructions if kw == keyword]


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of every instruction, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[Stage]:
    found: list[Stage] = []
    for keyword, text in instructions():
        if keyword == "FROM":
            words = text.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=words[0], name=name))
        elif found:
            found[-1].instructions.append((keyword, text))
    return found


def test_hadolint_is_clean() -> None:
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def _arg_default(name: str) -> str:
    return next(
        text.partition("=")[2]
        for kw, text in instructions()
        if kw == "ARG" and text.startswith(f"{name}=")
    )


def _image_tag(reference: str) -> str:
    """python:3.12-slim-bookworm@sha256:... -> python:3.12-slim-bookworm"""
    return reference.partition("@")[0]


def test_built_on_the_full_image_and_run_on_the_slim_one_of_the_same_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    build, final = all_stages[0], all_stages[-1]
    assert build.name == "build"
    assert (build.base, final.base) == ("${BUILD_IMAGE}", "${PYTHON_IMAGE}")
    run_tag = _image_tag(_arg_default("PYTHON_IMAGE"))
    run_image = re.fullmatch(r"python:(3\.1[1-9])-slim-(\w+)", run_tag)
    assert run_image, run_tag
    # The virtual environment (with the mypyc-built writer) is copied between stages, so both
    # need the same interpreter: the same Python and Debian release, with and without gcc.
    python, debian = run_image.groups()
    assert _image_tag(_arg_default("BUILD_IMAGE")) == f"python:{python}-{debian}"


def _base_reference(stage: Stage) -> str:
    """The image a stage starts from, its ARG default filled in."""
    variable = re.fullmatch(r"\$\{(\w+)\}", stage.base)
    return _arg_default(variable.group(1)) if variable else stage.base


def test_every_base_image_is_pinned_by_digest_with_its_tag_in_a_comment() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    comments = [line for line in text.splitlines() if line.startswith("#")]
    for stage in stages():
        reference = _base_reference(stage)
        pinned = PINNED_IMAGE.fullmatch(reference)
        assert pinned, f"{stage.name or 'final'} stage: {reference} is not pinned by digest"
        tag = f"{pinned['name']}:{pinned['tag']}"
        assert any(tag in line for line in comments), f"no comment names the tag {tag}"


def test_the_digest_check_rejects_a_tag_alone() -> None:
    assert PINNED_IMAGE.fullmatch("python:3.12-slim-bookworm") is None
    assert PINNED_IMAGE.fullmatch("python@sha256:" + "a" * 64) is None, "the tag is kept"
    assert PINNED_IMAGE.fullmatch("python:3.12-slim@sha256:" + "a" * 63) is None


def test_the_build_stage_checks_the_writer_was_compiled() -> None:
    runs = " ".join(stages()[0].args("RUN"))
    assert re.search(r"pip install --no-deps --no-index --no-compile \S*cdr_connector-", runs)
    assert "assert w.is_compiled() and b.is_compiled()" in runs


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, [sha256 hashes])} of a pip-style lock file."""
    logical = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in logical.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin = _PIN.match(line.strip())
        assert pin, f"{path.name}: not a pin with hashes: {line.strip()[:80]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", pin["options"])
        pins[canonicalize_name(pin["name"])] = (pin["version"], hashes)
    return pins


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _image_python() -> str:
    run_tag = _image_tag(_arg_default("PYTHON_IMAGE"))
    found = re.fullmatch(r"python:(3\.\d+)-.*", run_tag)
    assert found, run_tag
    return found.group(1)


def _image_environment() -> dict[str, str]:
    """Marker values of the image: its Python on Linux."""
    python = _image_python()
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def _unmet(requirements: list[Requirement], lock: dict[str, tuple[str, list[str]]]) -> list[str]:
    """The requirements (for the image's Python) that the lock does not pin within range."""
    environment = _image_environment()
    problems = []
    for requirement in requirements:
        extras = [{**environment, "extra": extra} for extra in ("", *requirement.extras)]
        if requirement.marker and not any(requirement.marker.evaluate(e) for e in extras):
            continue
        name = canonicalize_name(requirement.name)
        if name not in lock:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(lock[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock pins {lock[name][0]}")
    return problems


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = read_lock(RUNTIME_LOCK)
    assert _unmet(_runtime_requirements(), lock) == [], "regenerate it: make lock"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no --hash"


def test_the_lock_check_sees_a_missing_or_out_of_range_dependency() -> None:
    lock = read_lock(RUNTIME_LOCK)
    fastavro = next(r for r in _runtime_requirements() if r.name == "fastavro")
    assert _unmet([fastavro], {k: v for k, v in lock.items() if k != "fastavro"})
    assert _unmet([fastavro], {**lock, "fastavro": ("0.1", ["0" * 64])})
    assert _unmet([Requirement("not-locked-anywhere>=1")], lock)


def _locked_and_installed(lock: dict[str, tuple[str, list[str]]]) -> list[str]:
    """The locked packages installed here at the locked version, whose metadata can be read."""
    same = []
    for name, (version, _) in lock.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed == version:
            same.append(name)
    return same


def test_the_lock_holds_the_dependencies_of_its_own_packages() -> None:
    """Closed under dependencies, extras included (confluent-kafka[schemaregistry]), as far as
    the packages installed here at the locked versions tell; the image build's `pip check`
    checks the rest. Without that, --no-deps would leave a package without what it imports."""
    lock = read_lock(RUNTIME_LOCK)
    readable = _locked_and_installed(lock)
    assert readable, "no locked package is installed at its locked version: make lock"
    extras = {canonicalize_name(r.name): r.extras for r in _runtime_requirements()}
    for name in readable:
        requirements = [Requirement(r) for r in importlib.metadata.requires(name) or []]
        for requirement in requirements:
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**_image_environment(), "extra": extra})
                for extra in ("", *extras.get(name, ()))
            )
            if wanted:
                assert not _unmet([requirement], lock), f"{name} needs {requirement}"


def test_the_build_tools_are_locked_with_hashes_too() -> None:
    lock = read_lock(BUILD_LOCK)
    build_system = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["build-system"]
    assert _unmet([Requirement(text) for text in build_system["requires"]], lock) == []
    assert all(hashes for _, hashes in lock.values())


def test_locks_resolved_for_the_images_python() -> None:
    """scripts/lock.sh reads the Python version from the Dockerfile; a lock for another Python
    may pin versions or markers the image cannot use."""
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        header = lock.read_text(encoding="utf-8").split("\n", 3)[:3]
        assert "make lock" in "\n".join(header), f"{lock.name} was not made by make lock"
    script = (REPO_ROOT / "scripts" / "lock.sh").read_text(encoding="utf-8")
    assert '--python-version "$image_python"' in script
    assert "ARG PYTHON_IMAGE=python:" in script


def test_the_build_installs_only_from_the_locks() -> None:
    runs = stages()[0].args("RUN")
    installs = [
        part.strip()
        for command in runs
        for part in command.split("&&")
        if re.search(r"\bpip install\b", part)
    ]
    assert installs
    for install in installs:
        from_lock = "--require-hashes" in install and "--no-deps" in install
        own_wheel = "--no-index" in install and "cdr_connector-" in install
        assert from_lock or own_wheel, install
    joined = " ".join(runs)
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        assert f"-r {lock.name}" in joined, lock.name
    assert "--no-build-isolation" in joined, "isolation would fetch unpinned build tools"
    assert "pip check" in joined


def test_final_stage_has_no_build_tools() -> None:
    final = stages()[-1]
    for command in final.args("RUN"):
        assert not BUILD_TOOLS.search(command), command
    copies = final.args("COPY")
    assert copies == ["--from=build /opt/venv /opt/venv"]


def test_runs_as_a_numeric_non_root_user() -> None:
    users = stages()[-1].args("USER")
    assert len(users) == 1
    user, _, group = users[0].partition(":")
    assert user.isdigit() and int(user) > 0, "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert group.isdigit() and int(group) > 0


def test_entrypoint_is_the_cli_and_cmd_a_real_subcommand() -> None:
    final = stages()[-1]
    (entrypoint,) = final.args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["cdr-connector"]
    (cmd,) = final.args("CMD")
    _build_parser().parse_args(json.loads(cmd))  # exits (fails the test) on an unknown command
    assert json.loads(cmd) == ["run"]


def test_no_healthcheck() -> None:
    assert not [kw for kw, _ in instructions() if kw == "HEALTHCHECK"]


def test_exposes_the_metrics_port() -> None:
    assert stages()[-1].args("EXPOSE") == [str(HttpSettings().port)]


def test_no_bytecode_written_at_run_time() -> None:
    """The root filesystem is read-only in Kubernetes."""
    env = " ".join(stages()[-1].args("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression: `**` spans directories, `*` does not."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + glob[i : end + 1], end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path, or a directory above it, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = _glob_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not pattern.startswith("!")
    return ignored


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_what_the_build_copies(ignore_patterns: list[str]) -> None:
    sources = []
    for text in stages()[0].args("COPY"):
        words = shlex.split(text)
        sources.extend(w for w in words[:-1] if not w.startswith("--"))
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/"), ignore_patterns), source
    assert not _ignored("cdr_connector/schemas/cdr_record.avsc", ignore_patterns)


def test_dockerignore_leaves_out_the_rest(ignore_patterns: list[str]) -> None:
    for path in (".git", ".venv", ".tools", "tests/unit", "deploy/dev/.cache", "bench"):
        assert _ignored(path, ignore_patterns), path
    assert _ignored("cdr_connector/__pycache__/app.cpython-312.pyc", ignore_patterns)
    assert _ignored("cdr_connector/bill_writer.cpython-311-x86_64-linux-gnu.so", ignore_patterns)
