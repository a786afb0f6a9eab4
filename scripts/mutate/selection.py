"""What is mutated and which tests judge it.

The modules: every `.py` file of the package outside `simulator/` (the vendor API's stand-in,
which the connector does not run). They are found on disk, so a new module is measured
without a change here.

The tests of a module: the unit test files that import it directly, by its own name or by a
name its package re-exports (`from cdr_connector.api import VendorApiClient` imports
`cdr_connector/api/client.py`), and the files named after it (`test_scheduler.py`,
`test_scheduler_timing.py`, `test_api_tokens.py` for `api/tokens.py`), or after the module
it was carved out of (`CARVED_OUT`: `test_pipeline.py` for the scheduler), that reach it at
all, through the package's own imports or through the test doubles (`tests/fakes.py`): a
module composed behind another one is tested through it. Any other
file that only reaches a module through another module is not picked: its tests were written
for something else, and running them would make every mutant cost several times as much. The
module's own test file runs first, so that most mutants are killed by the first failing test
(pytest runs with `-x`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "cdr_connector"
EXCLUDED_PACKAGES = ("simulator",)
# Modules carved out of another one: the tests named after that one were written against the
# whole (the scheduler's timing in test_pipeline.py, the token's life in test_api_client.py)
# and judge each part too.
CARVED_OUT = {
    **{
        f"{PACKAGE}/{part}.py": f"{PACKAGE}/pipeline.py"
        for part in ("scheduler", "committer", "source", "dead_letters", "recorder", "status")
    },
    **{f"{PACKAGE}/api/{part}.py": f"{PACKAGE}/api/client.py" for part in ("tokens", "transport")},
}
# Unit test files that judge a module whose subject they are, though they reach it through
# another module and are named after neither: the transport refuses redirects and goes
# through proxies (api/transport.py), which the tests of those behaviours drive through
# the client.
SUBJECT_OF: dict[str, tuple[str, ...]] = {
    f"{PACKAGE}/api/transport.py": (
        "tests/unit/test_api_redirects.py",
        "tests/unit/test_api_proxy.py",
        "tests/unit/test_plain_http_warning.py",
    ),
}
# Modules whose behaviour only a real broker (or the whole process) shows, and the integration
# test files that judge them with `--with-broker`: chosen to run in seconds (test_cli.py about
# 10 s, test_sink.py 4 s, test_startup_waits.py 17 s, test_fleet_membership.py 5 s on 2
# cores), never tests/faults/ (fixed transactional ids) nor the minute-long end-to-end files.
# Their unit tests (if any) run first.
_CLI = "tests/integration/test_cli.py"
_SINK = "tests/integration/test_sink.py"
BROKER_TESTS: dict[str, tuple[str, ...]] = {
    f"{PACKAGE}/kafka_sink.py": (_SINK, _CLI),
    f"{PACKAGE}/kafka_clients.py": (_SINK, _CLI),
    f"{PACKAGE}/topics.py": (_CLI,),
    f"{PACKAGE}/checks.py": (_CLI,),
    f"{PACKAGE}/tail.py": (_CLI,),
    f"{PACKAGE}/__main__.py": (_CLI, "tests/integration/test_cli_bad_settings.py"),
    f"{PACKAGE}/app.py": ("tests/integration/test_startup_waits.py",),
    f"{PACKAGE}/fleet.py": ("tests/integration/test_fleet_membership.py",),
}
TESTS_PACKAGE = "tests"
UNIT_TESTS = Path(TESTS_PACKAGE) / "unit"


def core_modules(root: Path) -> list[str]:
    """Paths (relative to `root`, with `/`) of the modules to mutate, sorted."""
    package = root / PACKAGE
    found = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] in EXCLUDED_PACKAGES or "__pycache__" in relative.parts:
            continue
        found.append(path.relative_to(root).as_posix())
    return sorted(found)


def module_name(path: str) -> str:
    """`cdr_connector/api/client.py` -> `cdr_connector.api.client`; a package is its name."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def with_broker_tests(tests: dict[str, list[str]]) -> dict[str, list[str]]:
    """`tests` (module -> unit test files) with the `BROKER_TESTS` of each module after them."""
    return {
        m: files + [f for f in BROKER_TESTS.get(m, ()) if f not in files]
        for m, files in tests.items()
    }


