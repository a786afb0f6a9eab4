"""The package's shape: no class over 250 lines and no function over 60, anywhere in
cdr_connector/ (the simulator included). A class that grows past the bound has become the room
every concern must enter; a function past it does more than its name says."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cdr_connector"
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


def oversized(max_class: int, max_function: int, root: Path = PACKAGE) -> list[str]:
    """Every class and function of the package's modules longer than its bound, with where
    it is and how long."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bound = max_class
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                bound = max_function
            else:
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > bound:
                where = path.relative_to(root.parent)
                found.append(f"{where}:{node.lineno} {node.name} has {length} lines")
    return found


def test_no_class_over_250_lines_and_no_function_over_60() -> None:
    assert oversized(MAX_CLASS_LINES, MAX_FUNCTION_LINES) == []


def test_the_measure_finds_a_long_function_and_a_long_class(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n\nclass Short:\n    pass\n")
    assert oversized(3, 60, tmp_path) == [f"{tmp_path.name}/long.py:1 long has 61 lines"]
    assert oversized(1, 61, tmp_path) == [f"{tmp_path.name}/long.py:63 Short has 2 lines"]
