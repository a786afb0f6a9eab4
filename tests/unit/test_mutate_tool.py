"""The mutation tool (scripts/mutate): its operators, its sample, its test picking and its
table, on tiny sources. No mutant is run here; `make mutate` does that."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from scripts.mutate import equivalents, selection
from scripts.mutate.operators import Mutant, apply, mutants_of
from scripts.mutate.report import Result, changed_lines, table, tally
from scripts.mutate.runner import Outcome, Run, make_copy
from scripts.mutate.sampling import round_robin, sample
from scripts.mutate.selection import core_modules, module_name


def mutated(source: str, operator: str) -> list[str]:
    return [apply(source, m) for m in mutants_of(source, "m.py") if m.operator == operator]


def fake_mutant(path: str, function: str, number: int = 0) -> Mutant:
    return Mutant(path, function, "constant", "", (number + 1, 0), (number + 1, 1), "0")


# --- operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "flipped"),
    [
        ("a < b", "a <= b"),
        ("a <= b", "a < b"),
        ("a > b", "a >= b"),
        ("a >= b", "a > b"),
        ("a == b", "a != b"),
        ("a != b", "a == b"),
        ("a is b", "a is not b"),
        ("a is not b", "a is b"),
        ("a in b", "a not in b"),
        ("a not in b", "a in b"),
    ],
)
def test_a_comparison_is_flipped(original: str, flipped: str) -> None:
    assert mutated(f"x = {original}\n", "compare") == [f"x = {flipped}\n"]


def test_each_comparison_of_a_chain_is_flipped_on_its_own() -> None:
    assert sorted(mutated("x = a < b == c\n", "compare")) == [
        "x = a < b != c\n",
        "x = a <= b == c\n",
    ]


def test_a_number_is_moved_by_one_either_way() -> None:
    assert sorted(mutated("x = 5\ny = 0.5\n", "constant")) == [
        "x = 4\ny = 0.5\n",
        "x = 5\ny = -0.5\n",
        "x = 5\ny = 1.5\n",
        "x = 6\ny = 0.5\n",
    ]


def test_and_and_or_are_swapped() -> None:
    assert mutated("x = a and b\n", "boolop") == ["x = (a or b)\n"]
    assert mutated("x = a or b\n", "boolop") == ["x = (a and b)\n"]


def test_true_and_false_are_swapped() -> None:
    assert mutated("x = f(True, y=False)\n", "bool") == [
        "x = f(False, y=False)\n",
        "x = f(True, y=True)\n",
    ]


def test_a_returned_value_becomes_none() -> None:
    source = "def f(a):\n    return a + 1\n\ndef g():\n    return None\n"
    assert mutated(source, "return-none") == [
        "def f(a):\n    return None\n\ndef g():\n    return None\n"
    ]


def test_a_simple_statement_is_deleted() -> None:
    source = "def f(a):\n    a.append(1)\n    a += [2]\n    raise ValueError\n"
    assert mutated(source, "delete") == [
        "def f(a):\n    pass\n    a += [2]\n    raise ValueError\n",
        "def f(a):\n    a.append(1)\n    pass\n    raise ValueError\n",
        "def f(a):\n    a.append(1)\n    a += [2]\n    pass\n",
    ]


def test_conditions_are_negated() -> None:
    source = "if a:\n    pass\nwhile b:\n    pass\nx = 1 if c else 2\ny = [i for i in z if i]\n"
    negated = mutated(source, "negate")
    assert [line for text in negated for line in text.splitlines() if "not (" in line] == [
        "if not (a):",
        "while not (b):",
        "x = 1 if not (c) else 2",
        "y = [i for i in z if not (i)]",
    ]


def test_what_cannot_change_behaviour_or_never_runs_under_tests_is_left_alone() -> None:
    source = '''"""Docstring."""
from __future__ import annotations
import os
from typing import TYPE_CHECKING, Literal
__all__ = ["f"]
Mode = Literal[1, 2]
T = TypeVar("T")
if TYPE_CHECKING:
    LIMIT = 1

@decorate(slots=True)
def f(a: Literal[1, 2] = None, c: str = f"{1 > 0}") -> Literal[3]:
    """Docstring."""
    b: Literal[4]
    del a
    ...
    return

if __name__ == "__main__":
    f(6)
'''
    kinds = Counter(m.operator for m in mutants_of(source, "m.py"))
    assert kinds == Counter()


def test_the_arguments_of_calls_in_an_annotation_or_type_alias_are_mutated() -> None:
    source = "class S:\n    n: Annotated[int, Field(ge=1)] = 0\n"
    assert "class S:\n    n: Annotated[int, Field(ge=2)] = 0\n" in mutated(source, "constant")
    source = "Flag = Literal[1, 2]\nPositive = Annotated[float, Field(gt=0)]\n"
    assert sorted(mutated(source, "constant")) == [
        "Flag = Literal[1, 2]\nPositive = Annotated[float, Field(gt=-1)]\n",
        "Flag = Literal[1, 2]\nPositive = Annotated[float, Field(gt=1)]\n",
    ]


def test_the_rest_of_the_source_is_kept_byte_for_byte() -> None:
    """Columns are UTF-8 byte offsets: text before the span on the same line is not ASCII."""
    source = 'def f(x):  # µs\n    s = "→µ"; y = x < 1  # → comment\n    return s, y\n'
    assert mutated(source, "compare") == [
        'def f(x):  # µs\n    s = "→µ"; y = x <= 1  # → comment\n    return s, y\n'
    ]


def test_every_mutant_compiles_differs_and_names_its_function() -> None:
    source = Path(__file__).parents[2].joinpath("scripts/mutate/sampling.py").read_text()
    found = mutants_of(source, "sampling.py")
    assert {m.operator for m in found} >= {"compare", "constant", "delete", "return-none"}
    for mutant in found:
        text = apply(source, mutant)
        assert text != source
        ast.parse(text)
    assert {m.function for m in found} >= {"sample", "round_robin"}


# --- the sample --------------------------------------------------------------------------


def test_the_sample_is_the_same_for_the_same_seed() -> None:
    mutants = [fake_mutant("m.py", f"f{i % 7}", i) for i in range(200)]
    first = sample(mutants, 30, "21:m.py")
    assert first == sample(list(mutants), 30, "21:m.py")
    assert first != sample(mutants, 30, "22:m.py")
    assert len(set(first)) == 30


def test_the_sample_takes_from_every_function_in_turn() -> None:
    mutants = [fake_mutant("m.py", "a", i) for i in range(10)]
    mutants += [fake_mutant("m.py", "b", 10)]
    mutants += [fake_mutant("m.py", "c", i) for i in range(11, 16)]
    chosen = sample(mutants, 6, "s")
    assert [m.function for m in chosen] == ["a", "b", "c", "a", "c", "a"]
    assert sample(mutants, 100, "s") == sample(mutants, 16, "s")
    assert sorted(sample(mutants, 100, "s"), key=lambda m: m.start) == mutants


def test_round_robin_interleaves_groups_of_any_length() -> None:
    assert round_robin([[1, 2, 3], [], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]
    assert round_robin([]) == []


# --- which tests, which tree -------------------------------------------------------------


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_module_is_judged_by_the_unit_test_files_that_import_it(tmp_path: Path) -> None:
    write(tmp_path / "cdr_connector/__init__.py")
    write(tmp_path / "cdr_connector/poller.py")
    write(tmp_path / "cdr_connector/api/__init__.py", "from cdr_connector.api.client import C\n")
    write(tmp_path / "cdr_connector/api/client.py")
    write(tmp_path / "cdr_connector/simulator/server.py")
    write(tmp_path / "tests/unit/test_api_client.py", "from cdr_connector.api import C\n")
    write(tmp_path / "tests/unit/test_a.py", "import cdr_connector.poller\n")
    write(tmp_path / "tests/unit/test_poller.py", "from cdr_connector import poller\n")
    write(
        tmp_path / "tests/unit/test_z.py", "def f():\n    from cdr_connector.api.client import C\n"
    )
    modules = core_modules(tmp_path)
    assert modules == [
        "cdr_connector/__init__.py",
        "cdr_connector/api/__init__.py",
        "cdr_connector/api/client.py",
        "cdr_connector/poller.py",
    ]
    assert selection.tests_by_module(tmp_path, modules) == {
        "cdr_connector/__init__.py": [],
        "cdr_connector/api/__init__.py": ["tests/unit/test_api_client.py"],
        "cdr_connector/api/client.py": ["tests/unit/test_api_client.py", "tests/unit/test_z.py"],
        "cdr_connector/poller.py": ["tests/unit/test_poller.py", "tests/unit/test_a.py"],
    }
    assert module_name("cdr_connector/api/__init__.py") == "cdr_connector.api"


def test_a_file_named_after_a_module_judges_it_when_it_reaches_it(tmp_path: Path) -> None:
    write(tmp_path / "cdr_connector/__init__.py")
    write(tmp_path / "cdr_connector/pipeline.py", "from cdr_connector.scheduler import S\n")
    write(tmp_path / "cdr_connector/scheduler.py")
    write(tmp_path / "cdr_connector/api/__init__.py")
    write(tmp_path / "cdr_connector/api/tokens.py")
    write(tmp_path / "tests/fakes.py", "from cdr_connector.pipeline import P\n")
    write(tmp_path / "tests/unit/test_scheduler_timing.py", "from tests.fakes import P\n")
    write(tmp_path / "tests/unit/test_scheduler.py", "import json\n")
    write(tmp_path / "tests/unit/test_schedulers.py", "from tests.fakes import P\n")
    write(tmp_path / "tests/unit/test_api_tokens.py", "from cdr_connector import api\n")
    write(tmp_path / "tests/unit/test_tokens.py", "import cdr_connector.api.tokens\n")
    write(tmp_path / "tests/unit/test_pipeline.py", "from cdr_connector.pipeline import P\n")
    judged = selection.tests_by_module(tmp_path, core_modules(tmp_path))
    # test_pipeline.py judges the scheduler too: the scheduler was carved out of the pipeline
    assert judged["cdr_connector/scheduler.py"] == [
        "tests/unit/test_pipeline.py",
        "tests/unit/test_scheduler_timing.py",
    ]
    assert judged["cdr_connector/pipeline.py"] == ["tests/unit/test_pipeline.py"]
    assert judged["cdr_connector/api/tokens.py"] == ["tests/unit/test_tokens.py"]


def test_the_tests_of_a_modules_subject_judge_it_when_they_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "cdr_connector/__init__.py", "")
    write(tmp_path / "cdr_connector/transport.py", "X = 1\n")
    write(tmp_path / "cdr_connector/client.py", "from cdr_connector.transport import X\n")
    write(tmp_path / "cdr_connector/other.py", "Y = 1\n")
    write(tmp_path / "tests/unit/test_redirects.py", "from cdr_connector.client import X\n")
    write(tmp_path / "tests/unit/test_listing.py", "from cdr_connector.other import Y\n")
    subjects = ("tests/unit/test_redirects.py", "tests/unit/test_listing.py")
    monkeypatch.setattr(selection, "SUBJECT_OF", {"cdr_connector/transport.py": subjects})
    judged = selection.tests_by_module(tmp_path, core_modules(tmp_path))
    # test_listing.py never reaches the transport: it cannot judge it
    assert judged["cdr_connector/transport.py"] == ["tests/unit/test_redirects.py"]
    assert judged["cdr_connector/client.py"] == ["tests/unit/test_redirects.py"]


def test_every_file_named_as_judging_a_module_exists_and_is_a_unit_test() -> None:
    named = [f for files in selection.SUBJECT_OF.values() for f in files]
    assert named
    root = Path(__file__).parents[2]
    assert all(f.startswith("tests/unit/test_") and (root / f).is_file() for f in named)


def test_with_the_broker_a_module_only_a_broker_exercises_gets_its_integration_tests() -> None:
    unit = {
        "cdr_connector/kafka_sink.py": ["tests/unit/test_pipeline.py"],
        "cdr_connector/bill.py": ["tests/unit/test_bill_bounds.py"],
        "cdr_connector/checks.py": [],
    }
    judged = selection.with_broker_tests(unit)
    assert judged["cdr_connector/kafka_sink.py"] == [
        "tests/unit/test_pipeline.py",
        "tests/integration/test_sink.py",
        "tests/integration/test_cli.py",
    ]
    assert judged["cdr_connector/checks.py"] == ["tests/integration/test_cli.py"]
    assert judged["cdr_connector/bill.py"] == ["tests/unit/test_bill_bounds.py"]
    assert all(
        not f.startswith("tests/faults/") for fs in selection.BROKER_TESTS.values() for f in fs
    )


def test_known_equivalent_mutants_are_left_out_by_their_lines() -> None:
    source = (
        "def f(items, n):\n    excess = len(items) - n\n    if excess > 0:\n"
        "        del items[:excess]\n"
    )
    listed = [
        equivalents.Equivalent("m.py", "f", "if excess > 0:", "if excess >= 0:", "same"),
        equivalents.Equivalent("m.py", "f", "if excess > 0:", "if excess > -1:", "same"),
        equivalents.Equivalent("m.py", "g", "if excess > 0:", "if excess > 1:", "gone"),
        equivalents.Equivalent("other.py", "f", "x = 1", "x = 2", "elsewhere"),
    ]
    every = mutants_of(source, "m.py")
    parted = equivalents.split(every, source, listed)
    assert sorted(apply(source, m).splitlines()[2].strip() for m, _ in parted.excluded) == [
        "if excess > -1:",
        "if excess >= 0:",
    ]
    assert len(parted.kept) == len(every) - 2
    assert [e.reason for e in equivalents.stale(["m.py"], {"m.py": parted.excluded}, listed)] == [
        "gone"
    ]


def test_every_listed_equivalent_names_a_mutant_of_the_tree_today() -> None:
    root = Path(__file__).parents[2]
    modules = sorted({entry.path for entry in equivalents.KNOWN})
    excluded = {}
    for module in modules:
        source = (root / module).read_text()
        excluded[module] = equivalents.split(mutants_of(source, module), source).excluded
    assert equivalents.stale(modules, excluded) == []
    assert all(entry.reason for entry in equivalents.KNOWN)


def test_the_copy_runs_the_package_as_pure_python_and_links_the_rest(tmp_path: Path) -> None:
    tree, copy = tmp_path / "tree", tmp_path / "copy"
    write(tree / "cdr_connector/batch_writer.py", "X = 1\n")
    write(tree / "cdr_connector/batch_writer.cpython-311-x86_64-linux-gnu.so")
    write(tree / "cdr_connector/__pycache__/batch_writer.cpython-311.pyc")
    write(tree / "native__mypyc.cpython-311-x86_64-linux-gnu.so")
    write(tree / "tests/unit/test_x.py")
    write(tree / "schemas/cdr_record.avsc")
    write(tree / ".venv/marker")
    write(tree / "pyproject.toml")
    make_copy(tree, copy)
    assert sorted(p.name for p in (copy / "cdr_connector").iterdir()) == ["batch_writer.py"]
    assert sorted(p.name for p in copy.iterdir()) == [
        "cdr_connector",
        "pyproject.toml",
        "schemas",
        "tests",
    ]
    assert (copy / "schemas").is_symlink() and not (copy / "cdr_connector").is_symlink()


# --- outcomes and the table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "outcome"),
    [
        (Run(0, 1.0, False), "survived"),
        (Run(1, 1.0, False), "killed"),
        (Run(2, 1.0, False), "killed"),
        (Run(None, 1.0, False), "killed"),
        (Run(None, 9.0, True), "timed out"),
        (Run(5, 1.0, False), "error"),
    ],
)
def test_a_run_is_read_as_an_outcome(run: Run, outcome: str) -> None:
    assert run.outcome == outcome


def test_the_table_adds_up() -> None:
    a, b = "cdr_connector/a.py", "cdr_connector/b.py"
    outcomes: list[Outcome | None] = ["killed", "killed", "killed", "survived", "timed out"]
    outcomes += ["error", None, None]
    results = [Result(fake_mutant(a, "f", i), o) for i, o in enumerate(outcomes)]
    results += [Result(fake_mutant(b, "g"), "killed")]
    rows = tally({a: ["t1", "t2"], b: ["t2"], "cdr_connector/c.py": []}, results)
    assert [(r.mutants, r.tried, r.killed, r.survived, r.timed_out, r.errors) for r in rows] == [
        (8, 6, 3, 1, 1, 1),
        (1, 1, 1, 0, 0, 0),
        (0, 0, 0, 0, 0, 0),
        (9, 7, 4, 1, 1, 1),
    ]
    assert [r.score for r in rows] == [0.8, 1.0, None, 5 / 6]
    lines = table(rows).splitlines()
    assert lines[2] == "| cdr_connector/a.py | 2 | 8 | 6 | 3 | 1 | 1 | 1 | 80% |"
    assert lines[4] == "| cdr_connector/c.py | 0 | 0 | 0 | 0 | 0 | 0 | 0 | — |"
    assert lines[5] == "| total | 2 | 9 | 7 | 4 | 1 | 1 | 1 | 83% |"


def test_a_survivor_is_shown_as_its_line_before_and_after() -> None:
    source = "def f(a):\n    if a > 0:\n        g(\n            a,\n        )\n"
    compare, *_ = [m for m in mutants_of(source, "m.py") if m.operator == "compare"]
    assert changed_lines(source, compare) == ("if a > 0:", "if a >= 0:")
    delete, *_ = [m for m in mutants_of(source, "m.py") if m.operator == "delete"]
    assert changed_lines(source, delete) == ("g( …", "pass")
