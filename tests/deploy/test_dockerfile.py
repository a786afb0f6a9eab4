"""The container image's Dockerfile: hadolint-clean, multi-stage, non-root, nothing to build with.

No image is built here (there is no container engine); these checks read the Dockerfile and
.dockerignore and compare them with the CLI and the settings.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

import pytest

from cdr_connector.__main__ import _build_parser
from cdr_connector.config import HttpSettings
from tests.deploy.conftest import REPO_ROOT, run, tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
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


def test_built_on_the_full_image_and_run_on_the_slim_one_of_the_same_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    build, final = all_stages[0], all_stages[-1]
    assert build.name == "build"
    assert (build.base, final.base) == ("${BUILD_IMAGE}", "${PYTHON_IMAGE}")
    run_image = re.fullmatch(r"python:(3\.1[1-9])-slim-(\w+)", _arg_default("PYTHON_IMAGE"))
    assert run_image, _arg_default("PYTHON_IMAGE")
    # The virtual environment (with the mypyc-built writer) is copied between stages, so both
    # need the same interpreter: the same Python and Debian release, with and without gcc.
    python, debian = run_image.groups()
    assert _arg_default("BUILD_IMAGE") == f"python:{python}-{debian}"


def test_the_build_stage_checks_the_writer_was_compiled() -> None:
    runs = " ".join(stages()[0].args("RUN"))
    assert "pip install --no-compile ./" in runs
    assert "assert w.is_compiled() and b.is_compiled()" in runs


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