def tests_by_module(root: Path, modules: Iterable[str]) -> dict[str, list[str]]:
    """For each module path, the unit test files (relative to `root`) that judge it."""
    names = {module_name(path): path for path in modules}
    reexports = {name: _reexports(root / path) for name, path in names.items()}
    graph = {
        name: imported_modules(ast.parse((root / path).read_text()), names, reexports)
        for name, path in names.items()
    }
    chosen: dict[str, list[str]] = {path: [] for path in names.values()}
    for test in sorted((root / UNIT_TESTS).glob("test_*.py")):
        tree = ast.parse(test.read_text())
        direct = imported_modules(tree, names, reexports)
        reached = _closure(direct | _through_helpers(root, tree, names, reexports), graph)
        named = {name for name in reached if _named_after(test.stem, _owner(names[name]))}
        relative = test.relative_to(root).as_posix()
        subject = {name for name in reached if relative in SUBJECT_OF.get(names[name], ())}
        for name in sorted(direct | named | subject):
            chosen[names[name]].append(relative)
    return {path: _own_test_first(path, tests) for path, tests in chosen.items()}


def _through_helpers(
    root: Path, tree: ast.Module, known: Iterable[str], reexports: dict[str, dict[str, str]]
) -> set[str]:
    """The known modules imported by the test helper modules (`tests.fakes`) a file imports."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            helper = root / (node.module.replace(".", "/") + ".py")
            if node.module.startswith(f"{TESTS_PACKAGE}.") and helper.is_file():
                found |= imported_modules(ast.parse(helper.read_text()), known, reexports)
    return found


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    """`start` and every known module they import, directly or not."""
    reached, pending = set(start), list(start)
    while pending:
        for name in graph.get(pending.pop(), set()) - reached:
            reached.add(name)
            pending.append(name)
    return reached


def _owner(path: str) -> list[str]:
    """The module itself, and the one it was carved out of, if any."""
    carved_from = CARVED_OUT.get(path)
    return [path] if carved_from is None else [path, carved_from]


def _named_after(test_stem: str, paths: list[str]) -> bool:
    return any(_named_after_one(test_stem, path) for path in paths)


def _named_after_one(test_stem: str, path: str) -> bool:
    """`test_scheduler` and `test_scheduler_timing` for `scheduler.py`; `test_api_tokens`
    for `api/tokens.py`. A package's `__init__.py` has no such name."""
    parts = path.removesuffix(".py").split("/")[1:]
    if parts[-1] == "__init__":
        return False
    names = {"_".join(parts[index:]) for index in range(len(parts))}
    return any(test_stem == f"test_{n}" or test_stem.startswith(f"test_{n}_") for n in names)


def imported_modules(
    tree: ast.Module, known: Iterable[str], reexports: dict[str, dict[str, str]]
) -> set[str]:
    """The known modules a test file imports: named in an import, or the origin of a name
    imported from a package that re-exports it."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(_from_import(node.module, node.names, known, reexports))
    return found


def _from_import(
    module: str, names: list[ast.alias], known: set[str], reexports: dict[str, dict[str, str]]
) -> set[str]:
    """`from module import a, b`: a submodule named is imported itself; any other name comes
    from `module` (a package's `__init__.py` included) and from where the package got it."""
    found: set[str] = set()
    for alias in names:
        submodule = f"{module}.{alias.name}"
        if submodule in known:
            found.add(submodule)
            continue
        origin = reexports.get(module, {}).get(alias.name)
        found.update(name for name in (module, origin) if name in known)
    return found


def _reexports(path: Path) -> dict[str, str]:
    """Names a package's `__init__.py` imports from other modules: name -> that module."""
    if path.name != "__init__.py":
        return {}
    origins = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                origins[alias.asname or alias.name] = node.module
    return origins


def _own_test_first(path: str, tests: list[str]) -> list[str]:
    """`test_poller.py` before the others for `poller.py`, `test_api_client.py` for `client.py`."""
    own = f"_{Path(path).stem}.py"
    return sorted(tests, key=lambda test: (not test.endswith(own), test))
